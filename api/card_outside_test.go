package api_test

import (
	"context"
	"testing"
)

// cardStateJSON is a card view with the fields of plastics, locks from
// outside and replacements.
type cardStateJSON struct {
	cardJSON
	DeliveryState string `json:"deliveryState"`
	LockSource    string `json:"lockSource"`
	LockReference string `json:"lockReference"`
	Replaces      string `json:"replaces"`
	ReplacedBy    string `json:"replacedBy"`
}

type bureauOrdersJSON struct {
	Orders []struct {
		cardStateJSON
		PartnerID string `json:"partnerId"`
		Blank     bool   `json:"blank"`
	} `json:"orders"`
}

var testAddress = map[string]string{"line1": "1 Main St", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}

// TestDigitalFirstGoesToTheBureau: print is refused outside a digital-first
// program; inside one the copy is usable at once, queued for the bureau as
// a blank plastic (also after the queue is lost), and PRODUCED after the
// bureau's report.
func TestDigitalFirstGoesToTheBureau(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	bureau := e.newAdmin("bureau", "Bureau")

	// A program without the flag.
	e.root.json("POST", "/admin/partners", map[string]any{"id": "plain", "name": "Plain", "bin": "422222", "currency": "EUR", "fundingModel": "CREDIT"}, 201, nil)
	var pv struct {
		DigitalFirst bool `json:"digitalFirst"`
	}
	e.root.json("GET", "/admin/partners/plain", nil, 200, &pv)
	if pv.DigitalFirst {
		t.Fatal("a partner created without digitalFirst has it")
	}
	var pb partnerBalanceJSON
	e.root.json("POST", "/admin/partners/plain/balances", map[string]any{"type": "CREDIT", "currency": "EUR"}, 201, &pb)
	plain := &program{id: "plain", bin: "422222", pbal: pb.ID, c: e.partnerClient("plain")}
	pcid, pbid := plain.verifiedCustomer(t, "bob")
	var pvirt fullDataJSON
	plain.c.encryptedJSON("POST", "/secure/customers/"+pcid+"/cards/virtual", map[string]string{"balanceId": pbid}, 201, &pvirt)
	if r, _ := plain.c.encrypted("POST", "/secure/customers/"+pcid+"/cards/"+pvirt.ID+"/print", nil); r.status != 409 || r.code() != "NOT_DIGITAL_FIRST" {
		t.Fatalf("print outside digital first: %d %s", r.status, r.body)
	}
	if cards := e.cardIDs("plain", pbid); len(cards) != 1 {
		t.Fatalf("a refused print left cards %v", cards)
	}

	// A digital-first program.
	p := e.newProgram("acme", "412345", "CREDIT", 0)
	e.root.json("GET", "/admin/partners/acme", nil, 200, &pv)
	if !pv.DigitalFirst {
		t.Fatal("digitalFirst not shown on the partner")
	}
	cid, bid := p.verifiedCustomer(t, "ada")
	app := p.session(t, cid)
	var virt fullDataJSON
	app.encryptedJSON("POST", "/customers/me/cards/virtual", map[string]string{"balanceId": bid}, 201, &virt)
	var cp cardStateJSON
	app.encryptedJSON("POST", "/customers/me/cards/"+virt.ID+"/print", map[string]any{"deliveryAddress": testAddress}, 201, &cp)
	if cp.Type != "DIGITAL_FIRST" || cp.Status != "ACTIVE" || cp.DeliveryState != "ORDERED" {
		t.Fatalf("copy = %+v: want ACTIVE (no activation) and ORDERED", cp)
	}
	var orders bureauOrdersJSON
	bureau.json("GET", "/admin/bureau/orders", nil, 200, &orders)
	if len(orders.Orders) != 1 || orders.Orders[0].ID != cp.ID || !orders.Orders[0].Blank || orders.Orders[0].PartnerID != "acme" {
		t.Fatalf("bureau orders = %+v, want the copy as a blank plastic", orders)
	}
	// Lost queue: Postgres still knows the copy waits.
	e.flushJournal()
	if n, err := e.rdb.Del(ctx, e.apiKeys+":bureau:orders").Result(); err != nil || n != 1 {
		t.Fatalf("deleting the bureau queue: %d, %v", n, err)
	}
	bureau.json("GET", "/admin/bureau/orders", nil, 200, &orders)
	if len(orders.Orders) != 1 || orders.Orders[0].ID != cp.ID || !orders.Orders[0].Blank {
		t.Fatalf("bureau orders after losing the queue = %+v", orders)
	}
	// The bureau's report: PRODUCED, still ACTIVE; no longer listed.
	bureau.json("POST", "/admin/bureau/cards/"+cp.ID+"/personalised", nil, 200, &cp)
	if cp.DeliveryState != "PRODUCED" || cp.Status != "ACTIVE" {
		t.Fatalf("after the bureau: %+v", cp)
	}
	bureau.json("POST", "/admin/bureau/cards/"+cp.ID+"/personalised", nil, 200, &cp)
	bureau.json("GET", "/admin/bureau/orders", nil, 200, &orders)
	if len(orders.Orders) != 0 {
		t.Fatalf("orders after the report = %+v", orders)
	}
	e.flushJournal()
	bureau.json("GET", "/admin/bureau/orders", nil, 200, &orders)
	if len(orders.Orders) != 0 {
		t.Fatalf("a produced copy came back from Postgres: %+v", orders)
	}
	// Shared state: a lock through the virtual card shows on the copy.
	app.json("POST", "/customers/me/cards/"+virt.ID+"/lock", map[string]int{"reason": 3}, 200, nil)
	app.json("GET", "/customers/me/cards/"+cp.ID+"/status", nil, 200, &cp)
	if cp.LockReason != 3 || cp.LockSource != "CUSTOMER" {
		t.Fatalf("copy after locking its virtual card: %+v", cp)
	}
}

