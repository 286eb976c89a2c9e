package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// controlled is a partner with a BIN (so a default program), one card and
// a switch engine on a clock the test moves.
type controlled struct {
	*program
	eng   *authz.Engine
	led   *ledger.Engine
	card  string
	pan   string
	prg   string
	clock atomic.Int64 // unix ms
	stan  atomic.Int64
}

func newControlled(t *testing.T, bin string, userFunds int64, start time.Time) *controlled {
	t.Helper()
	ctx := context.Background()
	c := &controlled{}
	c.clock.Store(start.UnixMilli())
	rdb, prefix := ledgertest.MustRedis(t)
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix, Now: func() time.Time { return time.UnixMilli(c.clock.Load()) }})
	must(t, err)
	p := &program{l: l, partner: ledgertest.UniqueName("ctl"), currency: "EUR"}
	must(t, l.CreatePartner(ctx, ledger.Partner{ID: p.partner, Name: "Test", BIN: bin, Currency: "EUR", FundingModel: ledger.FundingCredit}))
	p.pbal = ledger.NewID("pbl")
	must(t, l.CreatePartnerBalance(ctx, p.partner, p.pbal, ledger.FundingCredit, "EUR", 0))
	p.pbalances = append(p.pbalances, p.pbal)
	_, err = l.ReloadPartnerBalance(ctx, p.partner, p.pbal, 100_000_000, "")
	must(t, err)
	p.customer = ledger.NewID("cus")
	must(t, l.CreateCustomer(ctx, ledger.Customer{ID: p.customer, PartnerID: p.partner, FirstName: "Ada"}))
	must(t, l.SetKYC(ctx, p.partner, p.customer, "VERIFIED"))
	p.addBalance(t, userFunds)
	c.program = p
	c.prg = ledger.DefaultProgramID(p.partner)
	c.pan = bin + "00000017"[:16-len(bin)]
	c.card = ledger.NewID("crd")
	must(t, l.CreateCard(ctx, ledger.Card{ID: c.card, PartnerID: p.partner, CustomerID: p.customer, BalanceID: p.balances[0],
		Type: "PHYSICAL", Status: "ACTIVE", PANHash: "tok-" + c.pan, BIN: bin, Last4: c.pan[len(c.pan)-4:], Expiry: "4912"}))
	c.led = &ledger.Engine{L: l, Token: func(pan string) string { return "tok-" + pan }, CardCacheTTL: -1}
	c.eng = &authz.Engine{Ledger: c.led, Now: func() time.Time { return time.UnixMilli(c.clock.Load()) }}
	return c
}

func (c *controlled) setClock(t time.Time) { c.clock.Store(t.UnixMilli()) }

// req is a purchase of amount at a merchant in Poland, contactless.
func (c *controlled) req(amount int64) *authz.Request {
	n := c.stan.Add(1)
	return &authz.Request{Kind: authz.KindAuthorization, MTI: "0100", PAN: c.pan, TxnType: authz.TxnPurchase, Amount: amount,
		Currency: "978", STAN: fmt.Sprintf("%06d", n), RRN: fmt.Sprintf("RRN%09d", n), TransmissionTime: "0101120000",
		AcquirerID: "123456", MCC: "5411", POSEntryMode: "071", MerchantCountry: "PL"}
}

func (c *controlled) authorize(r *authz.Request) authz.Decision {
	return c.eng.Authorize(context.Background(), r)
}

func (c *controlled) setCard(t *testing.T, ctl authz.Controls) {
	t.Helper()
	must(t, c.l.SetCardControls(context.Background(), c.partner, c.card, &ctl, nil))
}

func (c *controlled) usage(t *testing.T, ctl authz.Controls) []authz.WindowUsage {
	t.Helper()
	p, err := c.l.Program(context.Background(), c.partner, c.prg)
	must(t, err)
	u, err := c.l.Usage(context.Background(), c.partner, c.card, ctl, p)
	must(t, err)
	return u
}

