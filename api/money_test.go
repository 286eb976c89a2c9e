package api_test

import (
	"context"
	"testing"
	"time"
)

type summaryJSON struct {
	Currency string `json:"currency"`
	Users    int64  `json:"users"`
	Partners int64  `json:"partners"`
	Wallet   int64  `json:"wallet"`
}

// TestMoney: reloads in both funding models, idempotency, the CREDIT
// model's refusal, the low-balance alert, and summaries that add up.
func TestMoney(t *testing.T) {
	t.Parallel()
	hook := newLowBalanceHook(t, "")
	e := newEnv(t, withLowBalanceWebhook(hook.url, ""))
	e.runWebhooks()
	ctx := context.Background()
	dep := e.newProgram("dep", "411111", "DEPOSIT", 100_000)
	cred := e.newProgram("cred", "422222", "CREDIT", 0) // no credit at all
	// A CREDIT program whose EUR credit balance alerts below 200.00.
	low := e.newProgramWithThreshold("low", "433333", 20_000)
	var lowBal partnerBalanceJSON
	e.root.json("POST", "/admin/partners/low/balances/"+low.pbal+"/reload", map[string]int{"amount": 50_000}, 200, &lowBal)
	if lowBal.Available != 50_000 || lowBal.Balance != 50_000 {
		t.Fatalf("credit balance after reload = %+v", lowBal)
	}

	d1, d1b := dep.verifiedCustomer(t, "d1")
	d2, d2b := dep.verifiedCustomer(t, "d2")
	l1, l1b := low.verifiedCustomer(t, "l1")
	reload := func(p *program, cid, bid string, amount int64, want int, key string) resp {
		t.Helper()
		var opts []reqOpt
		if key != "" {
			opts = append(opts, header("Idempotency-Key", key))
		}
		r := p.c.do("POST", "/secure/customers/"+cid+"/balances/"+bid+"/reload", map[string]int64{"amount": amount}, opts...)
		if r.status != want {
			t.Fatalf("reload %d on %s: %d %s, want %d", amount, bid, r.status, r.body, want)
		}
		return r
	}
	reload(dep, d1, d1b, 1_000, 200, "")
	reload(dep, d2, d2b, 2_500, 200, "")
	// Idempotency: a retry changes nothing; another amount is refused; the
	// key is per balance.
	reload(dep, d1, d1b, 300, 200, "order-1")
	reload(dep, d1, d1b, 300, 200, "order-1")
	if r := reload(dep, d1, d1b, 400, 422, "order-1"); r.code() != "IDEMPOTENCY_KEY_REUSED" {
		t.Errorf("reused key: %s", r.body)
	}
	reload(dep, d2, d2b, 300, 200, "order-1")
	// Admin (Manager) reload.
	mgr := e.newAdmin("mgr", "Manager")
	mgr.json("POST", "/admin/balances/"+d2b+"/reload", map[string]int{"amount": 200}, 200, nil)

	// CREDIT: reloads move money from the credit balance.
	lowAlerts := func() float64 {
		return e.metric("antaca_partner_balance_low_total", map[string]string{"partner": "low", "type": "CREDIT", "currency": "EUR"})
	}
	reload(low, l1, l1b, 20_000, 200, "") // 50 000 -> 30 000: still above
	// The alert is counted before the answer, so the count is exact here.
	if got := lowAlerts(); got != 0 {
		t.Fatalf("antaca_partner_balance_low_total = %v before crossing the threshold", got)
	}
	reload(low, l1, l1b, 15_000, 200, "") // 30 000 -> 15 000: below 20 000
	select {
	case ev := <-hook.got:
		if ev.Type != "partner_balance.low" || ev.PartnerID != "low" || ev.Data.BalanceID != low.pbal || ev.Data.Type != "CREDIT" ||
			ev.Data.Currency != "EUR" || ev.Data.Available != 15_000 || ev.Data.Threshold != 20_000 {
			t.Errorf("webhook event = %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no low-balance webhook")
	}
	if got := lowAlerts(); got != 1 {
		t.Errorf("antaca_partner_balance_low_total = %v, want 1", got)
	}
	if got := e.metric("antaca_partner_balance_available", map[string]string{"partner": "low", "type": "CREDIT", "currency": "EUR"}); got != 15_000 {
		t.Errorf("antaca_partner_balance_available = %v, want 15000", got)
	}
	reload(low, l1, l1b, 1_000, 200, "") // already below: no second alert
	// Short credit: refused, nothing changed.
	if r := reload(low, l1, l1b, 20_000, 409, ""); r.code() != "INSUFFICIENT_PARTNER_FUNDS" {
		t.Errorf("short credit: %s", r.body)
	}
	if got := lowAlerts(); got != 1 {
		t.Errorf("antaca_partner_balance_low_total = %v after staying below, want still 1", got)
	}
	select {
	case ev := <-hook.got:
		t.Errorf("a second webhook while staying below: %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}
	var lb balanceJSON
	low.c.json("GET", "/secure/customers/"+l1+"/balances/"+l1b, nil, 200, &lb)
	var lp struct {
		Balances []partnerBalanceJSON `json:"balances"`
	}
	low.c.json("GET", "/secure/partner/balances", nil, 200, &lp)
	if lb.Available != 36_000 || len(lp.Balances) != 1 || lp.Balances[0].Available != 14_000 || lp.Balances[0].Balance != 14_000 {
		t.Errorf("after refused reload: user %d, partner %+v", lb.Available, lp.Balances)
	}
	// A CREDIT program without credit in that currency cannot reload.
	c1, c1b := cred.verifiedCustomer(t, "c1")
	if r := reload(cred, c1, c1b, 1, 409, ""); r.code() != "INSUFFICIENT_PARTNER_FUNDS" {
		t.Errorf("no credit: %s", r.body)
	}

	// USD on the deposit program.
	var usd partnerBalanceJSON
	e.root.json("POST", "/admin/partners/dep/balances", map[string]any{"type": "DEPOSIT", "currency": "USD"}, 201, &usd)
	e.root.json("POST", "/admin/partners/dep/balances/"+usd.ID+"/reload", map[string]int{"amount": 777}, 200, nil)
	var d1usd balanceJSON
	dep.c.json("POST", "/secure/customers/"+d1+"/balances", map[string]string{"currency": "USD"}, 201, &d1usd)
	reload(dep, d1, d1usd.ID, 300, 200, "order-1")

	var sums struct {
		Summaries []summaryJSON `json:"summaries"`
	}
	mgr.json("GET", "/admin/summaries", nil, 200, &sums)
	eurUsers := int64(1_000 + 300 + 2_500 + 300 + 200 + 20_000 + 15_000 + 1_000)
	eurPartners := int64(100_000 + 14_000) // deposit + the low program's credit; cred has 0
	want := []summaryJSON{
		{Currency: "EUR", Users: eurUsers, Partners: eurPartners, Wallet: eurUsers + eurPartners},
		{Currency: "USD", Users: 300, Partners: 777, Wallet: 1_077},
	}
	if len(sums.Summaries) != 2 || sums.Summaries[0] != want[0] || sums.Summaries[1] != want[1] {
		t.Errorf("summaries = %+v, want %+v", sums.Summaries, want)
	}
	// Conservation: money that entered each program from outside equals the wallet.
	var in = map[string]int64{}
	for _, pid := range []string{"dep", "cred", "low"} {
		for _, cur := range []string{"EUR", "USD"} {
			n, err := e.ledger.Funding(ctx, pid, cur)
			if err != nil {
				t.Fatal(err)
			}
			in[cur] += n
		}
	}
	if in["EUR"] != want[0].Wallet || in["USD"] != want[1].Wallet {
		t.Errorf("funding in = %v, wallet EUR %d USD %d", in, want[0].Wallet, want[1].Wallet)
	}
}
