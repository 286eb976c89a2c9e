package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/api/jwe"
	"github.com/antaca/antaca/api/pki"
)

// TestClientCertificates: /secure needs a certificate chaining to the
// partner CA whose CN names a partner.
func TestClientCertificates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.newProgram("acme", "412345", "DEPOSIT", 0)

	if r := e.newClient(nil, nil).do("GET", "/secure/partner/balances", nil); r.status != 401 || r.code() != "CLIENT_CERTIFICATE_REQUIRED" {
		t.Errorf("no certificate: %d %s", r.status, r.body)
	}
	if r := e.partnerClient("ghost").do("GET", "/secure/partner/balances", nil); r.status != 403 || r.code() != "UNKNOWN_PARTNER" {
		t.Errorf("certificate of an unknown partner: %d %s", r.status, r.body)
	}
	if r := e.partnerClient("acme").do("GET", "/secure/partner/balances", nil); r.status != 200 {
		t.Errorf("acme's own certificate: %d %s", r.status, r.body)
	}

	// A certificate from another CA, even with a known CN: a Go client does
	// not offer it (the server names the CAs it accepts), so there is no
	// partner; a client that insists fails the TLS handshake.
	key, csr, err := pki.NewKeyAndCSR("acme")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.SignCSR(fixture.otherCACert, fixture.otherKey, csr, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(fixture.caCert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}}}
	res, err := hc.Get(e.ts.URL + "/secure/partner/balances")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Errorf("certificate from another CA (not offered): %d, want 401", res.StatusCode)
	}
	insist := &tls.Config{RootCAs: roots, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }}
	hc = &http.Client{Transport: &http.Transport{TLSClientConfig: insist}}
	res, err = hc.Get(e.ts.URL + "/secure/partner/balances")
	if err == nil {
		res.Body.Close()
		t.Errorf("certificate from another CA accepted: %d", res.StatusCode)
	}

	// Without TLS at all (a misconfigured listener) there is no partner either.
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/secure/partner/balances", nil))
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "CLIENT_CERTIFICATE_REQUIRED") {
		t.Errorf("plain HTTP: %d %s", rec.Code, rec.Body)
	}
}

