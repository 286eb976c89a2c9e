package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/antaca/antaca/api/jwe"
)

// rawRequest sends body bytes exactly as given, with contentType ("" for
// no header), past the OpenAPI request check (the answer is still checked).
func (c *client) rawRequest(method, path string, body []byte, contentType string, opts ...reqOpt) resp {
	c.e.t.Helper()
	var rd *bytes.Reader
	req, err := http.NewRequest(method, c.e.ts.URL+path, nil)
	if body != nil {
		rd = bytes.NewReader(body)
		req, err = http.NewRequest(method, c.e.ts.URL+path, rd)
	}
	if err != nil {
		c.e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	invalidRequest(req)
	return c.send(req, opts...)
}

// encryptedRaw sends plaintext bytes, exactly as given, JWE-encrypted to
// the server key (jwe.Client would re-encode them and mend invalid UTF-8).
func (c *client) encryptedRaw(method, path string, plaintext []byte) resp {
	c.e.t.Helper()
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: c.e.serverPK}, nil)
	if err != nil {
		c.e.t.Fatal(err)
	}
	obj, err := enc.Encrypt(plaintext)
	if err != nil {
		c.e.t.Fatal(err)
	}
	token, _ := obj.CompactSerialize()
	body, _ := json.Marshal(jwe.Envelope{Payload: token})
	pub, err := jwe.EncodePublicKey(&fixture.clientKey.PublicKey)
	if err != nil {
		c.e.t.Fatal(err)
	}
	return c.rawRequest(method, path, body, "application/json",
		header(jwe.HeaderEncrypted, "true"), header(jwe.HeaderPublicKey, pub))
}