func TestControlsEachControl(t *testing.T) {
	t.Parallel()
	c := newControlled(t, "48100001", 1_000_000, time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC))
	ctl := authz.Controls{PerTransactionMax: 5000, MCCBlock: []string{"7995"}, CountriesBlock: []string{"KP"}, ChannelsBlock: []string{"atm", "ecommerce"},
		Limits: []authz.Limit{{Interval: authz.IntervalDay, Amount: 10000}, {Interval: authz.IntervalWeek, Count: 3}}}
	c.setCard(t, ctl)
	cases := []struct {
		name string
		mod  func(r *authz.Request)
		want authz.Reason
	}{
		{"per transaction max", func(r *authz.Request) { r.Amount = 5001 }, authz.ReasonControlTransactionMax},
		{"blocked MCC", func(r *authz.Request) { r.MCC = "7995" }, authz.ReasonControlMCC},
		{"blocked country from DE43", func(r *authz.Request) { r.MerchantCountry = "KP" }, authz.ReasonControlCountry},
		{"blocked country from DE19", func(r *authz.Request) { r.MerchantCountry, r.AcquirerCountry = "", "408" }, authz.ReasonControlCountry},
		{"blocked channel ecommerce", func(r *authz.Request) { r.POSEntryMode = "812" }, authz.ReasonControlChannel},
		{"blocked channel atm", func(r *authz.Request) { r.TxnType = authz.TxnCash }, authz.ReasonControlChannel},
		{"no DE22: channel unknown passes", func(r *authz.Request) { r.POSEntryMode = "" }, authz.ReasonApproved},
		{"no DE43, no DE19: country unknown passes", func(r *authz.Request) { r.MerchantCountry = "" }, authz.ReasonApproved},
		{"within every control", func(r *authz.Request) {}, authz.ReasonApproved},
		{"week count reached", func(r *authz.Request) {}, authz.ReasonControlCountLimit},
	}
	for _, tc := range cases {
		r := c.req(1000)
		tc.mod(r)
		if d := c.authorize(r); d.Reason != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, d.Reason, tc.want)
		}
	}
	// Three approvals of 1000: declines counted nothing.
	u := c.usage(t, ctl)
	if u[0].Spent != 3000 || u[0].Count != 3 || u[1].Count != 3 || *u[0].RemainingAmount != 7000 || *u[1].RemainingCount != 0 {
		t.Fatalf("usage = %+v %+v", u[0], u[1])
	}
	// The day's amount: a new week (count) but the same limits otherwise.
	ctl.Limits[1].Count = 100
	c.setCard(t, ctl)
	if d := c.authorize(c.req(5000)); d.Reason != authz.ReasonApproved {
		t.Fatalf("5000 within the day: %s", d.Reason)
	}
	if d := c.authorize(c.req(2001)); d.Reason != authz.ReasonControlAmountLimit {
		t.Fatalf("over the day's amount: %s, want %s", d.Reason, authz.ReasonControlAmountLimit)
	}
	if d := c.authorize(c.req(2000)); d.Reason != authz.ReasonApproved {
		t.Fatalf("exactly the day's amount: %s", d.Reason)
	}
	// An allow list fails a transaction without DE18.
	c.setCard(t, authz.Controls{MCCAllow: []string{"5411"}})
	r := c.req(10)
	r.MCC = ""
	if d := c.authorize(r); d.Reason != authz.ReasonControlMCC {
		t.Errorf("no MCC against an allow list: %s", d.Reason)
	}
	if d := c.authorize(c.req(10)); d.Reason != authz.ReasonApproved {
		t.Errorf("allowed MCC: %s", d.Reason)
	}
	// Program defaults apply to a card without its own.
	must(t, c.l.SetCardControls(context.Background(), c.partner, c.card, nil, nil))
	must(t, c.l.SetProgramControls(context.Background(), c.partner, c.prg, authz.Controls{MCCBlock: []string{"5411"}}))
	if d := c.authorize(c.req(10)); d.Reason != authz.ReasonControlMCC {
		t.Errorf("program's block list: %s", d.Reason)
	}
	c.checkMoney(t)
}

