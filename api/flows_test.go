package api_test

import (
	"context"
	"crypto/rsa"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/api/jwe"
)

// TestVirtualCardFlow is the life of a virtual card over the
// customer channel: register -> KYC -> balance -> reload -> virtual card ->
// full data (decrypted with the test's own key) -> lock / unlock rules ->
// remove.
func TestVirtualCardFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "41234567", "DEPOSIT", 0)

	// Register and start KYC from the app, then the partner's own KYC verifies.
	var cust customerJSON
	p.c.json("POST", "/secure/customers", map[string]string{"externalId": "u-1", "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com"}, 201, &cust)
	if cust.KYCStatus != "NONE" || cust.PartnerID != "acme" {
		t.Fatalf("new customer = %+v", cust)
	}
	app := p.session(t, cust.ID)
	app.json("POST", "/customers/me/register", nil, 202, &cust)
	if cust.KYCStatus != "PENDING" {
		t.Fatalf("after register kycStatus = %s, want PENDING", cust.KYCStatus)
	}
	if r := app.do("POST", "/customers/me/balances", map[string]string{"currency": "EUR"}); r.status != 409 || r.code() != "KYC_NOT_VERIFIED" {
		t.Fatalf("balance before KYC: %d %s", r.status, r.body)
	}
	p.c.json("PUT", "/secure/customers/"+cust.ID+"/kyc", map[string]string{"status": "VERIFIED"}, 200, &cust)
	if r := app.do("POST", "/customers/me/register", nil); r.status != 409 || r.code() != "KYC_ALREADY_VERIFIED" {
		t.Errorf("register when verified: %d %s", r.status, r.body)
	}

	var bal balanceJSON
	app.json("POST", "/customers/me/balances", map[string]string{"currency": "EUR"}, 201, &bal)
	p.c.json("POST", "/secure/customers/"+cust.ID+"/balances/"+bal.ID+"/reload", map[string]any{"amount": 5000, "currency": "EUR"}, 200, &bal)
	if bal.Available != 5000 {
		t.Fatalf("available after reload = %d, want 5000", bal.Available)
	}

	// Virtual card: JWE response with the full data.
	var full fullDataJSON
	before := time.Now().UTC()
	app.encryptedJSON("POST", "/customers/me/cards/virtual", map[string]string{"balanceId": bal.ID}, 201, &full)
	if !regexp.MustCompile(`^41234567\d{8}$`).MatchString(full.CardNo) || len(full.CVV) != 3 || full.Type != "VIRTUAL" {
		t.Fatalf("full data = %+v", full)
	}
	// Three years on, the last day of the issue month (read the clock on
	// both sides of the call: a month may end in between).
	now := time.Now().UTC()
	lastDay := func(t time.Time) string {
		return time.Date(t.Year()+3, t.Month()+1, 0, 0, 0, 0, 0, time.UTC).Format("2006-01-02")
	}
	if wantExp := lastDay(now); full.Exp != wantExp && full.Exp != lastDay(before) {
		t.Errorf("exp = %s, want %s (last day of the month)", full.Exp, wantExp)
	}
	// The same data again, through both channels allowed to see it.
	var again fullDataJSON
	app.encryptedJSON("GET", "/customers/me/cards/"+full.ID, nil, 200, &again)
	if again != full {
		t.Errorf("GET full data = %+v, want %+v", again, full)
	}
	p.c.encryptedJSON("GET", "/secure/customers/"+cust.ID+"/cards/"+full.ID, nil, 200, &again)
	if again != full {
		t.Errorf("GET full data (secure) = %+v, want %+v", again, full)
	}
	// The balance lists the card, without card data.
	r := app.json("GET", "/customers/me/balances/"+bal.ID, nil, 200, &bal)
	if len(bal.Cards) != 1 || bal.Cards[0].ID != full.ID || bal.Cards[0].Last4 != full.CardNo[12:] || bal.Cards[0].Status != "ACTIVE" {
		t.Errorf("balance cards = %+v", bal.Cards)
	}
	if contains(r.body, full.CardNo) {
		t.Error("balance view carries the PAN")
	}

	// Lock rules: reversible 3 unlocks; irreversible 2 does not.
	var card cardJSON
	app.json("POST", "/customers/me/cards/"+full.ID+"/lock", map[string]int{"reason": 3}, 200, &card)
	if card.LockReason != 3 {
		t.Fatalf("lockReason = %d, want 3", card.LockReason)
	}
	app.json("POST", "/customers/me/cards/"+full.ID+"/unlock", nil, 200, &card)
	if card.LockReason != 0 {
		t.Fatalf("lockReason after unlock = %d", card.LockReason)
	}
	if r := app.do("POST", "/customers/me/cards/"+full.ID+"/unlock", nil); r.status != 409 || r.code() != "CARD_NOT_LOCKED" {
		t.Errorf("unlock of an unlocked card: %d %s", r.status, r.body)
	}
	for _, reason := range []int{1, 2, 5, 8} {
		// Each irreversible reason on a fresh card.
		var f fullDataJSON
		p.c.encryptedJSON("POST", "/secure/customers/"+cust.ID+"/cards/virtual", map[string]string{"balanceId": bal.ID}, 201, &f)
		p.c.json("POST", "/secure/customers/"+cust.ID+"/cards/"+f.ID+"/lock", map[string]int{"reason": reason}, 200, &card)
		if r := app.do("POST", "/customers/me/cards/"+f.ID+"/unlock", nil); r.status != 409 || r.code() != "CARD_LOCK_IRREVERSIBLE" {
			t.Errorf("unlock after reason %d: %d %s", reason, r.status, r.body)
		}
		if r := app.do("POST", "/customers/me/cards/"+f.ID+"/lock", map[string]int{"reason": 3}); r.status != 409 || r.code() != "CARD_LOCK_IRREVERSIBLE" {
			t.Errorf("re-lock after reason %d: %d %s", reason, r.status, r.body)
		}
		c, _ := e.ledger.Card(context.Background(), "acme", f.ID)
		if c.LockReason != reason {
			t.Errorf("stored lock reason = %d, want %d", c.LockReason, reason)
		}
	}

	// Remove: for good.
	if r := app.do("DELETE", "/customers/me/cards/"+full.ID, nil); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	for _, r := range []resp{
		app.do("DELETE", "/customers/me/cards/"+full.ID, nil),
		app.do("POST", "/customers/me/cards/"+full.ID+"/lock", map[string]int{"reason": 3}),
	} {
		if r.status != 409 || r.code() != "CARD_REMOVED" {
			t.Errorf("on a removed card: %d %s", r.status, r.body)
		}
	}
	if r, _ := app.encrypted("GET", "/customers/me/cards/"+full.ID, nil); r.status != 409 || r.code() != "CARD_REMOVED" {
		t.Errorf("full data of a removed card: %d %s", r.status, r.body)
	}
	app.json("GET", "/customers/me/cards/"+full.ID+"/status", nil, 200, &card)
	if card.Status != "REMOVED" {
		t.Errorf("status = %s, want REMOVED", card.Status)
	}

	// The logs carry none of the secrets that went by.
	logs := e.logs.String()
	if !strings.Contains(logs, "request refused") {
		t.Fatalf("no log lines captured: %q", logs)
	}
	// The test logger writes JSON, where every string value is quoted: a
	// CVV2 would show as "123", or as \"123\" inside a logged body.
	for name, secrets := range map[string][]string{"PAN": {full.CardNo}, "CVV2": {`"` + full.CVV + `"`, `\"` + full.CVV + `\"`},
		"session token": {app.bearer}, "admin token": {e.root.bearer}, "admin password": {rootPassword}} {
		for _, secret := range secrets {
			if strings.Contains(logs, secret) {
				t.Errorf("the logs carry the %s", name)
			}
		}
	}
}