// TestExternalLock: partners and admins lock on behalf of a network or an
// acquirer; the source and reference are recorded; bad requests change
// nothing.
func TestExternalLock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "CREDIT", 0)
	other := e.newProgram("other", "433333", "CREDIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	var virt fullDataJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": bid}, 201, &virt)
	path := "/secure/customers/" + cid + "/cards/" + virt.ID + "/external-lock"

	for _, tc := range []struct {
		name string
		body any
		code string
	}{
		{"no reason", map[string]any{"source": "NETWORK", "reference": "r"}, "INVALID_LOCK_REASON"},
		{"reason 9", map[string]any{"reason": 9, "source": "NETWORK", "reference": "r"}, "INVALID_LOCK_REASON"},
		{"unknown source", map[string]any{"reason": 7, "source": "CUSTOMER", "reference": "r"}, "VALIDATION_ERROR"},
		{"no reference", map[string]any{"reason": 7, "source": "NETWORK"}, "VALIDATION_ERROR"},
		{"long reference", map[string]any{"reason": 7, "source": "NETWORK", "reference": string(make([]byte, 65))}, ""},
	} {
		r := p.c.do("POST", path, tc.body, invalidRequest)
		if r.status != 400 || tc.code != "" && r.code() != tc.code {
			t.Errorf("%s: %d %s, want 400 %s", tc.name, r.status, r.body, tc.code)
		}
	}
	var c cardStateJSON
	p.c.json("GET", "/secure/customers/"+cid+"/cards/"+virt.ID+"/status", nil, 200, &c)
	if c.LockReason != 0 {
		t.Fatalf("refused requests locked the card: %+v", c)
	}
	// Another partner does not see the card.
	if r := other.c.do("POST", path, map[string]any{"reason": 7, "source": "NETWORK", "reference": "x"}); r.status != 404 {
		t.Errorf("other partner: %d %s", r.status, r.body)
	}

	p.c.json("POST", path, map[string]any{"reason": 7, "source": "ACQUIRER", "reference": "ACQ-2026-0001"}, 200, &c)
	if c.LockReason != 7 || c.LockSource != "ACQUIRER" || c.LockReference != "ACQ-2026-0001" {
		t.Fatalf("after the external lock: %+v", c)
	}
	row, err := e.ledger.Card(context.Background(), "acme", virt.ID)
	must(t, err)
	if row.LockSource != "ACQUIRER" || row.LockRef != "ACQ-2026-0001" {
		t.Fatalf("stored lock_source %q lock_ref %q", row.LockSource, row.LockRef)
	}
	// The admin channel, for a network's request; an irreversible reason.
	employee := e.newAdmin("emp", "Employee")
	employee.json("POST", "/admin/cards/"+virt.ID+"/external-lock", map[string]any{"reason": 2, "source": "NETWORK", "reference": "MC-778899"}, 200, &c)
	if c.LockReason != 2 || c.LockSource != "NETWORK" || c.LockReference != "MC-778899" {
		t.Fatalf("after the network's lock: %+v", c)
	}
	if r := p.c.do("POST", "/secure/customers/"+cid+"/cards/"+virt.ID+"/unlock", nil); r.status != 409 || r.code() != "CARD_LOCK_IRREVERSIBLE" {
		t.Errorf("unlock of a stolen card: %d %s", r.status, r.body)
	}
	if r := employee.do("POST", "/admin/cards/"+virt.ID+"/external-lock", map[string]any{"reason": 3, "source": "NETWORK", "reference": "x"}); r.status != 409 || r.code() != "CARD_LOCK_IRREVERSIBLE" {
		t.Errorf("a lock over an irreversible one: %d %s", r.status, r.body)
	}
}

