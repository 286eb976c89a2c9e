package simulator_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/simulator"
)

func runSuite(t *testing.T, sw *testSwitch, iss simulator.Issuer, n *simulator.Network, scenarios []*simulator.Scenario) (simulator.Summary, string) {
	t.Helper()
	cards := sw.seed(t, iss, simulator.SeedOptions{Customers: 1, Funds: 100_000, Virtual: 1, Physical: 1, DigitalFirst: 1})
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum := simulator.RunScenarios(ctx, simulator.RunConfig{Network: n, Issuer: iss, Keys: sw.Keys, Cards: cards, Out: &out}, scenarios)
	return sum, out.String()
}

func loadSuite(t *testing.T) []*simulator.Scenario {
	t.Helper()
	sc, err := simulator.LoadScenarios("scenarios")
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// TestBundledSuite runs simulator/scenarios against a real switch in both
// wire profiles, with issuer actions in process (the REST variant is
// TestBundledSuiteREST).
func TestBundledSuite(t *testing.T) {
	for _, profile := range []string{"cmf", "iso87"} {
		t.Run(profile, func(t *testing.T) {
			sw := startSwitch(t, func(c *app.Config) {
				c.ISOProfile = profile
				if profile == "iso87" {
					c.ISOFraming = "ascii4"
				}
			})
			n := sw.connect(t, 2)
			scenarios := loadSuite(t)
			sum, out := runSuite(t, sw, sw.Direct, n, scenarios)
			if !sum.OK() || sum.StepsPassed == 0 {
				t.Fatalf("suite failed (%d passed, %d failed):\n%s", sum.StepsPassed, sum.StepsFailed, out)
			}
			if sum.Scenarios != len(scenarios) {
				t.Errorf("ran %d scenarios, want %d", sum.Scenarios, len(scenarios))
			}
			if strings.Contains(out, "FAIL") {
				t.Errorf("output mentions a failure:\n%s", out)
			}
			sw.audit(t)
		})
	}
}

// TestBundledSuiteREST runs seed and the suite with every issuer action
// over the REST API (partner mTLS, admin session, JWE), and the bureau
// against the API's bureau endpoints.
func TestBundledSuiteREST(t *testing.T) {
	sw := startSwitch(t)
	rest := sw.rest(t)
	n := sw.connect(t, 1)
	sum, out := runSuite(t, sw, rest, n, loadSuite(t))
	if !sum.OK() {
		t.Fatalf("suite over REST failed:\n%s", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cards := sw.seed(t, rest, simulator.SeedOptions{Customers: 1, Funds: 1000})
	p, c := cards.Partners[0], cards.Customers[0]
	card, err := rest.OrderPhysical(ctx, p, c.ID, c.Balance.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := rest.Activate(ctx, p, c.ID, card.ID); err == nil {
		t.Fatal("activated a card the bureau has not made yet")
	}
	var bureauOut bytes.Buffer
	made, err := simulator.RunBureau(ctx, rest, simulator.BureauConfig{Once: true, Delay: 10 * time.Millisecond, Out: &bureauOut})
	if err != nil || made < 1 {
		t.Fatalf("bureau personalised %d cards: %v\n%s", made, err, bureauOut.String())
	}
	if err := rest.Activate(ctx, p, c.ID, card.ID); err != nil {
		t.Fatalf("activating after the bureau: %v", err)
	}

	// A digital-first copy: the bureau produces its blank plastic.
	virt, err := rest.IssueVirtual(ctx, p, c.ID, c.Balance.ID)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := rest.Print(ctx, p, c.ID, virt.ID)
	if err != nil {
		t.Fatal(err)
	}
	orders, err := rest.BureauOrders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	queued := false
	for _, o := range orders {
		queued = queued || o.CardID == cp.ID && o.Blank
	}
	if !queued {
		t.Fatalf("bureau orders %+v lack the copy %s as a blank plastic", orders, cp.ID)
	}
	bureauOut.Reset()
	made, err = simulator.RunBureau(ctx, rest, simulator.BureauConfig{Once: true, Delay: 10 * time.Millisecond, Out: &bureauOut})
	if err != nil || made < 1 || !strings.Contains(bureauOut.String(), "card "+cp.ID+" produced blank") {
		t.Fatalf("bureau made %d plastics: %v\n%s", made, err, bureauOut.String())
	}
	if orders, err = rest.BureauOrders(ctx); err != nil || len(orders) != 0 {
		t.Fatalf("orders after the bureau: %+v, %v", orders, err)
	}
	sw.audit(t)
}

// TestWrongExpectationFails proves a failing expectation fails the run and
// names scenario, step, field, want and got.
func TestWrongExpectationFails(t *testing.T) {
	sw := startSwitch(t)
	n := sw.connect(t, 1)
	sc, err := simulator.ParseScenario("wrong.yaml", []byte(`
name: wrong-expectation
steps:
  - name: account
    action: new_account
    amount: 5000
  - name: card
    action: issue_virtual
    balance: account
  - name: too-much
    mti: "0100"
    card: card
    amount: 6000
    expect: {code: "0000"}
  - name: never-runs
    action: check_balance
    balance: account
    expect: {available: 5000}
`))
	if err != nil {
		t.Fatal(err)
	}
	sum, out := runSuite(t, sw, sw.Direct, n, []*simulator.Scenario{sc})
	if sum.OK() {
		t.Fatalf("run passed with a wrong expectation:\n%s", out)
	}
	if sum.StepsFailed != 1 || sum.StepsSkipped != 1 || sum.StepsPassed != 2 {
		t.Errorf("passed/failed/skipped = %d/%d/%d, want 2/1/1", sum.StepsPassed, sum.StepsFailed, sum.StepsSkipped)
	}
	want := `wrong-expectation: step 3 "too-much" (wrong.yaml:`
	if len(sum.Failures) != 1 || !strings.Contains(sum.Failures[0], want) || !strings.Contains(sum.Failures[0], "DE39: want 0000, got 1016") {
		t.Errorf("failure message = %q, want it to name %q and DE39 want 0000 got 1016", sum.Failures, want)
	}
}

// TestTLSLink runs scenarios over an ISO link with TLS.
func TestTLSLink(t *testing.T) {
	sw := startSwitch(t, func(c *app.Config) { c.ISOTLSCert, c.ISOTLSKey = c.TLSCert, c.TLSKey })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := simulator.Connect(ctx, simulator.NetworkConfig{Addr: sw.App.ISOAddr(), Links: 2,
		TLS: &tls.Config{RootCAs: sw.CA.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatalf("Connect over TLS: %v", err)
	}
	defer n.Close()
	if err := n.WaitUp(ctx, 2); err != nil {
		t.Fatal(err)
	}
	sc, err := simulator.LoadScenarios("scenarios/reversal.yaml", "scenarios/wrong-pin.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if sum, out := runSuite(t, sw, sw.Direct, n, sc); !sum.OK() {
		t.Fatalf("over TLS:\n%s", out)
	}
	sw.audit(t)
}

// TestKYCProviderScenario runs scenarios/kyc against a switch whose KYC
// provider is the simulator's: start, the provider's callback over HTTPS,
// VERIFIED or REJECTED by last name, balances and cards refused until
// VERIFIED.
func TestKYCProviderScenario(t *testing.T) {
	prov := &simulator.KYCProvider{Secret: "kyc-scenario-secret", Delay: 100 * time.Millisecond,
		Rule: simulator.KYCRule{RejectLastNames: []string{"Reject"}}}
	srv := httptest.NewServer(prov)
	t.Cleanup(func() { srv.Close(); prov.Close() })
	sw := startSwitch(t, func(c *app.Config) {
		c.KYCProviderURL, c.KYCProviderSecret = srv.URL+"/", prov.Secret
	})
	prov.Client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sw.CA.Pool()}}}
	prov.SetCallbackURL(sw.HTTPBase + "/kyc/callback")
	rest := sw.rest(t)
	n := sw.connect(t, 1)
	sc, err := simulator.LoadScenarios("scenarios/kyc")
	if err != nil {
		t.Fatal(err)
	}
	sum, out := runSuite(t, sw, rest, n, sc)
	if !sum.OK() || sum.StepsPassed != 13 {
		t.Fatalf("KYC scenario (%d passed, %d failed):\n%s", sum.StepsPassed, sum.StepsFailed, out)
	}
	// The last callback's answer may reach the provider just after the
	// scenario saw its effect.
	var ds []simulator.KYCDecision
	var verified, rejected int
	for deadline := time.Now().Add(10 * time.Second); ; {
		ds, verified, rejected = prov.Decisions(), 0, 0
		for _, d := range ds {
			switch {
			case d.Status == "VERIFIED" && d.Delivered:
				verified++
			case d.Status == "REJECTED" && d.Delivered:
				rejected++
			}
		}
		if verified == 1 && rejected == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if verified != 1 || rejected != 2 || len(ds) != 3 {
		t.Errorf("provider decisions %+v: want 1 verified and 2 rejected, all called back", ds)
	}
	sw.audit(t)
}