// TestPartnerIsolation: partner A reaches none of partner B's customers,
// balances or cards (404, as for unknown ids), and changes nothing.
func TestPartnerIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := e.newProgram("alpha", "411111", "DEPOSIT", 0)
	b := e.newProgram("beta", "422222", "DEPOSIT", 0)
	aCust, aBal := a.verifiedCustomer(t, "ann")
	bCust, bBal := b.verifiedCustomer(t, "bob")
	b.c.json("POST", "/secure/customers/"+bCust+"/balances/"+bBal+"/reload", map[string]int{"amount": 700}, 200, nil)
	var bCard fullDataJSON
	b.c.encryptedJSON("POST", "/secure/customers/"+bCust+"/cards/virtual", map[string]string{"balanceId": bBal}, 201, &bCard)

	bc := "/secure/customers/" + bCust
	tests := []struct {
		method, path string
		body         any
		jwe          bool
		want         string
	}{
		{"GET", bc, nil, false, "CUSTOMER_NOT_FOUND"},
		{"POST", bc + "/register", nil, false, "CUSTOMER_NOT_FOUND"},
		{"PUT", bc + "/kyc", map[string]string{"status": "REJECTED"}, false, "CUSTOMER_NOT_FOUND"},
		{"POST", bc + "/sessions", nil, false, "CUSTOMER_NOT_FOUND"},
		{"POST", bc + "/balances", map[string]string{"currency": "EUR"}, false, "CUSTOMER_NOT_FOUND"},
		{"GET", bc + "/balances/" + bBal, nil, false, "BALANCE_NOT_FOUND"},
		{"POST", bc + "/balances/" + bBal + "/reload", map[string]int{"amount": 100}, false, "BALANCE_NOT_FOUND"},
		{"POST", bc + "/cards/virtual", map[string]string{"balanceId": bBal}, true, "CUSTOMER_NOT_FOUND"},
		{"POST", bc + "/cards/virtual/async", map[string]string{"balanceId": bBal}, false, "CUSTOMER_NOT_FOUND"},
		{"GET", bc + "/cards/" + bCard.ID, nil, true, "CARD_NOT_FOUND"},
		{"GET", bc + "/cards/" + bCard.ID + "/status", nil, false, "CARD_NOT_FOUND"},
		{"POST", bc + "/cards/" + bCard.ID + "/lock", map[string]int{"reason": 1}, false, "CARD_NOT_FOUND"},
		{"POST", bc + "/cards/" + bCard.ID + "/print", nil, true, "CARD_NOT_FOUND"},
		{"DELETE", bc + "/cards/" + bCard.ID, nil, false, "CARD_NOT_FOUND"},
		// B's ids under A's own customer.
		{"GET", "/secure/customers/" + aCust + "/balances/" + bBal, nil, false, "BALANCE_NOT_FOUND"},
		{"POST", "/secure/customers/" + aCust + "/balances/" + bBal + "/reload", map[string]int{"amount": 100}, false, "BALANCE_NOT_FOUND"},
		{"POST", "/secure/customers/" + aCust + "/cards/virtual", map[string]string{"balanceId": bBal}, true, "BALANCE_NOT_FOUND"},
		{"POST", "/secure/customers/" + aCust + "/cards/" + bCard.ID + "/lock", map[string]int{"reason": 1}, false, "CARD_NOT_FOUND"},
		{"GET", "/secure/customers/" + aCust + "/cards/" + bCard.ID, nil, true, "CARD_NOT_FOUND"},
	}
	for _, tt := range tests {
		var r resp
		if tt.jwe {
			r, _ = a.c.encrypted(tt.method, tt.path, tt.body)
		} else {
			r = a.c.do(tt.method, tt.path, tt.body)
		}
		if r.status != 404 || r.code() != tt.want {
			t.Errorf("alpha %s %s: %d %s, want 404 %s", tt.method, tt.path, r.status, r.body, tt.want)
		}
	}
	// An unknown id answers the same.
	if r := a.c.do("GET", "/secure/customers/cus_unknown", nil); r.status != 404 || r.code() != "CUSTOMER_NOT_FOUND" {
		t.Errorf("unknown customer: %d %s", r.status, r.body)
	}

	// Nothing of B's changed.
	bb, _ := e.ledger.UserBalance(ctx, "beta", bBal)
	card, _ := e.ledger.Card(ctx, "beta", bCard.ID)
	cust, _ := e.ledger.Customer(ctx, "beta", bCust)
	if bb.Available != 700 || card.LockReason != 0 || card.Status != "ACTIVE" || cust.KYCStatus != "VERIFIED" {
		t.Errorf("beta's state changed: balance %d, card %s lock %d, kyc %s", bb.Available, card.Status, card.LockReason, cust.KYCStatus)
	}
	cards, _ := e.ledger.CardsOfBalance(ctx, "beta", bBal)
	if len(cards) != 1 {
		t.Errorf("beta's balance has %d cards, want 1", len(cards))
	}
	// A's balances are A's only.
	var list struct {
		Balances []partnerBalanceJSON `json:"balances"`
	}
	a.c.json("GET", "/secure/partner/balances", nil, 200, &list)
	if len(list.Balances) != 1 || list.Balances[0].ID != a.pbal {
		t.Errorf("alpha's partner balances = %+v", list.Balances)
	}
	_ = aBal
}