// TestPhysicalCardFlow: order (JWE) -> bureau lists it -> personalised and
// linked -> activate -> set PIN (JWE request).
func TestPhysicalCardFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	app := p.session(t, cid)
	bureau := e.newAdmin("bureau", "Bureau")
	address := map[string]string{"name": "Ada Lovelace", "line1": "1 Main St", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}

	var card cardJSON
	app.encryptedJSON("POST", "/customers/me/cards/physical", map[string]any{"balanceId": bid, "deliveryAddress": address}, 201, &card)
	if card.Type != "PHYSICAL" || card.Status != "ORDERED" {
		t.Fatalf("ordered card = %+v", card)
	}
	if r := app.do("POST", "/customers/me/cards/"+card.ID+"/activate", nil); r.status != 409 || r.code() != "INVALID_CARD_STATE" {
		t.Errorf("activate before the bureau: %d %s", r.status, r.body)
	}

	var orders struct {
		Orders []struct {
			cardJSON
			PartnerID       string            `json:"partnerId"`
			DeliveryAddress map[string]string `json:"deliveryAddress"`
		} `json:"orders"`
	}
	bureau.json("GET", "/admin/bureau/orders", nil, 200, &orders)
	if len(orders.Orders) != 1 || orders.Orders[0].ID != card.ID || orders.Orders[0].PartnerID != "acme" || orders.Orders[0].DeliveryAddress["city"] != "Warsaw" {
		t.Fatalf("bureau orders = %+v", orders)
	}
	// The queue is lost (Redis restarted without persistence); the order
	// is in Postgres, and the bureau still sees it.
	e.flushJournal()
	ctx := context.Background()
	if n, err := e.rdb.Del(ctx, e.apiKeys+":bureau:orders").Result(); err != nil || n != 1 {
		t.Fatalf("deleting the bureau queue: %d, %v", n, err)
	}
	bureau.json("GET", "/admin/bureau/orders", nil, 200, &orders)
	if len(orders.Orders) != 1 || orders.Orders[0].ID != card.ID || orders.Orders[0].DeliveryAddress["city"] != "Warsaw" {
		t.Fatalf("bureau orders after losing the queue = %+v", orders)
	}
	// The bureau may do nothing else.
	if r := bureau.do("GET", "/admin/balances/"+bid, nil); r.status != 403 || r.code() != "FORBIDDEN" {
		t.Errorf("bureau reading a balance: %d %s", r.status, r.body)
	}
	bureau.json("POST", "/admin/bureau/cards/"+card.ID+"/personalised", nil, 200, &card)
	if card.Status != "LINKED" {
		t.Fatalf("after the bureau: status %s, want LINKED", card.Status)
	}
	if r := bureau.do("POST", "/admin/bureau/cards/"+card.ID+"/personalised", nil); r.status != 409 || r.code() != "INVALID_CARD_STATE" {
		t.Errorf("personalised twice: %d %s", r.status, r.body)
	}
	bureau.json("GET", "/admin/bureau/orders", nil, 200, &orders)
	if len(orders.Orders) != 0 {
		t.Errorf("orders after personalisation = %+v", orders.Orders)
	}

	app.json("POST", "/customers/me/cards/"+card.ID+"/activate", nil, 200, &card)
	if card.Status != "ACTIVE" {
		t.Fatalf("status after activation = %s", card.Status)
	}
	if r, _ := app.encrypted("POST", "/customers/me/cards/"+card.ID+"/pin", map[string]string{"pin": "4821"}); r.status != 204 || len(r.body) != 0 {
		t.Fatalf("set PIN: %d %s", r.status, r.body)
	}
	app.json("GET", "/customers/me/cards/"+card.ID+"/status", nil, 200, &card)
	if !card.PINSet {
		t.Error("pinSet false after setting the PIN")
	}
	row, err := e.ledger.Card(context.Background(), "acme", card.ID)
	if err != nil {
		t.Fatal(err)
	}
	var full fullDataJSON
	app.encryptedJSON("GET", "/customers/me/cards/"+card.ID, nil, 200, &full)
	if !e.keys.VerifyPIN(full.CardNo, "4821", row.PINVerifier) || e.keys.VerifyPIN(full.CardNo, "4822", row.PINVerifier) {
		t.Error("stored PIN verifier does not verify the PIN set")
	}
	// CVV reset is for virtual and digital-first cards only.
	if r, _ := app.encrypted("POST", "/customers/me/cards/"+card.ID+"/cvv", nil); r.status != 409 || r.code() != "WRONG_CARD_TYPE" {
		t.Errorf("CVV reset of a physical card: %d %s", r.status, r.body)
	}
}

