package api_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/ledger"
)

// TestPartnerChannelLifecycle runs the card and customer operations over
// the partner channel (/secure, mutual TLS) that the mobile-app flows
// exercise over /customers/me: registration and KYC, async and physical
// cards, activation, lock and unlock, removal.
func TestPartnerChannelLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "DEPOSIT", 50_000)

	var cust struct {
		customerJSON
		ExternalID string `json:"externalId"`
		FirstName  string `json:"firstName"`
	}
	p.c.json("POST", "/secure/customers", map[string]string{"externalId": "ext-bo", "firstName": "Bo", "lastName": "Tester", "email": "bo@example.com", "phone": "+48123456789"}, 201, &cust)
	p.c.json("POST", "/secure/customers/"+cust.ID+"/register", nil, 202, &cust)
	if cust.KYCStatus != "PENDING" {
		t.Fatalf("after register: KYC %s, want PENDING", cust.KYCStatus)
	}
	if r := p.c.do("POST", "/secure/customers/"+cust.ID+"/balances", map[string]string{"currency": "EUR"}); r.status != 409 || r.code() != "KYC_NOT_VERIFIED" {
		t.Fatalf("balance before KYC: %d %s", r.status, r.body)
	}
	p.c.json("PUT", "/secure/customers/"+cust.ID+"/kyc", map[string]string{"status": "VERIFIED"}, 200, nil)
	p.c.json("GET", "/secure/customers/"+cust.ID, nil, 200, &cust)
	if cust.KYCStatus != "VERIFIED" || cust.PartnerID != "acme" || cust.ExternalID != "ext-bo" || cust.FirstName != "Bo" {
		t.Fatalf("customer = %+v", cust)
	}
	var bal balanceJSON
	p.c.json("POST", "/secure/customers/"+cust.ID+"/balances", map[string]string{"currency": "EUR"}, 201, &bal)
	base := "/secure/customers/" + cust.ID + "/cards/"

	// Async virtual card: 202, then the status turns ACTIVE.
	var acc struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	p.c.json("POST", base+"virtual/async", map[string]string{"balanceId": bal.ID}, 202, &acc)
	var virt cardJSON
	for deadline := time.Now().Add(10 * time.Second); ; {
		p.c.json("GET", base+acc.ID+"/status", nil, 200, &virt)
		if virt.Status == "ACTIVE" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if virt.ID != acc.ID || virt.Status != "ACTIVE" || virt.Type != "VIRTUAL" {
		t.Fatalf("async card = %+v", virt)
	}

	// Physical card: ordered, personalised by the bureau, activated.
	var phys cardJSON
	p.c.encryptedJSON("POST", base+"physical", map[string]any{"balanceId": bal.ID,
		"deliveryAddress": map[string]string{"line1": "1 Main St", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}}, 201, &phys)
	if phys.Type != "PHYSICAL" || phys.Status != "ORDERED" {
		t.Fatalf("ordered card = %+v", phys)
	}
	e.root.json("POST", "/admin/bureau/cards/"+phys.ID+"/personalised", nil, 200, nil)
	p.c.json("POST", base+phys.ID+"/activate", nil, 200, &phys)
	if phys.Status != "ACTIVE" {
		t.Fatalf("after activation: %+v", phys)
	}

	// Lock (reversible reason) and unlock.
	p.c.json("POST", base+virt.ID+"/lock", map[string]int{"reason": 4}, 200, &virt)
	if virt.LockReason != 4 {
		t.Fatalf("after lock: %+v", virt)
	}
	p.c.json("POST", base+virt.ID+"/unlock", nil, 200, &virt)
	if virt.LockReason != 0 || virt.Status != "ACTIVE" {
		t.Fatalf("after unlock: %+v", virt)
	}

	// Remove: the card stays readable as REMOVED and leaves nothing usable.
	p.c.json("DELETE", base+virt.ID, nil, 204, nil)
	p.c.json("GET", base+virt.ID+"/status", nil, 200, &virt)
	if virt.Status != "REMOVED" {
		t.Fatalf("after remove: %+v", virt)
	}
	if r := p.c.do("POST", base+virt.ID+"/unlock", nil); r.status/100 == 2 {
		t.Errorf("unlocking a removed card: %d %s", r.status, r.body)
	}
}