// TestCustomerSessionIsolation: a customer's session reaches only that
// customer's balances and cards.
func TestCustomerSessionIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	xCust, _ := p.verifiedCustomer(t, "xena")
	yCust, yBal := p.verifiedCustomer(t, "yuri")
	x := p.session(t, xCust)
	y := p.session(t, yCust)
	var yCard fullDataJSON
	y.encryptedJSON("POST", "/customers/me/cards/virtual", map[string]string{"balanceId": yBal}, 201, &yCard)

	checks := []struct {
		method, path string
		body         any
		jwe          bool
		want         string
	}{
		{"GET", "/customers/me/balances/" + yBal, nil, false, "BALANCE_NOT_FOUND"},
		{"POST", "/customers/me/cards/virtual", map[string]string{"balanceId": yBal}, true, "BALANCE_NOT_FOUND"},
		{"GET", "/customers/me/cards/" + yCard.ID, nil, true, "CARD_NOT_FOUND"},
		{"GET", "/customers/me/cards/" + yCard.ID + "/status", nil, false, "CARD_NOT_FOUND"},
		{"POST", "/customers/me/cards/" + yCard.ID + "/lock", map[string]int{"reason": 2}, false, "CARD_NOT_FOUND"},
		{"POST", "/customers/me/cards/" + yCard.ID + "/cvv", nil, true, "CARD_NOT_FOUND"},
		{"DELETE", "/customers/me/cards/" + yCard.ID, nil, false, "CARD_NOT_FOUND"},
	}
	for _, tt := range checks {
		var r resp
		if tt.jwe {
			r, _ = x.encrypted(tt.method, tt.path, tt.body)
		} else {
			r = x.do(tt.method, tt.path, tt.body)
		}
		if r.status != 404 || r.code() != tt.want {
			t.Errorf("xena %s %s: %d %s, want 404 %s", tt.method, tt.path, r.status, r.body, tt.want)
		}
	}
	var still fullDataJSON
	y.encryptedJSON("GET", "/customers/me/cards/"+yCard.ID, nil, 200, &still)
	if still != yCard {
		t.Errorf("yuri's card changed: %+v, was %+v", still, yCard)
	}
	var me customerJSON
	x.json("GET", "/customers/me", nil, 200, &me)
	if me.ID != xCust {
		t.Errorf("GET /customers/me = %s, want %s", me.ID, xCust)
	}
}