// TestDigitalFirstPrint: a printed copy of a virtual card is active at once
// (no activation), shares the PAN and the lock, takes a PIN.
func TestDigitalFirstPrint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	app := p.session(t, cid)

	var virt fullDataJSON
	app.encryptedJSON("POST", "/customers/me/cards/virtual", map[string]string{"balanceId": bid}, 201, &virt)
	var cp cardJSON
	app.encryptedJSON("POST", "/customers/me/cards/"+virt.ID+"/print", nil, 201, &cp)
	if cp.Type != "DIGITAL_FIRST" || cp.Status != "ACTIVE" || cp.CopyOf != virt.ID || cp.BalanceID != bid {
		t.Fatalf("printed card = %+v", cp)
	}
	if r := app.do("POST", "/customers/me/cards/"+cp.ID+"/activate", nil); r.status != 409 || r.code() != "WRONG_CARD_TYPE" {
		t.Errorf("activating a digital-first card: %d %s", r.status, r.body)
	}
	var full fullDataJSON
	app.encryptedJSON("GET", "/customers/me/cards/"+cp.ID, nil, 200, &full)
	if full.CardNo != virt.CardNo || full.CVV != virt.CVV {
		t.Errorf("copy's data %+v differs from the virtual card's %+v", full, virt)
	}
	// Printing with a delivery address through the partner, and the PIN.
	var cp2 cardJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cid+"/cards/"+virt.ID+"/print",
		map[string]any{"deliveryAddress": map[string]string{"line1": "2 Side St", "city": "Gdansk", "postalCode": "80-001", "country": "PL"}}, 201, &cp2)
	if r, _ := app.encrypted("POST", "/customers/me/cards/"+cp.ID+"/pin", map[string]string{"pin": "1234"}); r.status != 204 {
		t.Errorf("PIN on a digital-first card: %d %s", r.status, r.body)
	}
	if r, _ := app.encrypted("POST", "/customers/me/cards/"+virt.ID+"/pin", map[string]string{"pin": "1234"}); r.status != 409 || r.code() != "WRONG_CARD_TYPE" {
		t.Errorf("PIN on a virtual card: %d %s", r.status, r.body)
	}
	// A lock on the copy is the virtual card's lock.
	app.json("POST", "/customers/me/cards/"+cp.ID+"/lock", map[string]int{"reason": 7}, 200, nil)
	var v cardJSON
	app.json("GET", "/customers/me/cards/"+virt.ID+"/status", nil, 200, &v)
	if v.LockReason != 7 {
		t.Errorf("virtual card lock = %d after locking its copy, want 7", v.LockReason)
	}
	// Only virtual cards print.
	if r, _ := app.encrypted("POST", "/customers/me/cards/"+cp.ID+"/print", nil); r.status != 409 || r.code() != "WRONG_CARD_TYPE" {
		t.Errorf("printing a digital-first card: %d %s", r.status, r.body)
	}
	// A removed copy changes nothing of the virtual card any more.
	app.json("DELETE", "/customers/me/cards/"+cp2.ID, nil, 204, nil)
	if r, _ := app.encrypted("POST", "/customers/me/cards/"+cp2.ID+"/cvv", nil); r.status != 409 || r.code() != "CARD_REMOVED" {
		t.Errorf("CVV reset through a removed copy: %d %s", r.status, r.body)
	}
	if r, _ := app.encrypted("POST", "/customers/me/cards/"+cp2.ID+"/pin", map[string]string{"pin": "9999"}); r.status != 409 || r.code() != "CARD_REMOVED" {
		t.Errorf("PIN through a removed copy: %d %s", r.status, r.body)
	}
	if ok, _ := e.issuing.VerifyCVV(context.Background(), "acme", virt.ID, virt.CVV); !ok {
		t.Error("the virtual card's CVV2 changed")
	}
	orig, _ := e.ledger.Card(context.Background(), "acme", virt.ID)
	if !e.keys.VerifyPIN(virt.CardNo, "1234", orig.PINVerifier) {
		t.Error("the virtual card's PIN changed")
	}
	// Removing the virtual card removes the remaining copy.
	app.json("DELETE", "/customers/me/cards/"+virt.ID, nil, 204, nil)
	var gone cardJSON
	app.json("GET", "/customers/me/cards/"+cp.ID+"/status", nil, 200, &gone)
	if gone.Status != "REMOVED" {
		t.Errorf("copy after removing the virtual card: %s", gone.Status)
	}
}