type replacementJSON struct {
	Card     cardStateJSON `json:"card"`
	Replaced cardStateJSON `json:"replaced"`
	CardData *fullDataJSON `json:"cardData"`
}

// TestReplaceCard on the three channels: a virtual card is replaced at once
// (the old one locked 8, the new data in the answer), a physical card
// through the bureau, keeping the old one until the activation when asked.
func TestReplaceCard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "CREDIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")
	app := p.session(t, cid)
	bureau := e.newAdmin("bureau", "Bureau")
	employee := e.newAdmin("emp", "Employee")

	// Customer, virtual.
	var virt fullDataJSON
	app.encryptedJSON("POST", "/customers/me/cards/virtual", map[string]string{"balanceId": bid}, 201, &virt)
	var r1 replacementJSON
	app.encryptedJSON("POST", "/customers/me/cards/"+virt.ID+"/replace", nil, 201, &r1)
	if r1.Card.Type != "VIRTUAL" || r1.Card.Status != "ACTIVE" || r1.Card.BalanceID != bid || r1.Card.Replaces != virt.ID {
		t.Fatalf("new card %+v", r1.Card)
	}
	if r1.CardData == nil || r1.CardData.ID != r1.Card.ID || r1.CardData.CardNo == virt.CardNo || r1.CardData.CardNo[len(r1.CardData.CardNo)-4:] != r1.Card.Last4 {
		t.Fatalf("new card data %+v", r1.CardData)
	}
	if r1.Replaced.ID != virt.ID || r1.Replaced.LockReason != 8 || r1.Replaced.LockSource != "CUSTOMER" || r1.Replaced.ReplacedBy != r1.Card.ID {
		t.Fatalf("old card %+v", r1.Replaced)
	}
	if r, _ := app.encrypted("POST", "/customers/me/cards/"+virt.ID+"/replace", nil); r.status != 409 || r.code() != "CARD_ALREADY_REPLACED" {
		t.Errorf("replacing twice: %d %s", r.status, r.body)
	}
	if r := app.do("POST", "/customers/me/cards/"+virt.ID+"/unlock", nil); r.status != 409 || r.code() != "CARD_LOCK_IRREVERSIBLE" {
		t.Errorf("unlocking a replaced card: %d %s", r.status, r.body)
	}
	// The replacement's full data over the ordinary route matches.
	var again fullDataJSON
	app.encryptedJSON("GET", "/customers/me/cards/"+r1.Card.ID, nil, 200, &again)
	if again.CardNo != r1.CardData.CardNo || again.CVV != r1.CardData.CVV {
		t.Error("the replacement's data differs from what the replace answer gave")
	}
	// Copies are not replaced.
	var cp cardJSON
	app.encryptedJSON("POST", "/customers/me/cards/"+r1.Card.ID+"/print", nil, 201, &cp)
	if r, _ := app.encrypted("POST", "/customers/me/cards/"+cp.ID+"/replace", nil); r.status != 409 || r.code() != "WRONG_CARD_TYPE" {
		t.Errorf("replacing a digital-first copy: %d %s", r.status, r.body)
	}

	// Admin: an Employee may not replace a virtual card (creating one is
	// for Admin and Manager) and nothing changes; a Manager may.
	before := e.cardIDs("acme", bid)
	if r, _ := employee.encrypted("POST", "/admin/cards/"+r1.Card.ID+"/replace", nil); r.status != 403 || r.code() != "FORBIDDEN" {
		t.Fatalf("employee replacing a virtual card: %d %s", r.status, r.body)
	}
	if after := e.cardIDs("acme", bid); len(after) != len(before) {
		t.Fatalf("a refused replacement created cards: %v -> %v", before, after)
	}
	var st cardStateJSON
	app.json("GET", "/customers/me/cards/"+r1.Card.ID+"/status", nil, 200, &st)
	if st.LockReason != 0 || st.ReplacedBy != "" {
		t.Fatalf("a refused replacement changed the card: %+v", st)
	}
	var ra replacementJSON
	e.root.encryptedJSON("POST", "/admin/cards/"+r1.Card.ID+"/replace", nil, 201, &ra)
	if ra.CardData != nil || ra.Replaced.LockSource != "ADMIN" || ra.Replaced.LockReason != 8 {
		t.Fatalf("admin replacement %+v: want no card data, old locked 8 by ADMIN", ra)
	}

	// Partner, physical, keeping the old card until the activation.
	var phys cardJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cid+"/cards/physical", map[string]any{"balanceId": bid, "deliveryAddress": testAddress}, 201, &phys)
	bureau.json("POST", "/admin/bureau/cards/"+phys.ID+"/personalised", nil, 200, nil)
	p.c.json("POST", "/secure/customers/"+cid+"/cards/"+phys.ID+"/activate", nil, 200, nil)
	var r2 replacementJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cid+"/cards/"+phys.ID+"/replace", map[string]any{"keep_old_until_activated": true}, 201, &r2)
	if r2.Card.Type != "PHYSICAL" || r2.Card.Status != "ORDERED" || r2.Card.DeliveryState != "ORDERED" || r2.CardData != nil {
		t.Fatalf("physical replacement %+v", r2)
	}
	if r2.Replaced.LockReason != 0 || r2.Replaced.Status != "ACTIVE" || r2.Replaced.ReplacedBy != r2.Card.ID {
		t.Fatalf("old plastic %+v: want still working", r2.Replaced)
	}
	var orders bureauOrdersJSON
	bureau.json("GET", "/admin/bureau/orders", nil, 200, &orders)
	queued := false
	for _, o := range orders.Orders {
		queued = queued || o.ID == r2.Card.ID && !o.Blank && o.Replaces == phys.ID
	}
	if !queued {
		t.Fatalf("bureau orders = %+v, want the replacement plastic", orders)
	}
	bureau.json("POST", "/admin/bureau/cards/"+r2.Card.ID+"/personalised", nil, 200, nil)
	app.json("GET", "/customers/me/cards/"+phys.ID+"/status", nil, 200, &st)
	if st.LockReason != 0 {
		t.Fatalf("old plastic locked before the activation: %+v", st)
	}
	app.json("POST", "/customers/me/cards/"+r2.Card.ID+"/activate", nil, 200, nil)
	app.json("GET", "/customers/me/cards/"+phys.ID+"/status", nil, 200, &st)
	if st.LockReason != 8 || st.LockSource != "CUSTOMER" {
		t.Fatalf("old plastic after the activation: %+v, want locked 8", st)
	}

	// Admin Employee, physical, without keep_old: locked at once.
	var r3 replacementJSON
	employee.encryptedJSON("POST", "/admin/cards/"+r2.Card.ID+"/replace", map[string]any{"deliveryAddress": testAddress}, 201, &r3)
	if r3.Replaced.LockReason != 8 || r3.Replaced.LockSource != "ADMIN" || r3.Card.Status != "ORDERED" {
		t.Fatalf("employee's physical replacement %+v", r3)
	}
}
