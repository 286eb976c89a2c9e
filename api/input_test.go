package api_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/antaca/antaca/api/jwe"
)

// TestBadInput: malformed or invalid requests answer 4xx JSON with a code,
// and change nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	p.c.json("POST", "/secure/customers/"+cid+"/balances/"+bid+"/reload", map[string]int{"amount": 1000}, 200, nil)
	var card fullDataJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": bid}, 201, &card)
	app := p.session(t, cid)

	reload := "/secure/customers/" + cid + "/balances/" + bid + "/reload"
	cardPath := "/secure/customers/" + cid + "/cards/" + card.ID
	big := `{"amount": 1, "pad": "` + strings.Repeat("x", 70<<10) + `"}`
	tests := []struct {
		name         string
		c            *client
		method, path string
		body         string // raw; "" for none
		hdr          [2]string
		status       int
		code         string
	}{
		{"malformed JSON", p.c, "POST", reload, `{"amount": 10`, [2]string{}, 400, "MALFORMED_JSON"},
		{"trailing data", p.c, "POST", reload, `{"amount": 10} {}`, [2]string{}, 400, "MALFORMED_JSON"},
		{"amount as string", p.c, "POST", reload, `{"amount": "10"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"fractional amount", p.c, "POST", reload, `{"amount": 10.5}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"negative amount", p.c, "POST", reload, `{"amount": -5}`, [2]string{}, 400, "INVALID_AMOUNT"},
		{"zero amount", p.c, "POST", reload, `{"amount": 0}`, [2]string{}, 400, "INVALID_AMOUNT"},
		{"huge amount", p.c, "POST", reload, `{"amount": 10000000000000}`, [2]string{}, 400, "AMOUNT_TOO_LARGE"},
		{"amount one above the maximum", p.c, "POST", reload, `{"amount": 1000000000000}`, [2]string{}, 400, "AMOUNT_TOO_LARGE"},
		{"amount beyond int64", p.c, "POST", reload, `{"amount": 99999999999999999999}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"missing amount", p.c, "POST", reload, `{}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"array body", p.c, "POST", reload, `[1]`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"empty body", p.c, "POST", reload, ``, [2]string{}, 400, "VALIDATION_ERROR"},
		{"currency mismatch", p.c, "POST", reload, `{"amount": 10, "currency": "USD"}`, [2]string{}, 400, "CURRENCY_MISMATCH"},
		{"bad idempotency key", p.c, "POST", reload, `{"amount": 10}`, [2]string{"Idempotency-Key", "has space"}, 400, "VALIDATION_ERROR"},
		{"oversized body", p.c, "POST", reload, big, [2]string{}, 413, "PAYLOAD_TOO_LARGE"},
		{"unknown balance", p.c, "POST", "/secure/customers/" + cid + "/balances/bal_nope/reload", `{"amount": 10}`, [2]string{}, 404, "BALANCE_NOT_FOUND"},
		{"lock reason 9", p.c, "POST", cardPath + "/lock", `{"reason": 9}`, [2]string{}, 400, "INVALID_LOCK_REASON"},
		{"lock reason 0", p.c, "POST", cardPath + "/lock", `{"reason": 0}`, [2]string{}, 400, "INVALID_LOCK_REASON"},
		{"lock reason missing", p.c, "POST", cardPath + "/lock", `{}`, [2]string{}, 400, "INVALID_LOCK_REASON"},
		{"lock reason as string", p.c, "POST", cardPath + "/lock", `{"reason": "1"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"lock unknown card", p.c, "POST", "/secure/customers/" + cid + "/cards/crd_nope/lock", `{"reason": 1}`, [2]string{}, 404, "CARD_NOT_FOUND"},
		{"unknown KYC status", p.c, "PUT", "/secure/customers/" + cid + "/kyc", `{"status": "APPROVED"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"KYC status NONE", p.c, "PUT", "/secure/customers/" + cid + "/kyc", `{"status": "NONE"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"lower-case currency", p.c, "POST", "/secure/customers/" + cid + "/balances", `{"currency": "eur"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"customer without names", p.c, "POST", "/secure/customers", `{"email": "a@b.c"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"customer with bad e-mail", p.c, "POST", "/secure/customers", `{"firstName": "A", "lastName": "B", "email": "nope"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"unknown funding model", e.root, "POST", "/admin/partners", `{"id": "p2", "name": "P2", "bin": "499999", "currency": "EUR", "fundingModel": "PREPAID"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"5-digit BIN", e.root, "POST", "/admin/partners", `{"id": "p2", "name": "P2", "bin": "49999", "currency": "EUR", "fundingModel": "DEPOSIT"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"partner id with a brace", e.root, "POST", "/admin/partners", `{"id": "p}2", "name": "P2", "bin": "499999", "currency": "EUR", "fundingModel": "DEPOSIT"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"BIN taken", e.root, "POST", "/admin/partners", `{"id": "p2", "name": "P2", "bin": "41234599", "currency": "EUR", "fundingModel": "DEPOSIT"}`, [2]string{}, 409, "BIN_IN_USE"},
		{"partner id taken", e.root, "POST", "/admin/partners", `{"id": "acme", "name": "P2", "bin": "499999", "currency": "EUR", "fundingModel": "DEPOSIT"}`, [2]string{}, 409, "ALREADY_EXISTS"},
		{"unknown partner balance type", e.root, "POST", "/admin/partners/acme/balances", `{"type": "SAVINGS", "currency": "EUR"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"second DEPOSIT EUR balance", e.root, "POST", "/admin/partners/acme/balances", `{"type": "DEPOSIT", "currency": "EUR"}`, [2]string{}, 409, "ALREADY_EXISTS"},
		{"negative threshold", e.root, "POST", "/admin/partners/acme/balances", `{"type": "CREDIT", "currency": "EUR", "lowBalanceThreshold": -1}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"unknown partner", e.root, "GET", "/admin/partners/nope", ``, [2]string{}, 404, "PARTNER_NOT_FOUND"},
		{"unknown partner balance", e.root, "POST", "/admin/partners/acme/balances/pbl_nope/reload", `{"amount": 5}`, [2]string{}, 404, "BALANCE_NOT_FOUND"},
		{"partner reload of zero", e.root, "POST", "/admin/partners/acme/balances/" + p.pbal + "/reload", `{"amount": 0}`, [2]string{}, 400, "INVALID_AMOUNT"},
		{"admin: unknown card", e.root, "POST", "/admin/cards/crd_nope/lock", `{"reason": 1}`, [2]string{}, 404, "CARD_NOT_FOUND"},
		{"admin: customer id as card id", e.root, "POST", "/admin/cards/" + cid + "/lock", `{"reason": 1}`, [2]string{}, 404, "CARD_NOT_FOUND"},
		{"admin: unknown balance", e.root, "GET", "/admin/balances/bal_nope", ``, [2]string{}, 404, "BALANCE_NOT_FOUND"},
		{"admin: unknown customer", e.root, "PUT", "/admin/customers/cus_nope/kyc", `{"status": "VERIFIED"}`, [2]string{}, 404, "CUSTOMER_NOT_FOUND"},
		{"short admin password", e.root, "POST", "/admin/users", `{"username": "bob", "password": "short", "role": "Admin"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"unknown role", e.root, "POST", "/admin/users", `{"username": "bob", "password": "long-enough-password", "role": "Owner"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"login without password", e.newClient(nil, nil), "POST", "/admin/login", `{"username": "root"}`, [2]string{}, 400, "VALIDATION_ERROR"},
		{"app: unknown card status", app, "GET", "/customers/me/cards/crd_nope/status", ``, [2]string{}, 404, "CARD_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body *strings.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequest(tt.method, e.ts.URL+tt.path, nil)
			if body != nil {
				req, err = http.NewRequest(tt.method, e.ts.URL+tt.path, body)
				req.Header.Set("Content-Type", "application/json")
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.hdr[0] != "" {
				req.Header.Set(tt.hdr[0], tt.hdr[1])
			}
			invalidRequest(req)
			r := tt.c.send(req)
			if r.status != tt.status || r.code() != tt.code {
				t.Errorf("%d %s, want %d %s", r.status, r.body, tt.status, tt.code)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	// Encrypted bodies are checked the same way once decrypted.
	jweTests := []struct {
		name, path string
		body       any
		code       string
	}{
		{"order without address", "/customers/me/cards/physical", map[string]string{"balanceId": bid}, "VALIDATION_ERROR"},
		{"address without country", "/customers/me/cards/physical", map[string]any{"balanceId": bid, "deliveryAddress": map[string]string{"line1": "x", "city": "y", "postalCode": "z"}}, "VALIDATION_ERROR"},
		{"PIN too short", "/customers/me/cards/" + card.ID + "/pin", map[string]string{"pin": "12"}, "INVALID_PIN"},
		{"PIN as a number", "/customers/me/cards/" + card.ID + "/pin", map[string]int{"pin": 1234}, "VALIDATION_ERROR"},
		{"virtual without balance", "/customers/me/cards/virtual", map[string]string{}, "VALIDATION_ERROR"},
	}
	for _, tt := range jweTests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := app.jwe.NewRequest(ctx, "POST", e.ts.URL+tt.path, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			invalidRequest(req)
			r := app.send(req)
			if r.status != 400 || r.code() != tt.code {
				t.Errorf("%d %s, want 400 %s", r.status, r.body, tt.code)
			}
		})
	}

	// Nothing changed.
	b, err := e.ledger.UserBalance(ctx, "acme", bid)
	must(t, err)
	c, err := e.ledger.Card(ctx, "acme", card.ID)
	must(t, err)
	cust, err := e.ledger.Customer(ctx, "acme", cid)
	must(t, err)
	cards := e.cardIDs("acme", bid)
	pb, err := e.ledger.PartnerBalance(ctx, "acme", p.pbal)
	must(t, err)
	partners, err := e.rdb.SCard(ctx, e.ledger.Keys().Partners()).Result()
	must(t, err)
	if b.Available != 1000 || c.LockReason != 0 || c.Status != "ACTIVE" || c.PINVerifier != "" || cust.KYCStatus != "VERIFIED" ||
		len(cards) != 1 || pb.Available != 0 || partners != 1 {
		t.Errorf("state changed: balance %d, card %s/%d pin %t, kyc %s, %d cards, partner balance %d, %d partners",
			b.Available, c.Status, c.LockReason, c.PINVerifier != "", cust.KYCStatus, len(cards), pb.Available, partners)
	}
	ids, _ := e.ledger.PartnerBalanceIDs(ctx, "acme")
	if len(ids) != 1 {
		t.Errorf("partner balances = %v, want 1", ids)
	}
}

// TestJWEErrors: the four JWE error codes, algorithm rules, and answers
// encrypted to the caller's key only.
func TestJWEErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	app := p.session(t, cid)
	path := "/customers/me/cards/virtual"
	plain, _ := json.Marshal(map[string]string{"balanceId": bid})
	pubHeader, _ := jwe.EncodePublicKey(&fixture.clientKey.PublicKey)

	encryptTo := func(key any, alg jose.KeyAlgorithm, enc jose.ContentEncryption, data []byte) string {
		en, err := jose.NewEncrypter(enc, jose.Recipient{Algorithm: alg, Key: key}, nil)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := en.Encrypt(data)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := obj.CompactSerialize()
		return s
	}
	envelope := func(payload string) string {
		b, _ := json.Marshal(jwe.Envelope{Payload: payload})
		return string(b)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallHeader, _ := jwe.EncodePublicKey(&small.PublicKey)

	tests := []struct {
		name            string
		method, path    string
		encrypted, pubK string
		body            string
		code            string
	}{
		{"plain JSON to an encrypted endpoint", "POST", path, "", "", string(plain), "ENCRYPTION_REQUIRED"},
		{"Encrypted-Request false", "POST", path, "false", pubHeader, envelope(encryptTo(e.serverPK, jose.RSA_OAEP_256, jose.A256GCM, plain)), "ENCRYPTION_REQUIRED"},
		{"full data without headers", "GET", "/customers/me/cards/crd_x", "", "", "", "ENCRYPTION_REQUIRED"},
		{"no Public-Key", "POST", path, "true", "", envelope(encryptTo(e.serverPK, jose.RSA_OAEP_256, jose.A256GCM, plain)), "INVALID_PUBLIC_KEY"},
		{"garbage Public-Key", "POST", path, "true", "bm90IGEga2V5", envelope(encryptTo(e.serverPK, jose.RSA_OAEP_256, jose.A256GCM, plain)), "INVALID_PUBLIC_KEY"},
		{"raw PEM without base64", "GET", "/customers/me/cards/crd_x", "true", "-----BEGIN PUBLIC KEY-----", "", "INVALID_PUBLIC_KEY"},
		{"1024-bit Public-Key", "POST", path, "true", smallHeader, envelope(encryptTo(e.serverPK, jose.RSA_OAEP_256, jose.A256GCM, plain)), "INVALID_PUBLIC_KEY"},
		{"body without payload", "POST", path, "true", pubHeader, string(plain), "INVALID_PAYLOAD"},
		{"body not JSON", "POST", path, "true", pubHeader, "eyJhbGciOi.x.y.z.w", "INVALID_PAYLOAD"},
		{"payload not a string", "POST", path, "true", pubHeader, `{"payload": 42}`, "INVALID_PAYLOAD"},
		{"plaintext not JSON", "POST", path, "true", pubHeader, envelope(encryptTo(e.serverPK, jose.RSA_OAEP_256, jose.A256GCM, []byte("hello"))), "INVALID_PAYLOAD"},
		{"encrypted to another key", "POST", path, "true", pubHeader, envelope(encryptTo(&fixture.otherClientKey.PublicKey, jose.RSA_OAEP_256, jose.A256GCM, plain)), "CANT_DECRYPT_PAYLOAD"},
		{"enc A128GCM", "POST", path, "true", pubHeader, envelope(encryptTo(e.serverPK, jose.RSA_OAEP_256, jose.A128GCM, plain)), "CANT_DECRYPT_PAYLOAD"},
		{"alg RSA1_5", "POST", path, "true", pubHeader, envelope(encryptTo(e.serverPK, jose.RSA1_5, jose.A256GCM, plain)), "CANT_DECRYPT_PAYLOAD"},
		{"not a JWE", "POST", path, "true", pubHeader, envelope("abc.def.ghi.jkl.mno"), "CANT_DECRYPT_PAYLOAD"},
		{"encryption on a plain endpoint", "POST", "/customers/me/balances", "true", pubHeader, envelope(encryptTo(e.serverPK, jose.RSA_OAEP_256, jose.A256GCM, []byte(`{"currency":"EUR"}`))), "ENCRYPTION_NOT_SUPPORTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req *http.Request
			var err error
			if tt.body != "" {
				req, err = http.NewRequest(tt.method, e.ts.URL+tt.path, strings.NewReader(tt.body))
				req.Header.Set("Content-Type", "application/json")
			} else {
				req, err = http.NewRequest(tt.method, e.ts.URL+tt.path, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.encrypted != "" {
				req.Header.Set(jwe.HeaderEncrypted, tt.encrypted)
			}
			if tt.pubK != "" {
				req.Header.Set(jwe.HeaderPublicKey, tt.pubK)
			}
			invalidRequest(req)
			r := app.send(req)
			if r.status != 400 || r.code() != tt.code {
				t.Errorf("%d %s, want 400 %s", r.status, r.body, tt.code)
			}
		})
	}
	if cards := e.cardIDs("acme", bid); len(cards) != 0 {
		t.Fatalf("refused JWE requests created cards %v", cards)
	}

	// RSA-OAEP (SHA-1) is accepted from clients; the answer is RSA-OAEP-256
	// to the client's key, which another key cannot open.
	oaep := *app.jwe
	oaep.Alg = jwe.AlgRSAOAEP
	req, err := oaep.NewRequest(ctx, "POST", e.ts.URL+path, map[string]string{"balanceId": bid})
	if err != nil {
		t.Fatal(err)
	}
	r := app.send(req)
	if r.status != 201 {
		t.Fatalf("RSA-OAEP request: %d %s", r.status, r.body)
	}
	var env jwe.Envelope
	if err := json.Unmarshal(r.body, &env); err != nil || env.Payload == "" {
		t.Fatalf("answer is not an envelope: %s", r.body)
	}
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(env.Payload, ".")[0])
	var h map[string]any
	_ = json.Unmarshal(header, &h)
	if h["alg"] != "RSA-OAEP-256" || h["enc"] != "A256GCM" {
		t.Errorf("answer header = %v, want RSA-OAEP-256 + A256GCM", h)
	}
	if _, err := jwe.OpenEnvelope(r.body, fixture.otherClientKey); err == nil {
		t.Error("another key opened the answer")
	}
	if _, err := jwe.OpenEnvelope(r.body, fixture.clientKey); err != nil {
		t.Errorf("the client's key cannot open the answer: %v", err)
	}
	// Routes without encryption refuse an encrypted request, in plain JSON.
	var full fullDataJSON
	_ = json.Unmarshal(mustOpen(t, r.body), &full)
	if rr, _ := app.encrypted("DELETE", "/customers/me/cards/"+full.ID, nil); rr.status != 400 || rr.code() != "ENCRYPTION_NOT_SUPPORTED" {
		t.Errorf("encrypted DELETE: %d %s", rr.status, rr.body)
	}
}

func mustOpen(t *testing.T, body []byte) []byte {
	t.Helper()
	plain, err := jwe.OpenEnvelope(body, fixture.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	return plain
}