// TestResetCVV: the customer's and the admin's reset change the CVV2 (the
// old one fails, the new passes); the admin never sees it.
func TestResetCVV(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	app := p.session(t, cid)
	var card fullDataJSON
	app.encryptedJSON("POST", "/customers/me/cards/virtual", map[string]string{"balanceId": bid}, 201, &card)

	var reset fullDataJSON
	app.encryptedJSON("POST", "/customers/me/cards/"+card.ID+"/cvv", nil, 200, &reset)
	if reset.CardNo != card.CardNo || reset.ID != card.ID {
		t.Fatalf("reset answered another card: %+v", reset)
	}
	check := func(cvv string, want bool) {
		t.Helper()
		ok, err := e.issuing.VerifyCVV(ctx, "acme", card.ID, cvv)
		if err != nil || ok != want {
			t.Errorf("VerifyCVV(%s) = %v, %v; want %v", cvv, ok, err, want)
		}
	}
	if reset.CVV == card.CVV {
		t.Fatalf("the reset kept CVV2 %s", card.CVV)
	}
	check(card.CVV, false)
	check(reset.CVV, true)

	employee := e.newAdmin("emp", "Employee")
	r, plain := employee.encrypted("POST", "/admin/cards/"+card.ID+"/cvv", nil)
	if r.status != 200 {
		t.Fatalf("admin CVV reset: %d %s", r.status, r.body)
	}
	var after fullDataJSON
	app.encryptedJSON("GET", "/customers/me/cards/"+card.ID, nil, 200, &after)
	// A 3-digit CVV2 can occur inside ids or the expiry by chance, so
	// look for it as a JSON string value and for the field names.
	for _, b := range [][]byte{plain, r.body} {
		for _, secret := range []string{`"` + after.CVV + `"`, after.CardNo, `"cvv"`, `"cardNo"`} {
			if contains(b, secret) {
				t.Errorf("admin CVV reset shows card data: %s", b)
			}
		}
	}
	if after.CVV == reset.CVV {
		t.Fatal("the admin reset kept the CVV2")
	}
	check(reset.CVV, false)
	check(after.CVV, true)
}

