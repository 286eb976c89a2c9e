package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/ledger/pgstore"
	"github.com/antaca/antaca/simulator"
)

const kycSecret = "kyc-shared-secret"

type kycCheckJSON struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	Attempts   int    `json:"attempts"`
	LastStatus int    `json:"lastStatus"`
	LastError  string `json:"lastError"`
	Reference  string `json:"reference"`
}

type registerJSON struct {
	customerJSON
	KYCCheck *kycCheckJSON `json:"kycCheck"`
}

// withKYCProvider points the env at the simulator's KYC provider; the
// test then tells it the env's callback URL (SetCallbackURL).
func withKYCProvider(t *testing.T, p *simulator.KYCProvider) envOption {
	loadFixture(t)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(fixture.caCert)
	p.Secret = kycSecret
	p.Client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	return func(c *api.Config) {
		c.KYCProviderURL, c.KYCProviderSecret = srv.URL+"/kyc", kycSecret
		c.WebhookBackoff, c.WebhookMaxBackoff, c.WebhookPoll = 20*time.Millisecond, 100*time.Millisecond, 20*time.Millisecond
	}
}

func (e *env) customerStatus(p *program, id string) string {
	e.t.Helper()
	var c customerJSON
	p.c.json("GET", "/secure/customers/"+id, nil, 200, &c)
	return c.KYCStatus
}

func (e *env) waitKYC(p *program, id, want string) {
	e.t.Helper()
	waitFor(e.t, "KYC "+want, func() bool { return e.customerStatus(p, id) == want })
}

// newCustomer registers a customer (KYC NONE) with a last name.
func newCustomer(p *program, lastName string) string {
	var c customerJSON
	p.c.json("POST", "/secure/customers", map[string]string{"externalId": "ext-" + lastName, "firstName": "Kim", "lastName": lastName,
		"email": "kim@example.com", "phone": "+48123456789"}, 201, &c)
	return c.ID
}

// refusedCards checks that a customer who is not VERIFIED gets no balance
// and no card, on every channel that asks.
func refusedCards(t *testing.T, e *env, p *program, cid, bid string) {
	t.Helper()
	if r := p.c.do("POST", "/secure/customers/"+cid+"/balances", map[string]string{"currency": "EUR"}); r.status != 409 || r.code() != "KYC_NOT_VERIFIED" {
		t.Errorf("balance for %s: %d %s", cid, r.status, r.body)
	}
	for _, path := range []string{"/cards/virtual", "/cards/physical"} {
		body := map[string]any{"balanceId": bid, "deliveryAddress": map[string]string{"line1": "1 Main St", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}}
		if r, _ := p.c.encrypted("POST", "/secure/customers/"+cid+path, body); r.status != 409 || r.code() != "KYC_NOT_VERIFIED" {
			t.Errorf("%s for %s: %d %s", path, cid, r.status, r.body)
		}
	}
	if r := p.c.do("POST", "/secure/customers/"+cid+"/cards/virtual/async", map[string]string{"balanceId": bid}); r.status != 409 || r.code() != "KYC_NOT_VERIFIED" {
		t.Errorf("async virtual for %s: %d %s", cid, r.status, r.body)
	}
	if r, _ := e.root.encrypted("POST", "/admin/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": bid}); r.status != 409 || r.code() != "KYC_NOT_VERIFIED" {
		t.Errorf("admin virtual for %s: %d %s", cid, r.status, r.body)
	}
	app := p.session(t, cid)
	if r := app.do("POST", "/customers/me/balances", map[string]string{"currency": "EUR"}); r.status != 409 || r.code() != "KYC_NOT_VERIFIED" {
		t.Errorf("app balance for %s: %d %s", cid, r.status, r.body)
	}
}

