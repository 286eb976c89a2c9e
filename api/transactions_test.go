package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
)

// withJournal runs a write-behind for the env, as the switch does: every
// change the ledger makes is committed in Postgres (approvals before they
// are answered), and listings wait for it. Action codes follow profile cmf.
func withJournal(t *testing.T) envOption {
	return func(cfg *api.Config) {
		wb, err := pgstore.NewWriteBehind(pgstore.Options{Redis: cfg.Redis, Keys: cfg.Ledger.Keys(), Sink: cfg.DB.Sink(),
			Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = wb.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		cfg.Ledger.SetJournal(wb, ledger.AnswerAfterPostgres)
		cfg.JournalBarrier = func(ctx context.Context) error { return wb.Commit(ctx, nil, true) }
		profile, err := iso.ProfileByName("cmf")
		if err != nil {
			t.Fatal(err)
		}
		cfg.ActionCode = func(r authz.Reason) string { c, _ := profile.Code(r); return c }
	}
}

// network sends authorization messages for one card through the engine,
// as the ISO listener would.
type network struct {
	t    *testing.T
	eng  *authz.Engine
	pan  string
	stan atomic.Int64
}

func (e *env) network(t *testing.T, pan string) *network {
	return &network{t: t, pan: pan, eng: &authz.Engine{Ledger: &ledger.Engine{L: e.ledger, Token: e.keys.LookupToken}, PIN: e.keys, CVV: e.keys}}
}

type sent struct {
	req *authz.Request
	d   authz.Decision
}

func (n *network) send(kind authz.Kind, mti, txnType string, amount int64, orig *sent, replacement *int64) sent {
	n.t.Helper()
	s := n.stan.Add(1)
	req := &authz.Request{
		Kind: kind, MTI: mti, PAN: n.pan, TxnType: txnType, Amount: amount, Currency: "978",
		MCC: "5411", POSEntryMode: "051", TransmissionTime: time.Now().UTC().Format("0102150405"),
		STAN: fmt.Sprintf("%06d", s), AcquirerID: "123456", RRN: fmt.Sprintf("%012d", s), TerminalID: "TERM0001",
		MerchantID: "MERCHANT0000001", MerchantName: "ANTACA TEST SHOP         BERLIN       DE", ReceivedAt: time.Now(),
		ReplacementAmount: replacement,
	}
	if orig != nil {
		req.RRN = orig.req.RRN
		req.Original = &authz.OriginalData{MTI: orig.req.MTI, STAN: orig.req.STAN, TransmissionTime: orig.req.TransmissionTime, AcquirerID: orig.req.AcquirerID}
	}
	d := n.eng.Authorize(context.Background(), req)
	return sent{req: req, d: d}
}

func (n *network) auth(amount int64) sent {
	return n.send(authz.KindAuthorization, "0100", authz.TxnPurchase, amount, nil, nil)
}

type txnJSON struct {
	ID             string `json:"id"`
	CardID         string `json:"card_id"`
	BalanceID      string `json:"balance_id"`
	Type           string `json:"type"`
	Status         string `json:"status"`
	Amount         int64  `json:"amount"`
	ApprovedAmount int64  `json:"approved_amount"`
	CapturedAmount int64  `json:"captured_amount"`
	ReleasedAmount int64  `json:"released_amount"`
	Currency       string `json:"currency"`
	Reason         string `json:"reason"`
	ActionCode     string `json:"action_code"`
	ApprovalCode   string `json:"approval_code"`
	Merchant       *struct {
		ID, Name, City, Country, MCC string
	} `json:"merchant"`
	CreatedAt time.Time `json:"created_at"`
	Events    []struct {
		Type   string    `json:"type"`
		Amount int64     `json:"amount"`
		At     time.Time `json:"at"`
	} `json:"events"`
}

type txnPageJSON struct {
	Data    []txnJSON `json:"data"`
	HasMore bool      `json:"has_more"`
}

// all pages through a listing with limit, checking each page.
func (c *client) allTransactions(path string, limit int) []txnJSON {
	c.e.t.Helper()
	var out []txnJSON
	after := ""
	for range 100 {
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if after != "" {
			q.Set("starting_after", after)
		}
		var p txnPageJSON
		c.json("GET", path+"?"+q.Encode(), nil, 200, &p)
		if len(p.Data) > limit || p.HasMore && len(p.Data) != limit {
			c.e.t.Fatalf("%s: page of %d with has_more=%v at limit %d", path, len(p.Data), p.HasMore, limit)
		}
		out = append(out, p.Data...)
		if !p.HasMore {
			return out
		}
		after = p.Data[len(p.Data)-1].ID
	}
	c.e.t.Fatalf("%s: more than 100 pages", path)
	return nil
}

func events(t txnJSON) string {
	var out []string
	for _, e := range t.Events {
		out = append(out, fmt.Sprintf("%s:%d", e.Type, e.Amount))
	}
	return strings.Join(out, ",")
}

// TestTransactionsEveryStatus makes one transaction of every status through
// the engine and lists them on the three channels: newest first, every
// page size giving the same list, with the right amounts, reasons, action
// codes and histories; then the cursor errors and other tenants' ids.
func TestTransactionsEveryStatus(t *testing.T) {
	e := newEnv(t, withJournal(t))
	p := e.newProgram("txnbank", "45671299", "DEPOSIT", 1_000_000)
	cid, bid := p.verifiedCustomer(t, "Tina")
	p.c.json("POST", "/secure/customers/"+cid+"/balances/"+bid+"/reload", map[string]any{"amount": 100_000}, 200, nil)
	var full fullDataJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": bid}, 201, &full)
	n := e.network(t, full.CardNo)

	// expired: a hold older than the expiry age.
	exp := n.auth(1_100)
	if _, err := e.ledger.ExpireHolds(context.Background(), p.id, -time.Second, 100); err != nil {
		t.Fatal(err)
	}
	pending := n.auth(1_000)
	captured := n.auth(2_000)
	n.send(authz.KindFinancialAdvice, "0220", authz.TxnPurchase, 2_000, &captured, nil)
	partCaptured := n.auth(3_000)
	n.send(authz.KindFinancialAdvice, "0220", authz.TxnPurchase, 1_200, &partCaptured, nil)
	reversed := n.auth(4_000)
	n.send(authz.KindReversal, "0400", authz.TxnPurchase, 4_000, &reversed, nil)
	partReversed := n.auth(5_000)
	keep := int64(3_500)
	n.send(authz.KindReversal, "0400", authz.TxnPurchase, 5_000, &partReversed, &keep)
	declined := n.auth(900_000) // more than the balance holds
	financial := n.send(authz.KindFinancial, "0200", authz.TxnPurchase, 700, nil, nil)
	refund := n.send(authz.KindAuthorization, "0100", authz.TxnRefund, 300, nil, nil)
	for name, s := range map[string]sent{"expired": exp, "pending": pending, "captured": captured, "partially captured": partCaptured,
		"reversed": reversed, "partially reversed": partReversed, "financial": financial, "refund": refund} {
		if !s.d.Approved() {
			t.Fatalf("%s: %s, want an approval", name, s.d.Reason)
		}
	}
	if declined.d.Reason != authz.ReasonInsufficientUserFunds {
		t.Fatalf("decline: %s", declined.d.Reason)
	}

	type want struct {
		typ, status                      string
		amount, approved, capt, released int64
		reason, code, events             string
	}
	wants := []want{ // newest first
		{"refund", "completed", 300, 300, 0, 0, "APPROVED", "0000", "refunded:300"},
		{"financial", "completed", 700, 700, 700, 0, "APPROVED", "0000", "posted:700"},
		{"authorization", "declined", 900_000, 0, 0, 0, "INSUFFICIENT_USER_FUNDS", "1016", "declined:900000"},
		{"authorization", "partially_reversed", 5_000, 5_000, 0, 1_500, "APPROVED", "0000", "authorized:5000,reversed:1500"},
		{"authorization", "reversed", 4_000, 4_000, 0, 4_000, "APPROVED", "0000", "authorized:4000,reversed:4000"},
		{"authorization", "partially_captured", 3_000, 3_000, 1_200, 1_800, "APPROVED", "0000", "authorized:3000,captured:1200"},
		{"authorization", "captured", 2_000, 2_000, 2_000, 0, "APPROVED", "0000", "authorized:2000,captured:2000"},
		{"authorization", "pending", 1_000, 1_000, 0, 0, "APPROVED", "0000", "authorized:1000"},
		{"authorization", "expired", 1_100, 1_100, 0, 1_100, "APPROVED", "0000", "authorized:1100,expired:1100"},
	}
	// Transactions of the same millisecond may list in any fixed order:
	// each is matched by its history, and the order checked by time.
	var reference map[bool][]string // the ids of the first listing, per kind of listing
	check := func(label string, got []txnJSON, wantReload bool) {
		t.Helper()
		ws := wants
		if wantReload {
			ws = append(ws[:len(ws):len(ws)], want{"reload", "completed", 100_000, 100_000, 100_000, 0, "", "", "reloaded:100000"})
		}
		if len(got) != len(ws) {
			t.Fatalf("%s: %d transactions, want %d: %+v", label, len(got), len(ws), got)
		}
		byEvents := map[string]want{}
		for _, w := range ws {
			byEvents[w.events] = w
		}
		var ids []string
		for i, g := range got {
			ids = append(ids, g.ID)
			w, ok := byEvents[events(g)]
			if !ok {
				t.Errorf("%s: transaction %d has history %s, listed twice or not expected", label, i, events(g))
				continue
			}
			delete(byEvents, events(g))
			if g.Type != w.typ || g.Status != w.status || g.Amount != w.amount || g.ApprovedAmount != w.approved ||
				g.CapturedAmount != w.capt || g.ReleasedAmount != w.released || g.Reason != w.reason || g.ActionCode != w.code ||
				g.Currency != "EUR" || g.BalanceID != bid {
				t.Errorf("%s: transaction %d = %+v (events %s), want %+v", label, i, g, events(g), w)
			}
			if w.typ != "reload" && (g.CardID != full.ID || g.Merchant == nil || g.Merchant.Name != "ANTACA TEST SHOP" ||
				g.Merchant.City != "BERLIN" || g.Merchant.Country != "DE" || g.Merchant.MCC != "5411" || g.Merchant.ID != "MERCHANT0000001") {
				t.Errorf("%s: transaction %d card %q merchant %+v", label, i, g.CardID, g.Merchant)
			}
			if w.typ == "reload" && g.CardID != "" {
				t.Errorf("%s: a reload names card %q", label, g.CardID)
			}
			if w.status != "declined" && w.typ != "reload" && len(g.ApprovalCode) != 6 {
				t.Errorf("%s: transaction %d approval code %q", label, i, g.ApprovalCode)
			}
			if i > 0 && g.CreatedAt.After(got[i-1].CreatedAt) {
				t.Errorf("%s: transaction %d is newer than the one before", label, i)
			}
		}
		if reference == nil {
			reference = map[bool][]string{}
		}
		if prev, ok := reference[wantReload]; !ok {
			reference[wantReload] = ids
		} else if strings.Join(prev, ",") != strings.Join(ids, ",") {
			t.Errorf("%s: order %v differs from an earlier listing's %v", label, ids, prev)
		}
	}

	me := p.session(t, cid)
	emp := e.newAdmin("txn.agent", "Employee")
	cardPaths := map[*client]string{
		me:     "/customers/me/cards/" + full.ID + "/transactions",
		p.c:    "/secure/customers/" + cid + "/cards/" + full.ID + "/transactions",
		emp:    "/admin/cards/" + full.ID + "/transactions",
		e.root: "/admin/cards/" + full.ID + "/transactions",
	}
	balPaths := map[*client]string{
		me:  "/customers/me/balances/" + bid + "/transactions",
		p.c: "/secure/customers/" + cid + "/balances/" + bid + "/transactions",
		emp: "/admin/balances/" + bid + "/transactions",
	}
	for c, path := range cardPaths {
		for _, limit := range []int{1, 2, 4, 20, 100} {
			check(fmt.Sprintf("%s limit %d", path, limit), c.allTransactions(path, limit), false)
		}
	}
	for c, path := range balPaths {
		for _, limit := range []int{1, 3, 20} {
			check(fmt.Sprintf("%s limit %d", path, limit), c.allTransactions(path, limit), true)
		}
	}
	// One transaction at a time, on the three channels: the same view as
	// in the listing.
	onePaths := map[*client]string{
		me:  "/customers/me/cards/" + full.ID + "/transactions/",
		p.c: "/secure/customers/" + cid + "/cards/" + full.ID + "/transactions/",
		emp: "/admin/cards/" + full.ID + "/transactions/",
	}
	listed := p.c.allTransactions(cardPaths[p.c], 100)
	for _, g := range listed {
		want, _ := json.Marshal(g)
		for c, path := range onePaths {
			var one txnJSON
			c.json("GET", path+g.ID, nil, 200, &one)
			if got, _ := json.Marshal(one); string(got) != string(want) {
				t.Errorf("GET %s%s:\n got %s\nwant %s", path, g.ID, got, want)
			}
		}
	}
	var page txnPageJSON
	me.json("GET", cardPaths[me], nil, 200, &page)
	if len(page.Data) != len(wants) || page.HasMore {
		t.Fatalf("default page: %d, has_more %v", len(page.Data), page.HasMore)
	}

	// The customer's cards.
	var cards struct {
		Cards []cardJSON `json:"cards"`
	}
	me.json("GET", "/customers/me/cards", nil, 200, &cards)
	if len(cards.Cards) != 1 || cards.Cards[0].ID != full.ID || cards.Cards[0].Last4 != full.CardNo[len(full.CardNo)-4:] {
		t.Fatalf("my cards: %+v", cards)
	}
	p.c.json("GET", "/secure/customers/"+cid+"/cards", nil, 200, &cards)
	if len(cards.Cards) != 1 || cards.Cards[0].ID != full.ID {
		t.Fatalf("the customer's cards: %+v", cards)
	}
	for _, path := range []string{cardPaths[me], balPaths[me], "/customers/me/cards"} {
		r := me.do("GET", path, nil)
		if contains(r.body, full.CardNo) || contains(r.body, `"`+full.CVV+`"`) || contains(r.body, full.CardNo[:6]) {
			t.Fatalf("%s shows card data: %s", path, r.body)
		}
	}

	// Another card of the same customer, and another customer and partner.
	var second fullDataJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": bid}, 201, &second)
	e.network(t, second.CardNo).auth(100)
	cid2, bid2 := p.verifiedCustomer(t, "Otto")
	var otherCard fullDataJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cid2+"/cards/virtual", map[string]string{"balanceId": bid2}, 201, &otherCard)
	q := e.newProgram("otherbank", "45671288", "DEPOSIT", 0)

	secondTxns := p.c.allTransactions("/secure/customers/"+cid+"/cards/"+second.ID+"/transactions", 20)
	if len(secondTxns) != 1 || secondTxns[0].Status != "pending" || secondTxns[0].CardID != second.ID {
		t.Fatalf("second card: %+v", secondTxns)
	}
	foreignHold := secondTxns[0].ID
	foreignDecline := ""
	for _, g := range p.c.allTransactions(balPaths[p.c], 50) {
		if g.Status == "declined" {
			foreignDecline = g.ID
		}
	}
	for _, tt := range []struct {
		name, cursor string
	}{
		{"not an id", "nonsense"},
		{"bad base64", "txn_!!!"},
		{"unknown kind", "txn_" + "eHl6"},
		{"unknown hold", "txn_aGhsZF9ub25l"},
		{"another card's hold", foreignHold},
		{"a journal entry of another partner", "txn_" + base64.RawURLEncoding.EncodeToString([]byte("j1.otherbank"))},
		{"a journal entry that is no transaction", "txn_" + base64.RawURLEncoding.EncodeToString([]byte("j1.txnbank"))},
	} {
		t.Run("cursor "+tt.name, func(t *testing.T) {
			r := p.c.do("GET", cardPaths[p.c]+"?starting_after="+url.QueryEscape(tt.cursor), nil, invalidRequest)
			if r.status != 400 || r.code() != "INVALID_CURSOR" {
				t.Fatalf("status %d %s, want 400 INVALID_CURSOR", r.status, r.body)
			}
		})
	}
	// The decline is a transaction of the balance but not of the second card.
	if r := p.c.do("GET", "/secure/customers/"+cid+"/cards/"+second.ID+"/transactions?starting_after="+foreignDecline, nil); r.status != 400 || r.code() != "INVALID_CURSOR" {
		t.Fatalf("a decline of another card as cursor: %d %s", r.status, r.body)
	}
	if r := p.c.do("GET", "/secure/customers/"+cid+"/balances/"+bid+"/transactions?starting_after="+foreignDecline, nil); r.status != 200 {
		t.Fatalf("the balance's own decline as cursor: %d %s", r.status, r.body)
	}
	if r := p.c.do("GET", "/secure/customers/"+cid2+"/balances/"+bid2+"/transactions?starting_after="+foreignDecline, nil); r.status != 400 {
		t.Fatalf("another balance's decline as cursor: %d %s", r.status, r.body)
	}
	// One transaction: what is not a transaction of the card is 404.
	reload := ""
	for _, g := range p.c.allTransactions(balPaths[p.c], 50) {
		if g.Type == "reload" {
			reload = g.ID
		}
	}
	for name, tt := range map[string]struct {
		c    *client
		path string
	}{
		"malformed":               {p.c, onePaths[p.c] + "nonsense"},
		"unknown hold":            {p.c, onePaths[p.c] + "txn_aGhsZF9ub25l"},
		"another card's hold":     {p.c, onePaths[p.c] + foreignHold},
		"another card's decline":  {p.c, "/secure/customers/" + cid + "/cards/" + second.ID + "/transactions/" + foreignDecline},
		"a reload":                {emp, onePaths[emp] + reload},
		"another partner's entry": {emp, onePaths[emp] + "txn_" + base64.RawURLEncoding.EncodeToString([]byte("j1.otherbank"))},
		"an entry that is no txn": {emp, onePaths[emp] + "txn_" + base64.RawURLEncoding.EncodeToString([]byte("j1.txnbank"))},
		"another customer's card": {p.session(t, cid2), "/customers/me/cards/" + full.ID + "/transactions/" + listed[0].ID},
		"another partner's card":  {q.c, onePaths[p.c] + listed[0].ID},
	} {
		r := tt.c.do("GET", tt.path, nil)
		if r.status != 404 || (tt.c != q.c && name != "another customer's card" && r.code() != "TRANSACTION_NOT_FOUND") {
			t.Errorf("%s: %d %s, want 404 TRANSACTION_NOT_FOUND", name, r.status, r.body)
		}
	}
	if r := p.c.do("GET", cardPaths[p.c]+"?limit=0", nil, invalidRequest); r.status != 400 || r.code() != "VALIDATION_ERROR" {
		t.Fatalf("limit=0: %d %s", r.status, r.body)
	}
	if r := p.c.do("GET", cardPaths[p.c]+"?limit=101", nil, invalidRequest); r.status != 400 {
		t.Fatalf("limit=101: %d %s", r.status, r.body)
	}

	// Other tenants: 404 as everywhere.
	other := p.session(t, cid2)
	for _, tt := range []struct {
		c    *client
		path string
	}{
		{other, "/customers/me/cards/" + full.ID + "/transactions"},
		{other, "/customers/me/balances/" + bid + "/transactions"},
		{p.c, "/secure/customers/" + cid2 + "/cards/" + full.ID + "/transactions"},
		{p.c, "/secure/customers/" + cid2 + "/balances/" + bid + "/transactions"},
		{q.c, "/secure/customers/" + cid + "/cards/" + full.ID + "/transactions"},
		{q.c, "/secure/customers/" + cid + "/balances/" + bid + "/transactions"},
		{q.c, "/secure/customers/" + cid + "/cards"},
		{emp, "/admin/cards/crd_nope/transactions"},
		{emp, "/admin/balances/bal_nope/transactions"},
	} {
		if r := tt.c.do("GET", tt.path, nil); r.status != 404 {
			t.Errorf("%s: %d %s, want 404", tt.path, r.status, r.body)
		}
	}
}
