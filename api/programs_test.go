package api_test

import (
	"testing"
	"time"
)

type programJSON struct {
	ID           string    `json:"id"`
	PartnerID    string    `json:"partnerId"`
	Currency     string    `json:"currency"`
	RemoteSecret string    `json:"remoteSecret"`
	CreatedAt    time.Time `json:"createdAt"` // RFC 3339, as every resource
	BINRanges    []struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"binRanges"`
}

type controlsJSON struct {
	Source   string         `json:"source"`
	Program  string         `json:"programId"`
	Controls map[string]any `json:"controls"`
	Usage    []struct {
		Interval        string `json:"interval"`
		Spent           int64  `json:"spent"`
		RemainingAmount *int64 `json:"remainingAmount"`
	} `json:"usage"`
}

// TestProgramsAndControls: programs over the admin API (ranges that
// overlap any program's are refused), partners read theirs, a card issued
// under a program takes its PAN from the program's range, and spend
// controls on programs and cards, where a cardholder may only tighten.
func TestProgramsAndControls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.newProgram("prgco", "47110001", "DEPOSIT", 1_000_000)
	other := e.newProgram("prgot", "47110002", "DEPOSIT", 0)

	// The partner's BIN became its default program.
	var list struct {
		Programs []programJSON `json:"programs"`
	}
	p.c.json("GET", "/secure/programs", nil, 200, &list)
	if len(list.Programs) != 1 || list.Programs[0].ID != "prg_prgco" || list.Programs[0].BINRanges[0].From != "47110001" {
		t.Fatalf("default program = %+v", list.Programs)
	}

	body := map[string]any{"id": "gold", "name": "Gold", "currency": "EUR",
		"binRanges": []map[string]string{{"from": "4712000", "to": "4712004"}},
		"cardTypes": []string{"VIRTUAL"}, "timeZone": "Europe/Warsaw",
		"remoteUrl": "https://partner.example/decide", "standIn": map[string]any{"policy": "approve_if_funded"}}
	var gold programJSON
	e.root.json("POST", "/admin/partners/prgco/programs", body, 201, &gold)
	if gold.RemoteSecret == "" || gold.PartnerID != "prgco" || time.Since(gold.CreatedAt).Abs() > time.Minute {
		t.Fatalf("created program = %+v", gold)
	}
	// Overlaps: another length covering the same PANs, another partner.
	for _, rg := range []map[string]string{{"from": "471200", "to": "471200"}, {"from": "47110002", "to": "47110002"}, {"from": "47120049", "to": "47120050"}} {
		b := map[string]any{"name": "X", "currency": "EUR", "binRanges": []map[string]string{rg}}
		if r := e.root.do("POST", "/admin/partners/prgot/programs", b); r.status != 409 || r.code() != "BIN_RANGE_IN_USE" {
			t.Errorf("range %v over another program's: %d %s", rg, r.status, r.body)
		}
	}
	if r := e.root.do("POST", "/admin/partners/prgot/programs", map[string]any{"name": "X", "currency": "EUR",
		"binRanges": []map[string]string{{"from": "4799", "to": "4799"}}}, invalidRequest); r.status != 400 || r.field() != "binRanges" {
		t.Errorf("4-digit range: %d %s", r.status, r.body)
	}
	// The error names the field, below the top level too.
	if r := e.root.do("POST", "/admin/partners/prgot/programs", map[string]any{"name": "X", "currency": "EUR",
		"binRanges": []map[string]string{{"from": "47990000", "to": "47990009"}}, "controls": map[string]any{"mcc_block": []string{"54X1"}}}, invalidRequest); r.status != 400 || r.field() != "controls.mcc_block" {
		t.Errorf("a bad MCC in a program's controls: %d %s", r.status, r.body)
	}
	var got programJSON
	e.root.json("GET", "/admin/partners/prgco/programs/gold", nil, 200, &got)
	if got.RemoteSecret != "" {
		t.Error("the remote secret is shown again")
	}
	e.root.json("GET", "/admin/partners/prgco/programs", nil, 200, &list)
	if len(list.Programs) != 2 {
		t.Errorf("programs = %d, want 2", len(list.Programs))
	}
	body["name"] = "Gold Plus"
	delete(body, "id")
	e.root.json("PUT", "/admin/partners/prgco/programs/gold", body, 200, &got)
	if r := e.root.do("GET", "/admin/partners/prgot/programs/gold", nil); r.status != 404 || r.code() != "PROGRAM_NOT_FOUND" {
		t.Errorf("another partner's program: %d %s", r.status, r.body)
	}
	_ = other

	// A card under the program draws its PAN from its range.
	cust, bal := p.verifiedCustomer(t, "gina")
	var full fullDataJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cust+"/cards/virtual", map[string]string{"balanceId": bal, "programId": "gold"}, 201, &full)
	if pre := full.CardNo[:7]; pre < "4712000" || pre > "4712004" {
		t.Fatalf("PAN prefix %s outside the program's range", pre)
	}
	var card cardJSON
	p.c.json("GET", "/secure/customers/"+cust+"/cards/"+full.ID+"/status", nil, 200, &card)
	// Program controls are the default of its cards.
	pc := map[string]any{"per_transaction_max": 50000, "limits": []map[string]any{{"interval": "day", "amount": 100000, "count": 20}},
		"mcc_block": []string{"7995"}, "countries_block": []string{"KP"}, "channels_block": []string{"atm"}}
	var cv controlsJSON
	e.root.json("PUT", "/admin/partners/prgco/programs/gold/controls", pc, 200, &cv)
	e.root.json("GET", "/admin/partners/prgco/programs/gold/controls", nil, 200, &cv)
	if cv.Source != "program" {
		t.Errorf("program controls source = %s", cv.Source)
	}
	e.root.json("GET", "/admin/cards/"+full.ID+"/controls", nil, 200, &cv)
	if cv.Source != "program" || cv.Program != "gold" || len(cv.Usage) != 1 || cv.Usage[0].RemainingAmount == nil || *cv.Usage[0].RemainingAmount != 100000 {
		t.Fatalf("card controls = %+v", cv)
	}
	if r := e.root.do("PUT", "/admin/cards/"+full.ID+"/controls", map[string]any{"limits": []map[string]any{{"interval": "fortnight", "amount": 1}}}, invalidRequest); r.status != 400 || r.field() != "limits" {
		t.Errorf("unknown interval: %d %s", r.status, r.body)
	}

	// The cardholder may tighten, never loosen.
	app := p.session(t, cust)
	app.json("GET", "/customers/me/cards/"+full.ID+"/controls", nil, 200, &cv)
	tighter := map[string]any{"per_transaction_max": 20000, "limits": []map[string]any{{"interval": "day", "amount": 50000, "count": 20},
		{"interval": "month", "amount": 500000}}, "mcc_block": []string{"7995", "5813"}, "countries_block": []string{"KP"}, "channels_block": []string{"atm", "ecommerce"}}
	app.json("PUT", "/customers/me/cards/"+full.ID+"/controls", tighter, 200, &cv)
	if cv.Source != "card" || len(cv.Usage) != 2 {
		t.Fatalf("after tightening = %+v", cv)
	}
	for name, looser := range map[string]map[string]any{
		"higher max":     {"per_transaction_max": 30000, "limits": tighter["limits"], "mcc_block": tighter["mcc_block"], "countries_block": tighter["countries_block"], "channels_block": tighter["channels_block"]},
		"dropped limit":  {"per_transaction_max": 20000, "limits": []map[string]any{{"interval": "day", "amount": 50000, "count": 20}}, "mcc_block": tighter["mcc_block"], "countries_block": tighter["countries_block"], "channels_block": tighter["channels_block"]},
		"shorter blocks": {"per_transaction_max": 20000, "limits": tighter["limits"], "mcc_block": []string{"7995"}, "countries_block": tighter["countries_block"], "channels_block": tighter["channels_block"]},
	} {
		if r := app.do("PUT", "/customers/me/cards/"+full.ID+"/controls", looser); r.status != 403 || r.code() != "CONTROLS_LOOSENED" {
			t.Errorf("%s: %d %s, want 403 CONTROLS_LOOSENED", name, r.status, r.body)
		}
	}
	// The partner and an admin may loosen, and hand the card back.
	p.c.json("PUT", "/secure/customers/"+cust+"/cards/"+full.ID+"/controls", map[string]any{"per_transaction_max": 90000}, 200, &cv)
	p.c.json("GET", "/secure/customers/"+cust+"/cards/"+full.ID+"/controls", nil, 200, &cv)
	if cv.Source != "card" || cv.Controls["per_transaction_max"] != float64(90000) {
		t.Errorf("partner's controls = %+v", cv)
	}
	p.c.json("DELETE", "/secure/customers/"+cust+"/cards/"+full.ID+"/controls", nil, 200, &cv)
	if cv.Source != "program" {
		t.Errorf("after delete source = %s", cv.Source)
	}
	e.root.json("PUT", "/admin/cards/"+full.ID+"/controls", map[string]any{}, 200, &cv)
	if cv.Source != "card" {
		t.Errorf("empty card controls source = %s, want card (explicitly none)", cv.Source)
	}
	e.root.json("DELETE", "/admin/cards/"+full.ID+"/controls", nil, 200, &cv)
	if cv.Source != "program" {
		t.Errorf("after admin delete source = %s", cv.Source)
	}

	// Replay (the journal in Postgres holds no authorization of this test).
	var rep struct {
		Since, Until time.Time
		Evaluated    struct{ Count int64 }
		SkippedCards int `json:"skippedCards"`
	}
	e.root.json("POST", "/admin/partners/prgco/programs/gold/controls/replay", map[string]any{"controls": pc, "since": "24h"}, 200, &rep)
	if rep.Until.Sub(rep.Since) != 24*time.Hour || rep.Evaluated.Count != 0 || rep.SkippedCards != 0 {
		t.Errorf("replay = %+v", rep)
	}
	if r := e.root.do("POST", "/admin/partners/prgco/programs/gold/controls/replay", map[string]any{"controls": pc, "since": "forever"}); r.status != 400 {
		t.Errorf("replay since forever: %d %s", r.status, r.body)
	}
}