// TestHostileText: NUL bytes, control characters, invalid UTF-8 and
// duplicate keys in bodies, paths and queries answer 400 with a code and
// the field, and nothing is created or changed: no journal entry is even
// written, so nothing can reach Postgres to stall the write-behind.
func TestHostileText(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	app := p.session(t, cid)
	var virt fullDataJSON
	app.encryptedJSON("POST", "/customers/me/cards/virtual", map[string]string{"balanceId": bid}, 201, &virt)

	rdb, keys := e.rdb, e.ledger.Keys()
	journalLen := func() int64 {
		n, err := rdb.XLen(ctx, keys.Journal("acme")).Result()
		must(t, err)
		return n
	}
	before := journalLen()
	partnersBefore, err := rdb.SCard(ctx, keys.Partners()).Result()
	must(t, err)

	address := `{"line1":"1 Main St","city":"Warsaw","postalCode":"00-001","country":"PL"}`
	reload := "/secure/customers/" + cid + "/balances/" + bid + "/reload"
	tests := []struct {
		name         string
		c            *client
		method, path string
		body         string
		code, field  string
	}{
		// Customers.
		{"admin: NUL in firstName", e.root, "POST", "/admin/partners/acme/customers", `{"firstName":"a\u0000b","lastName":"x"}`, "INVALID_TEXT", "firstName"},
		{"secure: NUL in lastName", p.c, "POST", "/secure/customers", `{"firstName":"a","lastName":"x\u0000"}`, "INVALID_TEXT", "lastName"},
		{"secure: newline in lastName", p.c, "POST", "/secure/customers", `{"firstName":"a","lastName":"x\ny"}`, "INVALID_TEXT", "lastName"},
		{"secure: escape control in externalId", p.c, "POST", "/secure/customers", `{"externalId":"e\u001b[31m","firstName":"a","lastName":"b"}`, "INVALID_TEXT", "externalId"},
		{"secure: C1 control in email", p.c, "POST", "/secure/customers", `{"firstName":"a","lastName":"b","email":"a\u0085@b.c"}`, "INVALID_TEXT", "email"},
		{"secure: raw invalid UTF-8 in firstName", p.c, "POST", "/secure/customers", "{\"firstName\":\"Zo\xeb\",\"lastName\":\"b\"}", "INVALID_TEXT", "firstName"},
		{"secure: lone surrogate in firstName", p.c, "POST", "/secure/customers", `{"firstName":"a\ud800","lastName":"b"}`, "INVALID_TEXT", "firstName"},
		{"secure: duplicate firstName", p.c, "POST", "/secure/customers", `{"firstName":"a","lastName":"b","firstName":"c"}`, "DUPLICATE_KEY", "firstName"},
		{"secure: KYC status twice", p.c, "PUT", "/secure/customers/" + cid + "/kyc", `{"status":"REJECTED","Status":"VERIFIED"}`, "DUPLICATE_KEY", "Status"},
		// Partners.
		{"NUL in partner name", e.root, "POST", "/admin/partners", `{"id":"p2","name":"P\u0000","bin":"499999","currency":"EUR","fundingModel":"DEPOSIT"}`, "INVALID_TEXT", "name"},
		{"tab in partner name", e.root, "POST", "/admin/partners", `{"id":"p2","name":"P\t2","bin":"499999","currency":"EUR","fundingModel":"DEPOSIT"}`, "INVALID_TEXT", "name"},
		{"raw invalid UTF-8 in partner name", e.root, "POST", "/admin/partners", "{\"id\":\"p2\",\"name\":\"\xff\xfe\",\"bin\":\"499999\",\"currency\":\"EUR\",\"fundingModel\":\"DEPOSIT\"}", "INVALID_TEXT", "name"},
		{"duplicate partner id", e.root, "POST", "/admin/partners", `{"id":"p2","name":"P2","bin":"499999","currency":"EUR","fundingModel":"DEPOSIT","id":"p3"}`, "DUPLICATE_KEY", "id"},
		// Balances.
		{"NUL in balance currency", p.c, "POST", "/secure/customers/" + cid + "/balances", `{"currency":"US\u0000"}`, "INVALID_TEXT", "currency"},
		{"raw invalid UTF-8 in partner balance type", e.root, "POST", "/admin/partners/acme/balances", "{\"type\":\"CREDIT\xc0\",\"currency\":\"USD\"}", "INVALID_TEXT", "type"},
		{"duplicate amount", p.c, "POST", reload, `{"amount":1,"amount":2}`, "DUPLICATE_KEY", "amount"},
		{"duplicate amount by case", p.c, "POST", reload, `{"amount":1,"Amount":2}`, "DUPLICATE_KEY", "Amount"},
		{"duplicate partner reload amount", e.root, "POST", "/admin/partners/acme/balances/" + p.pbal + "/reload", `{"amount":1,"amount":2}`, "DUPLICATE_KEY", "amount"},
		{"control character in reload currency", p.c, "POST", reload, `{"amount":1,"currency":"EU\u0007"}`, "INVALID_TEXT", "currency"},
		{"NUL in an unknown field", p.c, "POST", reload, `{"amount":1,"note":"\u0000"}`, "INVALID_TEXT", "note"},
		{"NUL in a field name", p.c, "POST", reload, `{"amount":1,"x\u0000":"y"}`, "INVALID_TEXT", `x\x00`},
		// Admin users and login.
		{"NUL in admin username", e.root, "POST", "/admin/users", `{"username":"bob\u0000","password":"long-enough-password","role":"Admin"}`, "INVALID_TEXT", "username"},
		{"NUL in login password", e.newClient(nil, nil), "POST", "/admin/login", `{"username":"root","password":"x\u0000"}`, "INVALID_TEXT", "password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.c.rawRequest(tt.method, tt.path, []byte(tt.body), "application/json")
			var got struct{ Code, Field, Message string }
			_ = json.Unmarshal(r.body, &got)
			if r.status != 400 || got.Code != tt.code || got.Field != tt.field {
				t.Errorf("%d %s, want 400 %s field %q", r.status, r.body, tt.code, tt.field)
			}
			if got.Message == "" || !strings.Contains(got.Message, tt.field) {
				t.Errorf("message %q does not name the field %q", got.Message, tt.field)
			}
		})
	}

	// Card delivery addresses travel JWE-encrypted: the plaintext gets the
	// same checks.
	jweTests := []struct {
		name, path, plaintext string
		code, field           string
	}{
		{"NUL in delivery city", "/customers/me/cards/physical",
			`{"balanceId":"` + bid + `","deliveryAddress":{"line1":"1 Main St","city":"W\u0000","postalCode":"00-001","country":"PL"}}`, "INVALID_TEXT", "deliveryAddress.city"},
		{"newline in delivery line1", "/customers/me/cards/physical",
			`{"balanceId":"` + bid + `","deliveryAddress":{"line1":"1 Main St\nFlat 2","city":"Warsaw","postalCode":"00-001","country":"PL"}}`, "INVALID_TEXT", "deliveryAddress.line1"},
		{"raw invalid UTF-8 in delivery name", "/customers/me/cards/physical",
			"{\"balanceId\":\"" + bid + "\",\"deliveryAddress\":{\"name\":\"\xed\xa0\x80\",\"line1\":\"1\",\"city\":\"W\",\"postalCode\":\"0\",\"country\":\"PL\"}}", "INVALID_TEXT", "deliveryAddress.name"},
		{"duplicate key in delivery address", "/customers/me/cards/physical",
			`{"balanceId":"` + bid + `","deliveryAddress":{"line1":"1 Main St","city":"Warsaw","postalCode":"00-001","country":"PL","country":"DE"}}`, "DUPLICATE_KEY", "deliveryAddress.country"},
		{"duplicate balanceId", "/customers/me/cards/physical",
			`{"balanceId":"` + bid + `","deliveryAddress":` + address + `,"balanceId":"bal_other"}`, "DUPLICATE_KEY", "balanceId"},
		{"print: control character in delivery address", "/customers/me/cards/" + virt.ID + "/print",
			`{"deliveryAddress":{"line1":"1 Main St","city":"Warsaw\u001f","postalCode":"00-001","country":"PL"}}`, "INVALID_TEXT", "deliveryAddress.city"},
	}
	for _, tt := range jweTests {
		t.Run(tt.name, func(t *testing.T) {
			r := app.encryptedRaw("POST", tt.path, []byte(tt.plaintext))
			var got struct{ Code, Field string }
			_ = json.Unmarshal(r.body, &got)
			if r.status != 400 || got.Code != tt.code || got.Field != tt.field {
				t.Errorf("%d %s, want 400 %s field %q", r.status, r.body, tt.code, tt.field)
			}
		})
	}
	// The envelope itself: a second payload is as ambiguous as a second amount.
	if r := app.rawRequest("POST", "/customers/me/cards/virtual", []byte(`{"payload":"a.b.c.d.e","payload":"f.g.h.i.j"}`), "application/json",
		header(jwe.HeaderEncrypted, "true"), header(jwe.HeaderPublicKey, mustPublicKeyHeader(t))); r.status != 400 || r.code() != "DUPLICATE_KEY" {
		t.Errorf("envelope with two payloads: %d %s", r.status, r.body)
	}

	// Path and query parameters.
	paramTests := []struct {
		name  string
		c     *client
		path  string
		field string
	}{
		{"NUL in a card id", e.root, "/admin/cards/crd%00x/status", "cardId"},
		{"invalid UTF-8 in a customer id", e.root, "/admin/customers/cus_%FF", "customerId"},
		{"control character in a balance id", p.c, "/secure/customers/" + cid + "/balances/bal%0A", "balanceId"},
		{"NUL in a partner id", e.root, "/admin/partners/acme%00", "partnerId"},
		{"NUL in a query value", e.root, "/admin/partners?q=%00", "q"},
		{"invalid UTF-8 in a query name", e.root, "/admin/partners?%FF=1", "query"},
	}
	for _, tt := range paramTests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.c.rawRequest("GET", tt.path, nil, "")
			var got struct{ Code, Field string }
			_ = json.Unmarshal(r.body, &got)
			if r.status != 400 || got.Code != "INVALID_TEXT" || got.Field != tt.field {
				t.Errorf("%d %s, want 400 INVALID_TEXT field %q", r.status, r.body, tt.field)
			}
		})
	}

	// Nothing was created or changed.
	if n := journalLen(); n != before {
		t.Errorf("journal of acme grew from %d to %d entries", before, n)
	}
	if n, _ := rdb.SCard(ctx, keys.Partners()).Result(); n != partnersBefore {
		t.Errorf("partners %d, want %d", n, partnersBefore)
	}
	b, err := e.ledger.UserBalance(ctx, "acme", bid)
	must(t, err)
	cust, err := e.ledger.Customer(ctx, "acme", cid)
	must(t, err)
	if b.Available != 0 || cust.KYCStatus != "VERIFIED" || len(e.cardIDs("acme", bid)) != 1 {
		t.Errorf("state changed: balance %d, kyc %s, cards %v", b.Available, cust.KYCStatus, e.cardIDs("acme", bid))
	}

	// Text that is merely unusual is welcome, and stored as sent.
	var ok customerJSON
	p.c.json("POST", "/secure/customers", map[string]string{"firstName": "Zoë 😀", "lastName": "Ōtsuka-Łukasiewicz"}, 201, &ok)
	stored, err := e.ledger.Customer(ctx, "acme", ok.ID)
	must(t, err)
	if stored.FirstName != "Zoë 😀" || stored.LastName != "Ōtsuka-Łukasiewicz" {
		t.Errorf("stored names %q %q", stored.FirstName, stored.LastName)
	}
	e.flushJournal() // and Postgres takes every entry
}

