package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
)

// The admin routes the administration panel reads: who is signed in,
// customer search (incl. by a card's last 4 digits), a customer's cards
// with masked PANs, a card's authorizations and holds, the last hour's
// authorizations by reason; and admin users' role changes and
// deactivation.

func TestAdminSessionShowsWhoAndExpiry(t *testing.T) {
	e := newEnv(t)
	emp := e.newAdmin("desk.agent", "Employee")
	var s struct {
		Username  string    `json:"username"`
		Role      string    `json:"role"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	emp.json("GET", "/admin/session", nil, 200, &s)
	if s.Username != "desk.agent" || s.Role != "Employee" || time.Until(s.ExpiresAt) <= 0 {
		t.Fatalf("session = %+v, want desk.agent / Employee expiring in the future", s)
	}
	e.newClient(nil, nil).json("GET", "/admin/session", nil, 401, nil)
}

func TestAdminUserRoleChangeAndDeactivation(t *testing.T) {
	e := newEnv(t)
	m := e.newAdmin("mgr.one", "Manager")
	m.json("GET", "/admin/summaries", nil, 200, nil)

	var u struct {
		Role   string `json:"role"`
		Active bool   `json:"active"`
	}
	e.root.json("PATCH", "/admin/users/mgr.one", map[string]string{"role": "Employee"}, 200, &u)
	if u.Role != "Employee" || !u.Active {
		t.Fatalf("after role change: %+v", u)
	}
	// The role is read on every request: the same session is now an Employee's.
	m.json("GET", "/admin/summaries", nil, 403, nil)

	e.root.json("PATCH", "/admin/users/mgr.one", map[string]bool{"active": false}, 200, &u)
	if u.Active {
		t.Fatal("deactivated admin still active")
	}
	if r := m.do("GET", "/admin/session", nil); r.status != 401 {
		t.Fatalf("session of a deactivated admin: %d %s, want 401", r.status, r.body)
	}
	r := e.newClient(nil, nil).do("POST", "/admin/login", map[string]string{"username": "mgr.one", "password": "mgr.one-password-1"})
	if r.status != 401 || r.code() != "INVALID_CREDENTIALS" {
		t.Fatalf("login of a deactivated admin: %d %s", r.status, r.body)
	}
	var list struct {
		Users []struct {
			Username string `json:"username"`
			Active   bool   `json:"active"`
		} `json:"users"`
	}
	e.root.json("GET", "/admin/users", nil, 200, &list)
	for _, x := range list.Users {
		if x.Username == "mgr.one" && x.Active || x.Username == rootUser && !x.Active {
			t.Fatalf("listing: %+v", list.Users)
		}
	}

	e.root.json("PATCH", "/admin/users/mgr.one", map[string]bool{"active": true}, 200, &u)
	again := e.adminLogin("mgr.one", "mgr.one-password-1") // the old password works again
	again.json("GET", "/admin/session", nil, 200, nil)

	for name, c := range map[string]struct {
		who    *client
		path   string
		body   any
		status int
		code   string
		opts   []reqOpt
	}{
		"self":       {e.root, "/admin/users/" + rootUser, map[string]bool{"active": false}, 409, "CANNOT_CHANGE_SELF", nil},
		"unknown":    {e.root, "/admin/users/nobody-here", map[string]string{"role": "Manager"}, 404, "ADMIN_NOT_FOUND", nil},
		"bad role":   {e.root, "/admin/users/mgr.one", map[string]string{"role": "Boss"}, 400, "VALIDATION_ERROR", []reqOpt{invalidRequest}},
		"empty":      {e.root, "/admin/users/mgr.one", map[string]string{}, 400, "VALIDATION_ERROR", nil},
		"not admin":  {again, "/admin/users/" + rootUser, map[string]string{"role": "Employee"}, 403, "FORBIDDEN", nil},
		"wrong type": {e.root, "/admin/users/mgr.one", map[string]string{"active": "no"}, 400, "VALIDATION_ERROR", []reqOpt{invalidRequest}},
	} {
		t.Run(name, func(t *testing.T) {
			r := c.who.do("PATCH", c.path, c.body, c.opts...)
			if r.status != c.status || r.code() != c.code {
				t.Fatalf("%d %s, want %d %s", r.status, r.body, c.status, c.code)
			}
		})
	}
}

func TestAdminCustomerSearchCardsAndAuthorizations(t *testing.T) {
	e := newEnv(t)
	p := e.newProgram("searchbank", "45671234", "DEPOSIT", 100_000)
	var custs []string
	var pans []string
	for _, name := range []string{"Zofia", "Adam", "Marta"} {
		cid, bid := p.verifiedCustomer(t, name)
		e.root.json("POST", "/admin/balances/"+bid+"/reload", map[string]any{"amount": 5000}, 200, nil)
		var full fullDataJSON
		p.c.encryptedJSON("POST", "/secure/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": bid}, 201, &full)
		custs = append(custs, cid)
		pans = append(pans, full.CardNo)
	}
	emp := e.newAdmin("search.agent", "Employee")

	// A decline for Adam's card: locked as stolen, then authorized by the engine.
	var cards struct {
		Cards []struct {
			ID         string `json:"id"`
			First6     string `json:"first6"`
			Last4      string `json:"last4"`
			MaskedPan  string `json:"maskedPan"`
			LockReason int    `json:"lockReason"`
			LockSource string `json:"lockSource"`
			Currency   string `json:"currency"`
		} `json:"cards"`
	}
	emp.json("GET", "/admin/customers/"+custs[1]+"/cards", nil, 200, &cards)
	if len(cards.Cards) != 1 {
		t.Fatalf("cards of Adam: %+v", cards)
	}
	card := cards.Cards[0]
	if card.First6 != pans[1][:6] || card.Last4 != pans[1][len(pans[1])-4:] || card.MaskedPan != card.First6+"******"+card.Last4 || card.Currency != "EUR" {
		t.Fatalf("card view %+v for PAN ending %s", card, pans[1][len(pans[1])-4:])
	}
	emp.json("POST", "/admin/cards/"+card.ID+"/lock", map[string]int{"reason": 2}, 200, nil)
	eng := &authz.Engine{Ledger: &ledger.Engine{L: e.ledger, Token: e.keys.LookupToken}, PIN: e.keys, CVV: e.keys}
	for i, pan := range []string{pans[1], pans[0]} {
		d := eng.Authorize(context.Background(), &authz.Request{
			Kind: authz.KindAuthorization, MTI: "0100", PAN: pan, TxnType: "00", Amount: 1234, Currency: "978",
			MCC: "5411", POSEntryMode: "051", TransmissionTime: time.Now().UTC().Format("0102150405"),
			STAN: fmt.Sprintf("%06d", i+1), AcquirerID: "123456", RRN: fmt.Sprintf("%012d", i+1), TerminalID: "TERM0001",
			MerchantID: "MERCHANT0000001", ReceivedAt: time.Now(),
		})
		want := []authz.Reason{authz.ReasonLockedStolen, authz.ReasonApproved}[i]
		if d.Reason != want {
			t.Fatalf("authorization %d: %s, want %s", i, d.Reason, want)
		}
	}
	e.flushJournal()

	type page struct {
		Customers []struct {
			ID        string `json:"id"`
			FirstName string `json:"firstName"`
		} `json:"customers"`
		Page    int  `json:"page"`
		HasMore bool `json:"hasMore"`
	}
	names := func(p page) string {
		var out []string
		for _, c := range p.Customers {
			out = append(out, c.FirstName)
		}
		return strings.Join(out, ",")
	}
	for q, want := range map[string]string{
		"":                       "Adam,Marta,Zofia", // all, ordered by last name (all Tester), first name
		"adam":                   "Adam",
		"MARTA@EXAMPLE":          "Marta",
		custs[0]:                 "Zofia",
		"ext-Zofia":              "Zofia",
		pans[1][len(pans[1])-4:]: "Adam",
		"no such person":         "",
		"%":                      "", // a literal, not a wildcard
	} {
		var got page
		emp.json("GET", "/admin/customers?q="+strings.ReplaceAll(q, "%", "%25"), nil, 200, &got)
		if names(got) != want && !(len(q) == 4 && strings.Contains(names(got), want)) {
			t.Errorf("search %q: %q, want %q", q, names(got), want)
		}
	}
	var p1, p2 page
	emp.json("GET", "/admin/customers?pageSize=2", nil, 200, &p1)
	emp.json("GET", "/admin/customers?pageSize=2&page=2", nil, 200, &p2)
	if names(p1) != "Adam,Marta" || !p1.HasMore || names(p2) != "Zofia" || p2.HasMore || p2.Page != 2 {
		t.Fatalf("pages: %q more=%v, %q more=%v", names(p1), p1.HasMore, names(p2), p2.HasMore)
	}
	if r := emp.do("GET", "/admin/customers?page=0", nil, invalidRequest); r.status != 400 || r.code() != "VALIDATION_ERROR" {
		t.Fatalf("page=0: %d %s", r.status, r.body)
	}

	var auths struct {
		Authorizations []struct {
			Type     string `json:"type"`
			Reason   string `json:"reason"`
			Approved bool   `json:"approved"`
			MTI      string `json:"mti"`
			Amount   int64  `json:"amount"`
			RRN      string `json:"rrn"`
		} `json:"authorizations"`
		Holds []struct {
			State  string `json:"state"`
			Amount int64  `json:"amount"`
		} `json:"holds"`
	}
	emp.json("GET", "/admin/cards/"+card.ID+"/authorizations", nil, 200, &auths)
	if len(auths.Authorizations) != 1 || auths.Authorizations[0].Reason != "CARD_LOCKED_STOLEN" || auths.Authorizations[0].Approved ||
		auths.Authorizations[0].Amount != 1234 || auths.Authorizations[0].MTI != "0100" || len(auths.Holds) != 0 {
		t.Fatalf("authorizations of the stolen card: %+v", auths)
	}
	var other struct {
		Cards []struct{ ID string } `json:"cards"`
	}
	emp.json("GET", "/admin/customers/"+custs[0]+"/cards", nil, 200, &other)
	emp.json("GET", "/admin/cards/"+other.Cards[0].ID+"/authorizations", nil, 200, &auths)
	if len(auths.Authorizations) != 1 || !auths.Authorizations[0].Approved || len(auths.Holds) != 1 || auths.Holds[0].Amount != 1234 || auths.Holds[0].State == "" {
		t.Fatalf("authorizations of the approved card: %+v", auths)
	}
	emp.json("GET", "/admin/cards/crd_nope/authorizations", nil, 404, nil)

	var stats struct {
		Approved int64 `json:"approved"`
		Declined int64 `json:"declined"`
		ByReason []struct {
			Reason string `json:"reason"`
			Count  int64  `json:"count"`
		} `json:"byReason"`
	}
	emp.json("GET", "/admin/authorizations/stats?minutes=60", nil, 200, &stats)
	if stats.Approved != 1 || stats.Declined != 1 || len(stats.ByReason) != 2 {
		t.Fatalf("stats: %+v", stats)
	}
	if r := emp.do("GET", "/admin/authorizations/stats?minutes=0", nil, invalidRequest); r.status != 400 {
		t.Fatalf("minutes=0: %d", r.status)
	}
	for _, pan := range pans {
		for _, path := range []string{"/admin/customers", "/admin/customers/" + custs[1] + "/cards", "/admin/cards/" + card.ID + "/authorizations"} {
			if r := emp.do("GET", path, nil); contains(r.body, pan) {
				t.Fatalf("%s shows a full PAN", path)
			}
		}
	}
}