// TestControlsWindowsAndReversal: day, week and month windows turn at
// midnight in the program's time zone, all_time never; a reversal and an
// expiry give the amount back.
func TestControlsWindowsAndReversal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Sunday 31 August 2025, 21:59:59 UTC = 23:59:59 in Warsaw (UTC+2):
	// the last second of the day, the week and the month there, while in
	// UTC two hours of all three remain.
	last := time.Date(2025, 8, 31, 21, 59, 59, 0, time.UTC)
	c := newControlled(t, "48100002", 1_000_000, last)
	p, err := c.l.Program(ctx, c.partner, c.prg)
	must(t, err)
	p.TimeZone = "Europe/Warsaw"
	must(t, c.l.UpdateProgram(ctx, p))
	for _, iv := range []authz.Interval{authz.IntervalDay, authz.IntervalWeek, authz.IntervalMonth, authz.IntervalAllTime} {
		t.Run(string(iv), func(t *testing.T) {
			c.setClock(last)
			c.setCard(t, authz.Controls{Limits: []authz.Limit{{Interval: iv, Amount: 100}}})
			if d := c.authorize(c.req(100)); d.Reason != authz.ReasonApproved {
				t.Fatalf("first 100: %s", d.Reason)
			}
			if d := c.authorize(c.req(1)); d.Reason != authz.ReasonControlAmountLimit {
				t.Fatalf("1 more in the same window: %s", d.Reason)
			}
			c.setClock(last.Add(time.Second)) // Monday 1 September, midnight in Warsaw
			d := c.authorize(c.req(100))
			want := authz.ReasonApproved
			if iv == authz.IntervalAllTime {
				want = authz.ReasonControlAmountLimit
			}
			if d.Reason != want {
				t.Fatalf("after midnight: %s, want %s", d.Reason, want)
			}
			// The windows restart for the next subtest (new card counters
			// come from a new key only at a window change): give back.
			if d.Approved() {
				if _, err := c.led.Void(ctx, c.partner, d.HoldID, 0, "", ""); err != nil {
					t.Fatal(err)
				}
			}
		})
	}

	// Reversal gives back: a fresh card limit in a new month.
	c.setClock(time.Date(2025, 10, 6, 10, 0, 0, 0, time.UTC))
	ctl := authz.Controls{Limits: []authz.Limit{{Interval: authz.IntervalMonth, Amount: 300, Count: 10}}}
	c.setCard(t, ctl)
	first := c.req(300)
	if d := c.authorize(first); d.Reason != authz.ReasonApproved {
		t.Fatalf("300: %s", d.Reason)
	}
	if d := c.authorize(c.req(50)); d.Reason != authz.ReasonControlAmountLimit {
		t.Fatalf("over the month: %s", d.Reason)
	}
	rev := &authz.Request{Kind: authz.KindReversal, MTI: "0400", PAN: c.pan, TxnType: authz.TxnPurchase, Amount: 300, Currency: "978",
		STAN: "900001", RRN: first.RRN, TransmissionTime: "0101120500", AcquirerID: "123456",
		Original: &authz.OriginalData{MTI: "0100", STAN: first.STAN, TransmissionTime: first.TransmissionTime, AcquirerID: "123456"}}
	repl := int64(100)
	rev.ReplacementAmount = &repl // partial: 200 back
	if d := c.authorize(rev); d.Reason != authz.ReasonReversalAccepted || d.Amount != 200 {
		t.Fatalf("partial reversal: %s %d", d.Reason, d.Amount)
	}
	u := c.usage(t, ctl)
	if u[0].Spent != 100 || u[0].Count != 1 {
		t.Fatalf("after the partial reversal: spent %d count %d, want 100 and 1", u[0].Spent, u[0].Count)
	}
	held := c.authorize(c.req(200))
	if held.Reason != authz.ReasonApproved {
		t.Fatalf("200 after the reversal: %s", held.Reason)
	}
	// Expiry gives back too.
	c.setClock(time.Date(2025, 10, 20, 10, 0, 0, 0, time.UTC))
	n, err := c.l.ExpireHolds(ctx, c.partner, 7*24*time.Hour, 100)
	must(t, err)
	if n < 2 {
		t.Fatalf("expired %d holds, want 2", n)
	}
	if u := c.usage(t, ctl); u[0].Spent != 0 || u[0].Count != 2 {
		t.Fatalf("after expiry: spent %d count %d, want 0 and 2", u[0].Spent, u[0].Count)
	}
	c.checkMoney(t)
}