func mustPublicKeyHeader(t *testing.T) string {
	t.Helper()
	pub, err := jwe.EncodePublicKey(&fixture.clientKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestContentType: a body must be sent as application/json (415
// UNSUPPORTED_MEDIA_TYPE otherwise, nothing changed); charset=utf-8 is
// welcome, and requests without a body need no Content-Type.
func TestContentType(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	app := p.session(t, cid)
	reload := "/secure/customers/" + cid + "/balances/" + bid + "/reload"
	body := []byte(`{"amount":100}`)
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
		"application/json; charset=iso-8859-1", "application/xml", "text/json"} {
		if r := p.c.rawRequest("POST", reload, body, ct); r.status != 415 || r.code() != "UNSUPPORTED_MEDIA_TYPE" {
			t.Errorf("Content-Type %q: %d %s", ct, r.status, r.body)
		}
	}
	// A JWE envelope is JSON too.
	req, err := app.jwe.NewRequest(ctx, "POST", e.ts.URL+"/customers/me/cards/virtual", map[string]string{"balanceId": bid})
	must(t, err)
	req.Header.Set("Content-Type", "text/plain")
	invalidRequest(req)
	if r := app.send(req); r.status != 415 || r.code() != "UNSUPPORTED_MEDIA_TYPE" {
		t.Errorf("JWE request as text/plain: %d %s", r.status, r.body)
	}
	if b, _ := e.ledger.UserBalance(ctx, "acme", bid); b.Available != 0 || len(e.cardIDs("acme", bid)) != 0 {
		t.Fatalf("refused requests changed state: balance %d, cards %v", b.Available, e.cardIDs("acme", bid))
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8"} {
		if r := p.c.rawRequest("POST", reload, body, ct); r.status != 200 {
			t.Errorf("Content-Type %q: %d %s", ct, r.status, r.body)
		}
	}
	if b, _ := e.ledger.UserBalance(ctx, "acme", bid); b.Available != 300 {
		t.Errorf("balance %d after three reloads of 100", b.Available)
	}
	// No body, no Content-Type needed.
	if r := p.c.rawRequest("POST", "/secure/customers/"+cid+"/sessions", nil, ""); r.status != 201 {
		t.Errorf("body-less POST: %d %s", r.status, r.body)
	}
}

// TestAmountLimit: reloads above authz.MaxAmount (10^12 - 1 minor units,
// the 12 digits of an ISO 8583 amount) are refused with AMOUNT_TOO_LARGE;
// the maximum itself is accepted.
func TestAmountLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	partnerReload := "/admin/partners/acme/balances/" + p.pbal + "/reload"
	userReload := "/secure/customers/" + cid + "/balances/" + bid + "/reload"
	for _, tc := range []struct {
		c    *client
		path string
	}{{e.root, partnerReload}, {p.c, userReload}, {e.root, "/admin/balances/" + bid + "/reload"}} {
		r := tc.c.rawRequest("POST", tc.path, []byte(`{"amount":1000000000000}`), "application/json")
		if r.status != 400 || r.code() != "AMOUNT_TOO_LARGE" || !strings.Contains(string(r.body), "999999999999") {
			t.Errorf("%s 10^12: %d %s", tc.path, r.status, r.body)
		}
	}
	if r := e.root.rawRequest("POST", "/admin/partners/acme/balances", []byte(`{"type":"CREDIT","currency":"EUR","lowBalanceThreshold":1000000000000}`), "application/json"); r.status != 400 || r.code() != "VALIDATION_ERROR" {
		t.Errorf("threshold 10^12: %d %s", r.status, r.body)
	}
	pb, err := e.ledger.PartnerBalance(ctx, "acme", p.pbal)
	must(t, err)
	b, err := e.ledger.UserBalance(ctx, "acme", bid)
	must(t, err)
	if pb.Available != 0 || b.Available != 0 {
		t.Fatalf("refused reloads changed balances: partner %d, user %d", pb.Available, b.Available)
	}
	e.root.json("POST", partnerReload, map[string]int64{"amount": 999_999_999_999}, 200, nil)
	p.c.json("POST", userReload, map[string]int64{"amount": 999_999_999_999}, 200, nil)
}