// TestSessions: expiry, logout, and tokens of one kind refused by the other channel.
func TestSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, _ := p.verifiedCustomer(t, "ada")

	var tok struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	p.c.json("POST", "/secure/customers/"+cid+"/sessions", nil, 201, &tok)
	if d := time.Until(tok.ExpiresAt); d < 9*time.Minute || d > 10*time.Minute+time.Second {
		t.Errorf("session expires in %v, want 10 minutes", d)
	}
	if len(tok.Token) != 43 {
		t.Errorf("token length %d, want 43 (32 bytes base64url)", len(tok.Token))
	}
	app := e.bearerClient(tok.Token)
	app.json("GET", "/customers/me", nil, 200, nil)

	e.advance(10*time.Minute + time.Second)
	if r := app.do("GET", "/customers/me", nil); r.status != 401 || r.code() != "SESSION_EXPIRED" || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("expired session: %d %s", r.status, r.body)
	}
	// The admin session (30 minutes) is still alive; a fresh customer session works.
	e.root.json("GET", "/admin/summaries", nil, 200, nil)
	app2 := p.session(t, cid)
	app2.json("GET", "/customers/me", nil, 200, nil)

	// Logout revokes.
	if r := app2.do("DELETE", "/customers/me/session", nil); r.status != 204 {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if r := app2.do("GET", "/customers/me", nil); r.status != 401 || r.code() != "UNAUTHORIZED" {
		t.Errorf("after logout: %d %s", r.status, r.body)
	}
	// Wrong kinds and garbage.
	app3 := p.session(t, cid)
	for name, tc := range map[string]struct {
		c    *client
		path string
	}{
		"admin token on /customers/me":   {e.root, "/customers/me"},
		"customer token on /admin":       {app3, "/admin/summaries"},
		"garbage token":                  {e.bearerClient("not-a-token"), "/customers/me"},
		"no token on /customers/me":      {e.newClient(nil, nil), "/customers/me"},
		"no token on /admin":             {e.newClient(nil, nil), "/admin/summaries"},
		"partner certificate on /admin":  {p.c, "/admin/summaries"},
		"partner certificate on /me":     {p.c, "/customers/me"},
		"customer token on /secure/... ": {app3, "/secure/partner/balances"},
	} {
		r := tc.c.do("GET", tc.path, nil)
		want := "UNAUTHORIZED"
		if strings.HasPrefix(tc.path, "/secure") {
			want = "CLIENT_CERTIFICATE_REQUIRED"
		}
		if r.status != 401 || r.code() != want {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	// Admin logout.
	e.root.json("DELETE", "/admin/session", nil, 204, nil)
	if r := e.root.do("GET", "/admin/summaries", nil); r.status != 401 {
		t.Errorf("admin after logout: %d %s", r.status, r.body)
	}
}

// TestAdminRoles: the role columns of README.md ("Admin roles") hold; a
// refused call changes nothing.
func TestAdminRoles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	employee := e.newAdmin("emp", "Employee")
	manager := e.newAdmin("mgr", "Manager")

	// Create virtual card: Admin and Manager only.
	r, _ := employee.encrypted("POST", "/admin/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": bid})
	if r.status != 403 || r.code() != "FORBIDDEN" {
		t.Fatalf("employee creating a virtual card: %d %s", r.status, r.body)
	}
	if cards := e.cardIDs("acme", bid); len(cards) != 0 {
		t.Fatalf("refused call created cards %v", cards)
	}
	var card cardJSON
	manager.encryptedJSON("POST", "/admin/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": bid}, 201, &card)
	if card.Type != "VIRTUAL" || card.Last4 == "" {
		t.Errorf("manager's card = %+v", card)
	}
	// Employee: order physical, print, activate, lock, CVV reset are allowed.
	var phys cardJSON
	employee.encryptedJSON("POST", "/admin/customers/"+cid+"/cards/physical", map[string]any{"balanceId": bid,
		"deliveryAddress": map[string]string{"line1": "1 Main St", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}}, 201, &phys)
	employee.encryptedJSON("POST", "/admin/cards/"+card.ID+"/print", nil, 201, nil)
	employee.encryptedJSON("POST", "/admin/cards/"+card.ID+"/cvv", nil, 200, nil)
	employee.json("POST", "/admin/cards/"+card.ID+"/lock", map[string]int{"reason": 3}, 200, nil)
	employee.json("POST", "/admin/cards/"+card.ID+"/external-lock", map[string]any{"reason": 3, "source": "NETWORK", "reference": "n-1"}, 200, nil)
	// Replace: the roles that may order the card's type (physical: all
	// three; virtual: Admin and Manager).
	employee.encryptedJSON("POST", "/admin/cards/"+phys.ID+"/replace", nil, 201, nil)
	if r, _ := employee.encrypted("POST", "/admin/cards/"+card.ID+"/replace", nil); r.status != 403 || r.code() != "FORBIDDEN" {
		t.Errorf("employee replacing a virtual card: %d %s", r.status, r.body)
	}
	bureauUser := e.newAdmin("bur", "Bureau")
	for _, path := range []string{"/admin/cards/" + card.ID + "/external-lock", "/admin/cards/" + card.ID + "/replace"} {
		if r := bureauUser.do("POST", path, nil, invalidRequest); r.status != 403 || r.code() != "FORBIDDEN" {
			t.Errorf("bureau POST %s: %d %s", path, r.status, r.body)
		}
	}
	// ... but not unlock, remove, reload, KYC, partners, summaries, users.
	for _, c := range []struct{ method, path string }{
		{"POST", "/admin/cards/" + card.ID + "/unlock"},
		{"DELETE", "/admin/cards/" + card.ID},
		{"POST", "/admin/balances/" + bid + "/reload"},
		{"PUT", "/admin/customers/" + cid + "/kyc"},
		{"GET", "/admin/summaries"},
		{"GET", "/admin/partners"},
		{"POST", "/admin/users"},
		{"GET", "/admin/bureau/orders"},
		{"GET", "/admin/partners/acme/notice-emails"},
		{"PUT", "/admin/partners/acme/notice-emails"},
	} {
		if r := employee.do(c.method, c.path, nil, invalidRequest); r.status != 403 || r.code() != "FORBIDDEN" {
			t.Errorf("employee %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	// Manager: not partners' creation or reloads of partner balances.
	if r := manager.do("POST", "/admin/partners", map[string]string{"id": "x", "name": "x", "bin": "499999", "currency": "EUR", "fundingModel": "DEPOSIT"}); r.status != 403 {
		t.Errorf("manager creating a partner: %d %s", r.status, r.body)
	}
	if r := manager.do("POST", "/admin/partners/acme/balances/"+p.pbal+"/reload", map[string]int{"amount": 1}); r.status != 403 {
		t.Errorf("manager reloading a partner balance: %d %s", r.status, r.body)
	}
	manager.json("POST", "/admin/cards/"+card.ID+"/unlock", nil, 200, nil)
	manager.json("GET", "/admin/summaries", nil, 200, nil)
	manager.encryptedJSON("POST", "/admin/cards/"+card.ID+"/replace", nil, 201, nil)
	// KYC checks: every staff role reads them, the bureau does not (the
	// embedded store of antaca demo keeps none: 501).
	kycStatus, noticeStatus := 200, 200
	if e.pool == nil {
		kycStatus, noticeStatus = 501, 501
	}
	employee.json("GET", "/admin/customers/"+cid+"/kyc-checks", nil, kycStatus, nil)
	if r := bureauUser.do("GET", "/admin/customers/"+cid+"/kyc-checks", nil); r.status != 403 {
		t.Errorf("bureau reading KYC checks: %d %s", r.status, r.body)
	}
	// Notice addresses: a Manager reads them, only an Admin sets them.
	manager.json("GET", "/admin/partners/acme/notice-emails", nil, noticeStatus, nil)
	if r := manager.do("PUT", "/admin/partners/acme/notice-emails", map[string]any{"addresses": []string{"ops@acme.test"}}); r.status != 403 {
		t.Errorf("manager setting notice addresses: %d %s", r.status, r.body)
	}

	// Admin users: list, duplicate, delete (their session dies), not oneself.
	var users struct {
		Users []struct {
			Username, Role string
		} `json:"users"`
	}
	e.root.json("GET", "/admin/users", nil, 200, &users)
	if len(users.Users) != 4 {
		t.Errorf("admin users = %+v", users.Users)
	}
	if r := e.root.do("POST", "/admin/users", map[string]string{"username": "EMP", "password": "another-password", "role": "Admin"}); r.status != 409 || r.code() != "ALREADY_EXISTS" {
		t.Errorf("duplicate (case-insensitive) admin: %d %s", r.status, r.body)
	}
	e.root.json("DELETE", "/admin/users/emp", nil, 204, nil)
	if r := employee.do("GET", "/admin/cards/"+card.ID+"/status", nil); r.status != 401 {
		t.Errorf("deleted admin's session: %d %s", r.status, r.body)
	}
	if r := e.root.do("DELETE", "/admin/users/root", nil); r.status != 409 || r.code() != "CANNOT_DELETE_SELF" {
		t.Errorf("deleting oneself: %d %s", r.status, r.body)
	}
	if r := e.root.do("DELETE", "/admin/users/nobody", nil); r.status != 404 || r.code() != "ADMIN_NOT_FOUND" {
		t.Errorf("deleting an unknown admin: %d %s", r.status, r.body)
	}
}

// TestAdminResponsesCarryNoCardData: every admin answer (and the plaintext
// of the encrypted ones) is free of the card's PAN and CVV2.
func TestAdminResponsesCarryNoCardData(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	app := p.session(t, cid)
	var seen [][]byte
	record := func(b []byte) { seen = append(seen, append([]byte(nil), b...)) }
	admin := e.root
	admin.seen = record

	var card cardJSON
	admin.encryptedJSON("POST", "/admin/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": bid}, 201, &card)
	var phys cardJSON
	admin.encryptedJSON("POST", "/admin/customers/"+cid+"/cards/physical", map[string]any{"balanceId": bid,
		"deliveryAddress": map[string]string{"line1": "1 Main St", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}}, 201, &phys)
	admin.json("GET", "/admin/bureau/orders", nil, 200, nil)
	admin.json("POST", "/admin/bureau/cards/"+phys.ID+"/personalised", nil, 200, nil)
	admin.json("POST", "/admin/cards/"+phys.ID+"/activate", nil, 200, nil)
	admin.encryptedJSON("POST", "/admin/cards/"+card.ID+"/print", nil, 201, nil)
	var orig fullDataJSON // the CVV2 the creation and print answers could have shown
	app.encryptedJSON("GET", "/customers/me/cards/"+card.ID, nil, 200, &orig)
	admin.encryptedJSON("POST", "/admin/cards/"+card.ID+"/cvv", nil, 200, nil)
	admin.json("GET", "/admin/cards/"+card.ID+"/status", nil, 200, nil)
	admin.json("POST", "/admin/cards/"+card.ID+"/lock", map[string]int{"reason": 4}, 200, nil)
	admin.json("POST", "/admin/cards/"+card.ID+"/unlock", nil, 200, nil)
	admin.json("GET", "/admin/balances/"+bid, nil, 200, nil)
	admin.json("POST", "/admin/balances/"+bid+"/reload", map[string]int{"amount": 10}, 200, nil)
	admin.json("GET", "/admin/customers/"+cid, nil, 200, nil)
	admin.json("GET", "/admin/summaries", nil, 200, nil)

	var virt, pl fullDataJSON
	app.encryptedJSON("GET", "/customers/me/cards/"+card.ID, nil, 200, &virt)
	app.encryptedJSON("GET", "/customers/me/cards/"+phys.ID, nil, 200, &pl)
	admin.json("DELETE", "/admin/cards/"+card.ID, nil, 204, nil)
	if len(seen) < 15 {
		t.Fatalf("recorded %d admin answers", len(seen))
	}
	for i, b := range seen {
		for _, secret := range []string{virt.CardNo, pl.CardNo} {
			if contains(b, secret) {
				t.Errorf("admin answer %d carries a PAN: %s", i, b)
			}
		}
		for _, cvv := range []string{`"` + virt.CVV + `"`, `"` + orig.CVV + `"`, `"` + pl.CVV + `"`, `"cvv"`, `"cardNo"`} {
			if contains(b, cvv) {
				t.Errorf("admin answer %d carries a CVV2 or card data field: %s", i, b)
			}
		}
	}
}

// clientFrom is an anonymous client whose connections come from the
// loopback address ip (e.g. 127.0.0.2), as another machine's would.
func (e *env) clientFrom(ip string) *client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(fixture.caCert)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	base := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DialContext: d.DialContext}
	e.t.Cleanup(base.CloseIdleConnections)
	return &client{e: e, hc: &http.Client{Transport: fixture.validator.Transport(base, e.t.Errorf), Timeout: 20 * time.Second},
		jwe: &jwe.Client{ServerKey: e.serverPK, Key: fixture.clientKey}}
}