// TestControlsExactUnderConcurrency: 1,000 authorizations at once against a
// daily count of 500 approve exactly 500.
func TestControlsExactUnderConcurrency(t *testing.T) {
	t.Parallel()
	c := newControlled(t, "48100003", 1_000_000, time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC))
	ctl := authz.Controls{Limits: []authz.Limit{{Interval: authz.IntervalDay, Amount: 500, Count: 500}}}
	c.setCard(t, ctl)
	var approved, limited atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for range 1000 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			switch d := c.authorize(c.req(1)); d.Reason {
			case authz.ReasonApproved:
				approved.Add(1)
			case authz.ReasonControlAmountLimit, authz.ReasonControlCountLimit:
				limited.Add(1)
			default:
				t.Errorf("unexpected %s", d.Reason)
			}
		}()
	}
	wg.Wait()
	if approved.Load() != 500 || limited.Load() != 500 {
		t.Fatalf("approved %d, limited %d; want 500 and 500", approved.Load(), limited.Load())
	}
	if u := c.usage(t, ctl); u[0].Spent != 500 || u[0].Count != 500 {
		t.Fatalf("usage %+v", u[0])
	}
	if b := c.user(t, 0); b.Held != 500 || b.Available != 1_000_000-500 {
		t.Fatalf("balance %+v", b)
	}
	c.checkMoney(t)
}

// TestRoutingByRange: programs of two partners with ranges of different
// lengths; every PAN goes to the program whose range holds it, in process.
func TestRoutingByRange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newControlled(t, "48200001", 1000, time.Now())
	l := a.l
	// A second partner on the same Redis prefix.
	bID := ledgertest.UniqueName("rtb")
	must(t, l.CreatePartner(ctx, ledger.Partner{ID: bID, Name: "B", Currency: "EUR", FundingModel: ledger.FundingCredit}))
	must(t, l.CreateProgram(ctx, authz.Program{ID: ledger.NewID("prg"), PartnerID: bID, Name: "B wide", Currency: "EUR",
		Ranges: []authz.BINRange{{From: "482001", To: "482001"}, {From: "4830000", To: "4830099"}}}))
	// Overlaps are refused, whatever their length.
	for _, r := range []authz.BINRange{{From: "48200001", To: "48200001"}, {From: "482000", To: "482000"}, {From: "48300990", To: "48301000"}} {
		err := l.CreateProgram(ctx, authz.Program{ID: ledger.NewID("prg"), PartnerID: bID, Name: "X", Currency: "EUR", Ranges: []authz.BINRange{r}})
		if err == nil {
			t.Errorf("range %v overlapping: created", r)
		}
	}
	for pan, want := range map[string]string{
		"4820000112345678": a.partner, "4820019912345678": bID, "4830042112345678": bID,
	} {
		info, err := a.led.FindCard(ctx, pan)
		if want == a.partner && pan == a.pan {
			must(t, err)
		}
		// Unknown cards of a routed partner are "not found" after routing:
		// the partner is what matters here.
		_ = info
		route, ok := authz.NewRouteTable(mustRoutes(t, l)).Lookup(pan)
		if !ok || route.PartnerID != want {
			t.Errorf("%s routes to %+v, want %s", pan, route, want)
		}
	}
	if _, ok := authz.NewRouteTable(mustRoutes(t, l)).Lookup("4830100012345678"); ok {
		t.Error("a PAN outside every range routed")
	}
	if d := a.authorize(a.req(10)); d.Reason != authz.ReasonApproved || d.PartnerID != a.partner {
		t.Errorf("authorization on a routed card: %s %s", d.Reason, d.PartnerID)
	}
}

func mustRoutes(t *testing.T, l *ledger.Ledger) []authz.Route {
	t.Helper()
	r, err := l.Routes(context.Background())
	must(t, err)
	return r
}