// TestKYCProvider: starting KYC sends the customer to the provider (the
// simulator's), which verifies or rejects by its rule and calls back; the
// customer's status follows; cards and balances need VERIFIED; what was
// sent and received is recorded; callbacks are authenticated and
// idempotent; the partner may still set the status.
func TestKYCProvider(t *testing.T) {
	t.Parallel()
	prov := &simulator.KYCProvider{Rule: simulator.KYCRule{RejectLastNames: []string{"Reject"}, HoldLastNames: []string{"Slow"}},
		Delay: 50 * time.Millisecond}
	e := newEnv(t, withKYCProvider(t, prov))
	prov.SetCallbackURL(e.ts.URL + "/kyc/callback")
	e.runNotices()
	p := e.newProgram("kycbank", "46800099", "DEPOSIT", 100_000)
	// A verified customer with a balance, whose KYC is then reopened: the
	// cards of a customer who is not VERIFIED are refused.
	vid, vbid := p.verifiedCustomer(t, "v")

	// 1. Verified by the provider.
	good := newCustomer(p, "Tester")
	var reg registerJSON
	p.c.json("POST", "/secure/customers/"+good+"/register", nil, 202, &reg)
	if reg.KYCStatus != "PENDING" && reg.KYCStatus != "VERIFIED" || reg.KYCCheck == nil || reg.KYCCheck.Status != "sent" && reg.KYCCheck.Status != "verified" {
		t.Fatalf("register answer %+v check %+v", reg.customerJSON, reg.KYCCheck)
	}
	e.waitKYC(p, good, "VERIFIED")
	var bal balanceJSON
	p.c.json("POST", "/secure/customers/"+good+"/balances", map[string]string{"currency": "EUR"}, 201, &bal)
	var checks struct {
		Data []kycCheckJSON `json:"data"`
	}
	p.c.json("GET", "/secure/customers/"+good+"/kyc-checks", nil, 200, &checks)
	if len(checks.Data) != 1 || checks.Data[0].ID != reg.KYCCheck.ID || checks.Data[0].Status != "verified" ||
		checks.Data[0].Reference != "simkyc-"+reg.KYCCheck.ID || checks.Data[0].LastStatus != 202 {
		t.Errorf("checks = %+v", checks.Data)
	}
	// Recorded: the request as sent (the customer's data, no more) and the callback as received.
	k, err := pgstore.NewKYCChecks(e.pool).Get(context.Background(), reg.KYCCheck.ID)
	if err != nil {
		t.Fatal(err)
	}
	var sentReq api.KYCRequest
	if err := json.Unmarshal(k.Request, &sentReq); err != nil || sentReq.CustomerID != good || sentReq.LastName != "Tester" ||
		sentReq.PartnerID != "kycbank" || sentReq.CallbackURL != "" {
		t.Errorf("request recorded %s (%v)", k.Request, err)
	}
	if !strings.Contains(k.Callback, `"VERIFIED"`) || k.CallbackAt == nil || !strings.Contains(k.Response, "simkyc-") {
		t.Errorf("callback %q at %v, response %q", k.Callback, k.CallbackAt, k.Response)
	}

	// 2. Rejected, started from the app.
	bad := newCustomer(p, "Reject")
	var reg2 registerJSON
	p.session(t, bad).json("POST", "/customers/me/register", nil, 202, &reg2)
	e.waitKYC(p, bad, "REJECTED")
	refusedCards(t, e, p, bad, vbid)
	// A rejected customer may start again (a new check); the rule rejects again.
	var reg3 registerJSON
	p.c.json("POST", "/secure/customers/"+bad+"/register", nil, 202, &reg3)
	if reg3.KYCCheck == nil || reg3.KYCCheck.ID == reg2.KYCCheck.ID {
		t.Errorf("second start: %+v, want a new check", reg3.KYCCheck)
	}
	e.waitKYC(p, bad, "REJECTED")
	waitFor(t, "the second check rejected", func() bool {
		k, err := pgstore.NewKYCChecks(e.pool).Get(context.Background(), reg3.KYCCheck.ID)
		return err == nil && k.State == "REJECTED"
	})

	// 3. Callbacks: signature, unknown check, repeat, conflict.
	post := func(body string, sig string, opts ...reqOpt) resp {
		t.Helper()
		req, _ := http.NewRequest("POST", e.ts.URL+"/kyc/callback", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if sig != "" {
			req.Header.Set("Antaca-Signature", sig)
		}
		return e.newClient(nil, nil).send(req, opts...)
	}
	sign := func(body string) string { return api.Sign(kycSecret, time.Now(), []byte(body)) }
	repeat := `{"id":"` + reg.KYCCheck.ID + `","reference":"simkyc-` + reg.KYCCheck.ID + `","status":"VERIFIED"}`
	if r := post(repeat, ""); r.status != 401 || r.code() != "INVALID_SIGNATURE" {
		t.Errorf("unsigned callback: %d %s", r.status, r.body)
	}
	if r := post(repeat, api.Sign("another-secret", time.Now(), []byte(repeat))); r.status != 401 {
		t.Errorf("callback signed with another secret: %d %s", r.status, r.body)
	}
	if r := post(repeat, api.Sign(kycSecret, time.Now().Add(-time.Hour), []byte(repeat))); r.status != 401 {
		t.Errorf("old signature: %d %s", r.status, r.body)
	}
	if r := post(repeat, sign(repeat)); r.status != 200 {
		t.Errorf("repeated callback: %d %s", r.status, r.body)
	}
	flip := `{"id":"` + reg.KYCCheck.ID + `","status":"REJECTED"}`
	if r := post(flip, sign(flip)); r.status != 409 || r.code() != "KYC_CHECK_CLOSED" {
		t.Errorf("a different result for a closed check: %d %s", r.status, r.body)
	}
	if got := e.customerStatus(p, good); got != "VERIFIED" {
		t.Errorf("after a refused callback the customer is %s", got)
	}
	unknown := `{"id":"kyc_nope","status":"VERIFIED"}`
	if r := post(unknown, sign(unknown)); r.status != 404 || r.code() != "KYC_CHECK_NOT_FOUND" {
		t.Errorf("unknown check: %d %s", r.status, r.body)
	}
	badStatus := `{"id":"` + reg.KYCCheck.ID + `","status":"MAYBE"}`
	if r := post(badStatus, sign(badStatus), invalidRequest); r.status != 400 {
		t.Errorf("bad status: %d %s", r.status, r.body)
	}

	// 4. The partner sets the status while a check is open: the check is
	// cancelled and the provider's later answer refused.
	third := newCustomer(p, "Slow") // the provider never answers this one
	var reg4 registerJSON
	p.c.json("POST", "/secure/customers/"+third+"/register", nil, 202, &reg4)
	var again registerJSON
	p.c.json("POST", "/secure/customers/"+third+"/register", nil, 202, &again)
	if again.KYCCheck == nil || again.KYCCheck.ID != reg4.KYCCheck.ID {
		t.Errorf("a second start while one is open: %+v, want the open check %s", again.KYCCheck, reg4.KYCCheck.ID)
	}
	refusedCards(t, e, p, third, vbid) // PENDING at the provider
	p.c.json("PUT", "/secure/customers/"+third+"/kyc", map[string]string{"status": "VERIFIED"}, 200, nil)
	late := `{"id":"` + reg4.KYCCheck.ID + `","status":"REJECTED"}`
	if r := post(late, sign(late)); r.status != 409 {
		t.Errorf("a late result after the partner set the status: %d %s", r.status, r.body)
	}
	if got := e.customerStatus(p, third); got != "VERIFIED" {
		t.Errorf("the partner's status was overridden: %s", got)
	}
	k, _ = pgstore.NewKYCChecks(e.pool).Get(context.Background(), reg4.KYCCheck.ID)
	if k.State != "CANCELLED" || !strings.Contains(k.Callback, "REJECTED") {
		t.Errorf("cancelled check: state %s, callback %q (recorded even though refused)", k.State, k.Callback)
	}

	// 5. A customer whose KYC is reopened gets no new card, copy or
	// replacement, and no new balance.
	var card cardJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+vid+"/cards/virtual", map[string]string{"balanceId": vbid}, 201, &card)
	p.c.json("PUT", "/secure/customers/"+vid+"/kyc", map[string]string{"status": "PENDING"}, 200, nil)
	refusedCards(t, e, p, vid, vbid)
	for _, path := range []string{"/cards/" + card.ID + "/print", "/cards/" + card.ID + "/replace"} {
		if r, _ := p.c.encrypted("POST", "/secure/customers/"+vid+path, nil); r.status != 409 || r.code() != "KYC_NOT_VERIFIED" {
			t.Errorf("%s while PENDING: %d %s", path, r.status, r.body)
		}
	}
	if got := e.metric("antaca_kyc_results_total", map[string]string{"status": "VERIFIED"}); got != 1 {
		t.Errorf("antaca_kyc_results_total{VERIFIED} = %v, want 1", got)
	}
	if got := e.metric("antaca_kyc_results_total", map[string]string{"status": "REJECTED"}); got != 2 {
		t.Errorf("antaca_kyc_results_total{REJECTED} = %v, want 2", got)
	}
}

