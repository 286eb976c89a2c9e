package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/antaca/antaca/api/jwe"
	"github.com/antaca/antaca/api/pki"
	"github.com/antaca/antaca/cmd/antaca/app"
)

// restClient calls the running app over HTTPS.
type restClient struct {
	t    *testing.T
	base string
	hc   *http.Client
	jwe  *jwe.Client
	// admin is an admin session token
	admin string
}

func (r *restClient) do(method, path string, body any, token string, wantStatus int) []byte {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	must(r.t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return r.send(req, wantStatus)
}

func (r *restClient) send(req *http.Request, wantStatus int) []byte {
	r.t.Helper()
	resp, err := r.hc.Do(req)
	must(r.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		r.t.Fatalf("%s %s: status %d, want %d: %s", req.Method, req.URL.Path, resp.StatusCode, wantStatus, b)
	}
	return b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

// TestLockOverRESTDeclinesOnISO drives a partner's card flow over HTTPS
// with a partner client certificate, then checks that a card locked over
// REST is declined by the ISO switch with the code of iso/README.md, and
// that reloads and summaries add up.
func TestLockOverRESTDeclinesOnISO(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey, err := pki.NewCA("Test partner CA", time.Hour)
	must(t, err)
	srvCert, srvKey, err := pki.NewServerCert(caCert, caKey, []string{"127.0.0.1", "localhost"}, time.Hour)
	must(t, err)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, b, 0o600))
		return p
	}
	h := startApp(t, func(c *app.Config) {
		c.TLSCert, c.TLSKey, c.PartnerCA = write("srv.pem", srvCert), write("srv-key.pem", srvKey), write("ca.pem", caCert)
		c.AdminUser, c.AdminPassword = "root", "correct horse battery staple"
	})
	const partner = "acme"
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(partner)
	must(t, err)
	certPEM, err := pki.SignCSR(caCert, caKey, csrPEM, time.Hour)
	must(t, err)
	clientCert, err := tls.X509KeyPair(certPEM, keyPEM)
	must(t, err)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caCert)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}}}
	clientKey, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)
	serverKey, err := jwe.ParsePublicKeyPEM(h.App.Keys.JWEPublicKeyPEM())
	must(t, err)
	r := &restClient{t: t, base: "https://" + h.App.HTTPAddr(), hc: hc, jwe: &jwe.Client{ServerKey: serverKey, Key: clientKey}}

	login := decode[map[string]any](t, r.do("POST", "/admin/login", map[string]string{"username": "root", "password": "correct horse battery staple"}, "", 200))
	r.admin = login["token"].(string)
	r.do("POST", "/admin/partners", map[string]any{"id": partner, "name": "Acme", "bin": "41234567", "currency": "EUR", "fundingModel": "CREDIT"}, r.admin, 201)
	pbal := decode[map[string]any](t, r.do("POST", "/admin/partners/"+partner+"/balances", map[string]any{"type": "CREDIT", "currency": "EUR", "lowBalanceThreshold": 100}, r.admin, 201))
	pbalID := pbal["id"].(string)
	r.do("POST", "/admin/partners/"+partner+"/balances/"+pbalID+"/reload", map[string]any{"amount": 50_000}, r.admin, 200)

	cust := decode[map[string]any](t, r.do("POST", "/secure/customers", map[string]any{"externalId": "u-1", "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "phone": "+48500100200"}, "", 201))
	cid := cust["id"].(string)
	r.do("PUT", "/secure/customers/"+cid+"/kyc", map[string]string{"status": "VERIFIED"}, "", 200)
	bal := decode[map[string]any](t, r.do("POST", "/secure/customers/"+cid+"/balances", map[string]string{"currency": "EUR"}, "", 201))
	balID := bal["id"].(string)
	r.do("POST", "/secure/customers/"+cid+"/balances/"+balID+"/reload", map[string]any{"amount": 20_000}, "", 200)

	req, err := r.jwe.NewRequest(context.Background(), "POST", r.base+"/secure/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": balID})
	must(t, err)
	plain, err := r.jwe.DecryptResponse(r.send(req, 201))
	must(t, err)
	card := decode[map[string]string](t, plain)
	pan, exp := card["cardNo"], card["exp"]
	if len(pan) != 16 || len(exp) != 10 {
		t.Fatalf("full card data %v", card)
	}
	expiry := exp[2:4] + exp[5:7]

	c := h.client("cmf")
	if got := field(t, h.send(c, txn{MTI: "0100", PAN: pan, Amount: 1_500, Expiry: expiry}).Resp, 39); got != "0000" {
		t.Fatalf("before lock: DE39 %s", got)
	}
	// CVV reset from the app (customer session, JWE): the old CVV2 stops
	// working in authorizations at once, the new one works.
	sess := decode[map[string]any](t, r.do("POST", "/secure/customers/"+cid+"/sessions", nil, "", 201))
	req, err = r.jwe.NewRequest(context.Background(), "POST", r.base+"/customers/me/cards/"+card["id"]+"/cvv", nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+sess["token"].(string))
	plain, err = r.jwe.DecryptResponse(r.send(req, 200))
	must(t, err)
	fresh := decode[map[string]string](t, plain)
	if fresh["cvv"] == card["cvv"] {
		t.Fatalf("the CVV reset kept the CVV2 %s", card["cvv"])
	}
	if !cvv2Pattern.MatchString(card["cvv"]) || !cvv2Pattern.MatchString(fresh["cvv"]) {
		t.Fatalf("CVV2 before the reset %q, after %q, want three digits each", card["cvv"], fresh["cvv"])
	}
	if got := field(t, h.send(c, txn{MTI: "0100", PAN: pan, Amount: 10, CVV2: card["cvv"]}).Resp, 39); got != "1000" {
		t.Fatalf("old CVV2 after a reset: DE39 %s, want 1000", got)
	}
	if got := field(t, h.send(c, txn{MTI: "0100", PAN: pan, Amount: 10, CVV2: fresh["cvv"]}).Resp, 39); got != "0000" {
		t.Fatalf("new CVV2: DE39 %s, want 0000", got)
	}

	r.do("POST", "/secure/customers/"+cid+"/cards/"+card["id"]+"/lock", map[string]int{"reason": 7}, "", 200)
	if got := field(t, h.send(c, txn{MTI: "0100", PAN: pan, Amount: 100, Expiry: expiry}).Resp, 39); got != "1002" {
		t.Fatalf("locked over REST with reason 7: DE39 %s, want 1002", got)
	}
	r.do("POST", "/secure/customers/"+cid+"/cards/"+card["id"]+"/unlock", nil, "", 200)
	if got := field(t, h.send(c, txn{MTI: "0100", PAN: pan, Amount: 100, Expiry: expiry}).Resp, 39); got != "0000" {
		t.Fatalf("after unlock: DE39 %s", got)
	}
	r.do("POST", "/secure/customers/"+cid+"/cards/"+card["id"]+"/lock", map[string]int{"reason": 1}, "", 200)
	r.do("POST", "/secure/customers/"+cid+"/cards/"+card["id"]+"/unlock", nil, "", 409)
	if got := field(t, h.send(c, txn{MTI: "0100", PAN: pan, Amount: 100}).Resp, 39); got != "2008" {
		t.Fatalf("lost card: DE39 %s, want 2008", got)
	}

	// Money: the credit model moved 20,000 from the partner credit to the
	// user; 1,610 is held by the three approvals. Summaries add up.
	got := decode[map[string]any](t, r.do("GET", "/secure/customers/"+cid+"/balances/"+balID, nil, "", 200))
	if got["available"].(float64) != 18_390 || got["held"].(float64) != 1_610 {
		t.Fatalf("balance over REST: %v", got)
	}
	sum := r.do("GET", "/admin/summaries", nil, r.admin, 200)
	var summaries struct {
		Summaries []struct {
			Currency string `json:"currency"`
			Users    int64  `json:"users"`
			Wallet   int64  `json:"wallet"`
		} `json:"summaries"`
	}
	_ = json.Unmarshal(sum, &summaries)
	var users, wallet int64 = -1, -1
	for _, cu := range summaries.Summaries {
		if cu.Currency == "EUR" {
			users, wallet = cu.Users, cu.Wallet
		}
	}
	if users != 20_000 || wallet != 50_000 {
		t.Fatalf("summaries users %d wallet %d, want 20000 and 50000: %s", users, wallet, sum)
	}
	in, err := h.App.Ledger.Funding(context.Background(), partner, "EUR")
	must(t, err)
	if in != 50_000 {
		t.Fatalf("funding in %d, want 50000", in)
	}
}