// TestLoginThrottling: failures slow down the address that makes them,
// with a delay that doubles up to a cap, while the right password from an
// address the admin used before still gets in at once. The API's clock is
// moved, never slept on.
func TestLoginThrottling(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) {
		c.LoginFreeFailures, c.LoginFreeFailuresPerIP, c.LoginFreeFailuresPerUser = 3, 6, 5
		c.LoginBaseDelay, c.LoginMaxDelay, c.LoginWindow = time.Second, 8*time.Second, 15*time.Minute
	})
	// newEnv logged root in from 127.0.0.1: that address is known for root.
	office := e.newClient(nil, nil)
	attacker, newLaptop, colleague := e.clientFrom("127.0.0.2"), e.clientFrom("127.0.0.3"), e.clientFrom("127.0.0.4")
	e.root.json("POST", "/admin/users", map[string]string{"username": "mgr", "password": "mgr-password-1", "role": "Manager"}, 201, nil)
	login := func(c *client, user, pw string) resp {
		t.Helper()
		return c.do("POST", "/admin/login", map[string]string{"username": user, "password": pw})
	}
	expect := func(what string, r resp, status int, retryAfter string) {
		t.Helper()
		if r.status != status || r.header.Get("Retry-After") != retryAfter {
			t.Fatalf("%s: %d (Retry-After %q) %s, want %d (Retry-After %q)", what, r.status, r.header.Get("Retry-After"), r.body, status, retryAfter)
		}
		if status == 429 && r.code() != "TOO_MANY_ATTEMPTS" {
			t.Fatalf("%s: code %s", what, r.code())
		}
	}

	// Three failures at full speed; then the attacker's address waits,
	// even with the right password.
	for i := range 3 {
		expect(fmt.Sprintf("failure %d", i+1), login(attacker, rootUser, "wrong-password"), 401, "")
	}
	expect("attacker, right password, too early", login(attacker, rootUser, rootPassword), 429, "1")
	// The admin is not locked out: the right password from the office gets in.
	expect("admin from a known address", login(office, rootUser, rootPassword), 200, "")

	// Each further failure doubles the wait, up to the cap (8 s).
	for _, want := range []string{"2", "4", "8", "8"} {
		d, _ := time.ParseDuration(login(attacker, rootUser, "x").header.Get("Retry-After") + "s")
		e.advance(d)
		expect("attacker after waiting", login(attacker, rootUser, "wrong-password"), 401, "")
		expect("attacker again at once", login(attacker, rootUser, "wrong-password"), 429, want)
	}
	// 7 failures for root: over the username's 5, which slows addresses
	// root never used (guessing spread over many addresses) ...
	expect("root from a new address", login(newLaptop, rootUser, rootPassword), 429, "4")
	// ... but never the known one.
	expect("admin from a known address, under attack", login(office, rootUser, rootPassword), 200, "")
	e.advance(4 * time.Second)
	expect("root from the new address after the wait", login(newLaptop, rootUser, rootPassword), 200, "")
	// The address is known now: further failures for root from elsewhere
	// no longer slow it.
	e.advance(8 * time.Second)
	expect("attacker", login(attacker, rootUser, "wrong-password"), 401, "")
	expect("root from the laptop, now known", login(newLaptop, rootUser, rootPassword), 200, "")

	// The attacker's address is slowed for every username (8 failures
	// from it, over its 6) ...
	e.advance(8 * time.Second)
	expect("attacker tries mgr", login(attacker, "mgr", "wrong"), 401, "")
	expect("attacker, mgr's right password, too early", login(attacker, "mgr", "mgr-password-1"), 429, "8")
	// ... other addresses are not: mgr logs in from a fresh address.
	expect("mgr from a colleague's machine", login(colleague, "mgr", "mgr-password-1"), 200, "")

	// Unknown usernames count like wrong passwords, against the address.
	for i := range 3 {
		expect(fmt.Sprintf("unknown user %d", i), login(colleague, fmt.Sprintf("nobody%d", i), "x"), 401, "")
	}

	// Counts are forgotten a window after their last failure.
	e.advance(16 * time.Minute)
	expect("attacker after the window", login(attacker, rootUser, rootPassword), 200, "")
}

// TestUnknownRoutes: JSON 404 and 405.
func TestUnknownRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/nothing", 404, "NOT_FOUND"},
		{"GET", "/secure/customers", 405, "METHOD_NOT_ALLOWED"},
		{"PATCH", "/admin/partners", 405, "METHOD_NOT_ALLOWED"},
	} {
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), `"code":"`+tc.code+`"`) || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, rec.Code, rec.Body)
		}
	}
	if got := e.metric("antaca_http_requests_total", map[string]string{"route": "unmatched", "code": "404"}); got != 1 {
		t.Errorf("unmatched 404s counted %v, want 1", got)
	}
}