// TestListBalances: a customer's balances with their cards, oldest first,
// on all three channels, and only the customer's own.
func TestListBalances(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "DEPOSIT", 50_000)
	other := e.newProgram("other", "498765", "DEPOSIT", 0)
	cid, eur := p.verifiedCustomer(t, "ada")
	otherCid, _ := p.verifiedCustomer(t, "bob")
	var usd balanceJSON
	p.c.json("POST", "/secure/customers/"+cid+"/balances", map[string]string{"currency": "USD"}, 201, &usd)
	p.c.json("POST", "/secure/customers/"+cid+"/balances/"+eur+"/reload", map[string]int{"amount": 700}, 200, nil)
	app := p.session(t, cid)
	var card fullDataJSON
	app.encryptedJSON("POST", "/customers/me/cards/virtual", map[string]string{"balanceId": usd.ID}, 201, &card)

	type list struct {
		Balances []balanceJSON `json:"balances"`
	}
	check := func(channel string, l list) {
		t.Helper()
		if len(l.Balances) != 2 {
			t.Fatalf("%s: %d balances, want 2: %+v", channel, len(l.Balances), l)
		}
		a, b := l.Balances[0], l.Balances[1]
		if a.ID != eur || a.Currency != "EUR" || a.Available != 700 || len(a.Cards) != 0 {
			t.Errorf("%s: first balance %+v, want EUR %s with 700 and no card", channel, a, eur)
		}
		if b.ID != usd.ID || b.Currency != "USD" || len(b.Cards) != 1 || b.Cards[0].ID != card.ID {
			t.Errorf("%s: second balance %+v, want USD %s with card %s", channel, b, usd.ID, card.ID)
		}
	}
	var l list
	app.json("GET", "/customers/me/balances", nil, 200, &l)
	check("customer", l)
	p.c.json("GET", "/secure/customers/"+cid+"/balances", nil, 200, &l)
	check("partner", l)
	e.newAdmin("emp", "Employee").json("GET", "/admin/customers/"+cid+"/balances", nil, 200, &l)
	check("admin", l)

	// Another customer sees only its own; another partner sees nothing.
	p.c.json("GET", "/secure/customers/"+otherCid+"/balances", nil, 200, &l)
	if len(l.Balances) != 1 || l.Balances[0].ID == eur || l.Balances[0].ID == usd.ID {
		t.Errorf("other customer's balances = %+v", l)
	}
	if r := other.c.do("GET", "/secure/customers/"+cid+"/balances", nil); r.status != 404 || r.code() != "CUSTOMER_NOT_FOUND" {
		t.Errorf("another partner listing the customer's balances: %d %s", r.status, r.body)
	}
	if r := e.root.do("GET", "/admin/customers/cus_nope/balances", nil); r.status != 404 || r.code() != "CUSTOMER_NOT_FOUND" {
		t.Errorf("unknown customer: %d %s", r.status, r.body)
	}

	// Balances from before the per-customer set (a Redis that kept its
	// data across the upgrade): Postgres has them, the listing repairs it.
	e.flushJournal()
	set := e.ledger.Keys().CustomerBalances("acme", cid)
	if n, err := e.rdb.Del(context.Background(), set).Result(); err != nil || n != 1 {
		t.Fatalf("dropping the balance set: %d, %v", n, err)
	}
	app.json("GET", "/customers/me/balances", nil, 200, &l)
	check("customer, set rebuilt from postgres", l)
	if n, err := e.rdb.SCard(context.Background(), set).Result(); err != nil || n != 2 {
		t.Errorf("balance set after the repair: %d, %v; want 2", n, err)
	}
}