// TestKYCProviderFailures: a provider that fails for now is tried again
// until it takes the check; one that refuses the request (4xx) fails the
// check at once, shown to the caller; a provider answering the result at
// once (sync) decides without a callback.
func TestKYCProviderFailures(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	answers := []int{503, 500}
	prov := &simulator.KYCProvider{Secret: kycSecret, Rule: simulator.KYCRule{Sync: true}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		var status int
		if len(answers) > 0 {
			status, answers = answers[0], answers[1:]
		}
		mu.Unlock()
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		prov.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e := newEnv(t, func(c *api.Config) {
		c.KYCProviderURL, c.KYCProviderSecret = srv.URL, kycSecret
		c.WebhookBackoff, c.WebhookMaxBackoff, c.WebhookPoll = 20*time.Millisecond, 100*time.Millisecond, 20*time.Millisecond
	})
	e.runNotices()
	p := e.newProgram("flakybank", "46900011", "DEPOSIT", 0)
	cid := newCustomer(p, "Tester")
	var reg registerJSON
	p.c.json("POST", "/secure/customers/"+cid+"/register", nil, 202, &reg)
	if reg.KYCCheck == nil || reg.KYCCheck.Status != "sending" || reg.KYCCheck.LastStatus != 503 || reg.KYCCheck.LastError == "" {
		t.Fatalf("first attempt failed: check %+v, want sending with the 503", reg.KYCCheck)
	}
	e.waitKYC(p, cid, "VERIFIED") // the third attempt is taken and answered at once
	var checks struct {
		Data []kycCheckJSON `json:"data"`
	}
	e.root.json("GET", "/admin/customers/"+cid+"/kyc-checks", nil, 200, &checks)
	if len(checks.Data) != 1 || checks.Data[0].Attempts != 3 || checks.Data[0].Status != "verified" {
		t.Errorf("checks = %+v, want one verified after 3 attempts", checks.Data)
	}
	if got := e.metric("antaca_kyc_requests_total", map[string]string{"result": "retry"}); got != 2 {
		t.Errorf("retries counted %v, want 2", got)
	}

	// Refused for good.
	mu.Lock()
	answers = []int{400}
	mu.Unlock()
	cid2 := newCustomer(p, "Tester")
	var reg2 registerJSON
	p.c.json("POST", "/secure/customers/"+cid2+"/register", nil, 202, &reg2)
	if reg2.KYCCheck == nil || reg2.KYCCheck.Status != "failed" || reg2.KYCCheck.LastStatus != 400 {
		t.Errorf("refused request: %+v, want failed with 400", reg2.KYCCheck)
	}
	if got := e.customerStatus(p, cid2); got != "PENDING" {
		t.Errorf("customer after a failed check: %s, want PENDING", got)
	}
	// Starting again makes a new check, which the provider now takes.
	var reg3 registerJSON
	p.c.json("POST", "/secure/customers/"+cid2+"/register", nil, 202, &reg3)
	if reg3.KYCCheck == nil || reg3.KYCCheck.ID == reg2.KYCCheck.ID || reg3.KYCCheck.Status != "verified" || reg3.KYCStatus != "VERIFIED" {
		t.Errorf("start after a failed check: %+v %s", reg3.KYCCheck, reg3.KYCStatus)
	}
	// Employees see the checks; the bureau does not.
	e.newAdmin("emp", "Employee").json("GET", "/admin/customers/"+cid2+"/kyc-checks", nil, 200, nil)
	if r := e.newAdmin("bur", "Bureau").do("GET", "/admin/customers/"+cid2+"/kyc-checks", nil); r.status != 403 {
		t.Errorf("bureau reading KYC checks: %d", r.status)
	}
}

// TestKYCWithoutProvider: without a provider, start sets PENDING as
// before and the callback route does not exist.
func TestKYCWithoutProvider(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("plainbank", "47000011", "DEPOSIT", 0)
	cid := newCustomer(p, "Tester")
	var reg registerJSON
	p.c.json("POST", "/secure/customers/"+cid+"/register", nil, 202, &reg)
	if reg.KYCStatus != "PENDING" || reg.KYCCheck != nil {
		t.Errorf("register without a provider: %+v", reg)
	}
	body := `{"id":"kyc_x","status":"VERIFIED"}`
	req, _ := http.NewRequest("POST", e.ts.URL+"/kyc/callback", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if r := e.newClient(nil, nil).send(req); r.status != 404 {
		t.Errorf("callback without a provider: %d %s", r.status, r.body)
	}
}