// TestAsyncVirtualCard: 202 with the id, then the card appears under it.
func TestAsyncVirtualCard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	app := p.session(t, cid)

	var acc struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	app.json("POST", "/customers/me/cards/virtual/async", map[string]string{"balanceId": bid}, 202, &acc)
	if acc.ID == "" || acc.Status != "PENDING" {
		t.Fatalf("async answer = %+v", acc)
	}
	deadline := time.Now().Add(10 * time.Second)
	var card cardJSON
	for {
		app.json("GET", "/customers/me/cards/"+acc.ID+"/status", nil, 200, &card)
		if card.Status == "ACTIVE" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if card.Status != "ACTIVE" || card.Type != "VIRTUAL" || card.ID != acc.ID {
		t.Fatalf("async card = %+v", card)
	}
	var full fullDataJSON
	app.encryptedJSON("GET", "/customers/me/cards/"+acc.ID, nil, 200, &full)
	if full.ID != acc.ID || len(full.CVV) != 3 {
		t.Errorf("async card full data = %+v", full)
	}
	var bal balanceJSON
	p.c.json("GET", "/secure/customers/"+cid+"/balances/"+bid, nil, 200, &bal)
	if len(bal.Cards) != 1 || bal.Cards[0].ID != acc.ID {
		t.Errorf("balance cards = %+v", bal.Cards)
	}
	// Checked up front: an unknown balance is refused synchronously.
	if r := p.c.do("POST", "/secure/customers/"+cid+"/cards/virtual/async", map[string]string{"balanceId": "bal_nope"}); r.status != 404 || r.code() != "BALANCE_NOT_FOUND" {
		t.Errorf("async with unknown balance: %d %s", r.status, r.body)
	}
}

// TestPublicEndpoints: the document, the JWE key in both forms, and the
// request metrics by route pattern.
func TestPublicEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	anon := e.newClient(nil, nil)
	r := anon.do("GET", "/openapi.yaml", nil)
	if r.status != 200 || string(r.body) != string(api.OpenAPI()) || r.header.Get("Content-Type") != "application/yaml" {
		t.Errorf("GET /openapi.yaml: %d %s, %d bytes", r.status, r.header.Get("Content-Type"), len(r.body))
	}
	r = anon.do("GET", "/public-key", nil)
	pub, err := jwe.ParsePublicKeyPEM(r.body)
	if r.status != 200 || err != nil || !pub.Equal(&e.keys.JWEPrivateKey().PublicKey) {
		t.Errorf("GET /public-key: %d %v", r.status, err)
	}
	var set jose.JSONWebKeySet
	anon.json("GET", "/.well-known/jwks.json", nil, 200, &set)
	if len(set.Keys) != 1 || set.Keys[0].KeyID != e.keys.JWEKeyID() || set.Keys[0].Use != "enc" {
		t.Fatalf("JWKS = %+v", set)
	}
	if k, ok := set.Keys[0].Key.(*rsa.PublicKey); !ok || !k.Equal(&e.keys.JWEPrivateKey().PublicKey) {
		t.Errorf("JWKS key is not the server's JWE key")
	}
	if got := e.metric("antaca_http_requests_total", map[string]string{"route": "GET /public-key", "code": "200"}); got != 1 {
		t.Errorf("requests counted for GET /public-key: %v, want 1", got)
	}
	if got := e.metric("antaca_http_request_seconds", map[string]string{"route": "POST /admin/login"}); got < 1 {
		t.Errorf("latency samples for POST /admin/login: %v", got)
	}
}
