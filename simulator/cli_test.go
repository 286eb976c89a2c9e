package simulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/antaca/antaca/simulator"
)

// sim runs `antaca sim args...` as the binary does and returns stdout,
// stderr and the error main would exit non-zero with.
func sim(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := simulator.CommandWithOutput(&stdout, &stderr).ParseAndRun(ctx, args)
	return stdout.String(), stderr.String(), err
}

func (s *testSwitch) directFlags() []string {
	return []string{"--direct", "--redis-url", ledgertest.RedisURL(), "--key-prefix", s.Cfg.KeyPrefix, "--keys-dir", s.Cfg.KeysDir}
}

// TestCommands drives seed, bureau, run and load through the command line
// against a real switch: seed writes a YAML cards file, run passes a
// scenario and fails (non-zero) on a wrong expectation with a message
// naming step, field, want and got, load writes its JSON and plot.
func TestCommands(t *testing.T) {
	sw := startSwitch(t)
	dir := t.TempDir()
	cards := filepath.Join(dir, "cards.yaml")
	iso := []string{"--iso-addr", sw.App.ISOAddr(), "--links", "2"}

	out, _, err := sim(t, append([]string{"seed", "--cards", cards, "--customers", "2", "--virtual", "1", "--physical", "1",
		"--digital-first", "1", "--funds", "1000000"}, sw.directFlags()...)...)
	if err != nil {
		t.Fatalf("sim seed: %v", err)
	}
	if !strings.Contains(out, "2 customers, 2 virtual, 2 physical, 2 digital-first cards") {
		t.Errorf("seed summary = %q", out)
	}
	cf, err := simulator.LoadCardsFile(cards)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cf.Cards {
		if len(c.PAN) < 12 || len(c.Expiry) != 4 || c.ID == "" {
			t.Errorf("card %s incomplete in cards file (pan %d digits, expiry %q)", c.Name, len(c.PAN), c.Expiry)
		}
		if c.Type != simulator.TypeVirtual && c.PIN == "" {
			t.Errorf("card %s (%s) has no PIN", c.Name, c.Type)
		}
		if strings.Contains(out, c.PAN) {
			t.Errorf("seed output shows a PAN in clear")
		}
	}
	if st, err := os.Stat(cards); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("cards file mode: %v %v, want 0600", st.Mode(), err)
	}

	// A physical card ordered now waits for the bureau.
	ctx := context.Background()
	p := cf.Partners[0]
	cust := cf.Customers[0]
	ordered, err := sw.Direct.OrderPhysical(ctx, p, cust.ID, cust.Balance.ID)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = sim(t, append([]string{"bureau", "--once", "--delay", "50ms"}, sw.directFlags()...)...)
	if err != nil {
		t.Fatalf("sim bureau: %v\n%s", err, out)
	}
	if !strings.Contains(out, ordered.ID+" personalised") {
		t.Errorf("bureau output does not report card %s:\n%s", ordered.ID, out)
	}
	got, err := sw.App.Issuing.Get(ctx, p.ID, ordered.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != authz.StatusLinked {
		t.Errorf("after the bureau the card is %s, want %s", got.Status, authz.StatusLinked)
	}

	runArgs := append(append([]string{"run", "--cards", cards}, iso...), sw.directFlags()...)
	out, _, err = sim(t, append(runArgs, "scenarios/duplicates.yaml", "scenarios/wrong-pin.yaml")...)
	if err != nil {
		t.Fatalf("sim run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "steps: 18 passed, 0 failed, 0 skipped") {
		t.Errorf("sim run summary:\n%s", out)
	}

	wrong := filepath.Join(dir, "wrong.yaml")
	scenario, _ := os.ReadFile("scenarios/expired-card.yaml")
	broken := strings.Replace(string(scenario), `expect: {code: "1001", approval: absent}`, `expect: {code: "0000", approval: absent}`, 1)
	if broken == string(scenario) {
		t.Fatal("could not break the scenario")
	}
	if err := os.WriteFile(wrong, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = sim(t, append(runArgs, wrong)...)
	if err == nil {
		t.Fatalf("sim run passed a wrong expectation:\n%s", out)
	}
	if !strings.Contains(out, `FAILED expired-card: step 3 "expired"`) || !strings.Contains(out, "DE39: want 0000, got 1001") {
		t.Errorf("failure not named clearly:\n%s", out)
	}

	jsonFile, plotFile := filepath.Join(dir, "load.json"), filepath.Join(dir, "load.html")
	out, stderr, err := sim(t, append([]string{"load", "--cards", cards, "--keys-dir", sw.Cfg.KeysDir, "--rate", "50", "--duration", "2s",
		"--json", jsonFile, "--plot", plotFile}, iso...)...)
	if err != nil {
		t.Fatalf("sim load: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "p99.9") || !strings.Contains(stderr, "answered") {
		t.Errorf("load output:\n%s\nprogress:\n%s", out, stderr)
	}
	var rep simulator.Report
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil || rep.Requests != 100 {
		t.Errorf("load JSON: %v, %d requests (want 100)", err, rep.Requests)
	}
	if b, err := os.ReadFile(plotFile); err != nil || !strings.Contains(string(b), "<svg") {
		t.Errorf("plot: %v", err)
	}
	for _, c := range cf.Cards {
		if strings.Contains(out+stderr, c.PAN) {
			t.Fatal("load output shows a PAN in clear")
		}
	}
	// seed, bureau, run and load moved money through the switch.
	sw.audit(t)
}

// TestSeedExplainsREST: without --direct, `sim seed` names every reason
// the REST API cannot serve it before it provisions anything: a scheme
// that does not match the server (either way), missing admin credentials
// or partner CA, an API in plain HTTP (partner calls need a TLS client
// certificate), an API that does not answer. Each error suggests --direct.
func TestSeedExplainsREST(t *testing.T) {
	var mu sync.Mutex
	var provisioning []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/openapi.yaml" {
			_, _ = w.Write([]byte("openapi: 3.0.3\n"))
			return
		}
		mu.Lock()
		provisioning = append(provisioning, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
	})
	plain := httptest.NewServer(h)
	defer plain.Close()
	secure := httptest.NewUnstartedServer(h)
	secure.Config.ErrorLog = log.New(io.Discard, "", 0) // the plain-HTTP request is the point
	secure.StartTLS()
	defer secure.Close()
	plainHost, secureHost := plain.Listener.Addr().String(), secure.Listener.Addr().String()
	closed := httptest.NewServer(h)
	closedHost := closed.Listener.Addr().String()
	closed.Close()

	dir := t.TempDir()
	ca, err := simulator.NewCA("test partner CA")
	if err != nil {
		t.Fatal(err)
	}
	caCert, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.WriteFiles(caCert, caKey); err != nil {
		t.Fatal(err)
	}
	creds := []string{"--admin-user", "admin", "--admin-password", "admin-password-1234"}
	partnerCA := []string{"--partner-ca-cert", caCert, "--partner-ca-key", caKey}
	cards := filepath.Join(dir, "cards.json")

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"https URL, plain HTTP server", append([]string{"--api-url", "https://" + plainHost}, slices.Concat(creds, partnerCA)...),
			[]string{"answers plain HTTP, not HTTPS", "use --api-url http://" + plainHost}},
		{"http URL, HTTPS server", append([]string{"--api-url", "http://" + secureHost}, slices.Concat(creds, partnerCA)...),
			[]string{"speaks HTTPS, not plain HTTP", "use --api-url https://" + secureHost, "--api-ca"}},
		{"no credentials, no partner CA", []string{"--api-url", "http://" + plainHost},
			[]string{"--admin-user and --admin-password", "--partner-ca-cert and --partner-ca-key", "partner calls (/secure) need HTTPS"}},
		{"plain HTTP API", append([]string{"--api-url", "http://" + plainHost}, slices.Concat(creds, partnerCA)...),
			[]string{"partner calls (/secure) need HTTPS"}},
		{"nobody listening", append([]string{"--api-url", "http://" + closedHost}, slices.Concat(creds, partnerCA)...),
			[]string{"reaching the API at http://" + closedHost, "connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := sim(t, append([]string{"seed", "--cards", cards, "--cert-dir", filepath.Join(dir, "certs")}, tc.args...)...)
			if err == nil {
				t.Fatal("sim seed succeeded")
			}
			for _, w := range append(tc.want, "with --direct") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	if len(provisioning) > 0 {
		t.Errorf("sim seed called the API before it could work: %v", provisioning)
	}
	if _, err := os.Stat(cards); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cards file written: %v", err)
	}
}

// TestDefaultAPIURL: without --api-url the simulator talks to what
// `antaca serve` listens on by default, in plain HTTP as it serves
// without a certificate.
func TestDefaultAPIURL(t *testing.T) {
	u, err := url.Parse(simulator.DefaultAPIURL)
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(app.DefaultConfig().HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if app.DefaultConfig().TLSCert != "" || u.Scheme != "http" || u.Port() != port {
		t.Errorf("DefaultAPIURL %s, but antaca serve listens on %s (TLS certificate %q)", simulator.DefaultAPIURL, app.DefaultConfig().HTTPAddr, app.DefaultConfig().TLSCert)
	}
}