// TestAdminPartnersAndCustomers: the administration panel's partner and
// customer reads and writes.
func TestAdminPartnersAndCustomers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("acme", "412345", "CREDIT", 30_000)
	e.newProgram("zeta", "498765", "DEPOSIT", 0)
	mgr := e.newAdmin("mgr", "Manager")

	var partners struct {
		Partners []struct {
			ID           string `json:"id"`
			BIN          string `json:"bin"`
			FundingModel string `json:"fundingModel"`
		} `json:"partners"`
	}
	mgr.json("GET", "/admin/partners", nil, 200, &partners)
	if len(partners.Partners) != 2 || partners.Partners[0].ID != "acme" || partners.Partners[1].ID != "zeta" {
		t.Fatalf("partners = %+v", partners)
	}
	var partner struct {
		ID           string `json:"id"`
		Name         string `json:"name"`
		BIN          string `json:"bin"`
		Currency     string `json:"currency"`
		FundingModel string `json:"fundingModel"`
	}
	mgr.json("GET", "/admin/partners/acme", nil, 200, &partner)
	if partner.ID != "acme" || partner.BIN != "412345" || partner.Currency != "EUR" || partner.FundingModel != "CREDIT" {
		t.Fatalf("partner = %+v", partner)
	}
	var pbs struct {
		Balances []partnerBalanceJSON `json:"balances"`
	}
	mgr.json("GET", "/admin/partners/acme/balances", nil, 200, &pbs)
	if len(pbs.Balances) != 1 || pbs.Balances[0].ID != p.pbal || pbs.Balances[0].Available != 30_000 {
		t.Fatalf("partner balances = %+v", pbs)
	}
	var pb partnerBalanceJSON
	mgr.json("GET", "/admin/partners/acme/balances/"+p.pbal, nil, 200, &pb)
	if pb.ID != p.pbal || pb.Type != "CREDIT" || pb.Available != 30_000 {
		t.Fatalf("partner balance = %+v", pb)
	}

	// A manager registers a customer for the partner and verifies its KYC.
	var cust customerJSON
	mgr.json("POST", "/admin/partners/acme/customers", map[string]string{"externalId": "ext-cy", "firstName": "Cy", "lastName": "Tester", "email": "cy@example.com", "phone": "+48123456789"}, 201, &cust)
	if cust.PartnerID != "acme" || cust.KYCStatus == "VERIFIED" {
		t.Fatalf("customer = %+v", cust)
	}
	mgr.json("PUT", "/admin/customers/"+cust.ID+"/kyc", map[string]string{"status": "VERIFIED"}, 200, &cust)
	if cust.KYCStatus != "VERIFIED" {
		t.Fatalf("after KYC: %+v", cust)
	}
	// The partner sees the customer and can open a balance for it now.
	p.c.json("GET", "/secure/customers/"+cust.ID, nil, 200, &cust)
	if cust.KYCStatus != "VERIFIED" {
		t.Fatalf("partner view: %+v", cust)
	}
	p.c.json("POST", "/secure/customers/"+cust.ID+"/balances", map[string]string{"currency": "EUR"}, 201, nil)
}

// TestNotReadyRefusesAndChangesNothing: while the switch rebuilds its
// state, authenticated routes answer 503 NOT_READY and change nothing;
// the public documents are still served.
func TestNotReadyRefusesAndChangesNothing(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	ready.Store(true)
	e := newEnv(t, func(c *api.Config) { c.Ready = func(context.Context) bool { return ready.Load() } })
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	cid, bid := p.verifiedCustomer(t, "ada")

	ready.Store(false)
	for _, r := range []resp{
		p.c.do("POST", "/secure/customers/"+cid+"/balances/"+bid+"/reload", map[string]int{"amount": 500}),
		p.c.do("POST", "/secure/customers", map[string]string{"externalId": "x", "firstName": "X", "lastName": "Y", "email": "x@example.com", "phone": "+48123456789"}),
		e.root.do("GET", "/admin/partners", nil),
	} {
		if r.status != 503 || r.code() != "NOT_READY" {
			t.Errorf("while not ready: %d %s, want 503 NOT_READY", r.status, r.body)
		}
	}
	e.root.json("GET", "/openapi.yaml", nil, 200, nil)

	ready.Store(true)
	var bal balanceJSON
	p.c.json("GET", "/secure/customers/"+cid+"/balances/"+bid, nil, 200, &bal)
	if bal.Available != 0 {
		t.Errorf("a refused reload changed the balance: %+v", bal)
	}
	var custs struct {
		Balances []balanceJSON `json:"balances"`
	}
	p.c.json("GET", "/secure/customers/"+cid+"/balances", nil, 200, &custs)
	if len(custs.Balances) != 1 {
		t.Errorf("balances after refusals: %+v", custs)
	}
	customers, err := ledger.ScanKeys(context.Background(), e.rdb, e.ledger.Keys().Row("acme", "customers", "*"), "hash")
	if err != nil || len(customers) != 1 {
		t.Errorf("customers after a refused registration: %v, %v; want only ada", customers, err)
	}
}
