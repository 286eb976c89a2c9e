package app_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/iso/isoclient"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// approval is an answer 0000 the network received.
type approval struct {
	rrn, card string
	amount    int64
}

// loadResult is what a paced load saw, answer by answer.
type loadResult struct {
	mu        sync.Mutex
	approved  []approval
	codes     map[string]int
	errors    int
	firstBack time.Time // the first approval after markedAt, if any
	markedAt  time.Time
}

func (r *loadResult) add(code string, a approval, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors++
		return
	}
	r.codes[code]++
	if code == "0000" {
		r.approved = append(r.approved, a)
		if !r.markedAt.IsZero() && r.firstBack.IsZero() {
			r.firstBack = time.Now()
		}
	}
}

// mark starts watching for the first approval from now on.
func (r *loadResult) mark() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.markedAt, r.firstBack = time.Now(), time.Time{}
}

// runLoad sends 0100s of amount 1 at rate per second over the cards,
// spread over links, until stop is closed. A send that fails (the switch
// did not answer in time) counts as an error, never as an approval.
func runLoad(t *testing.T, h *harness, res *loadResult, cards []testCard, rate int, stop <-chan struct{}) {
	t.Helper()
	links := make([]*isoclient.Client, 4)
	for i := range links {
		links[i] = h.client("cmf")
	}
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			wg.Wait()
			return
		case <-tick.C:
		}
		c := links[i%len(links)]
		card := cards[i%len(cards)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			rrn := newRRN()
			m := c.NewMessage("0100")
			de7 := time.Now().UTC().Format("0102150405")
			for id, v := range map[int]string{2: card.PAN, 3: "000000", 4: "000000000001", 7: de7, 11: c.NextSTAN(),
				12: de7[4:], 13: de7[:4], 18: "5411", 22: "051", 32: acquirer, 37: rrn, 41: "TERM0001",
				42: "MERCHANT0000001", 49: "978"} {
				if err := m.Field(id, v); err != nil {
					res.add("", approval{}, err)
					return
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := c.Send(ctx, m)
			code := ""
			if err == nil {
				code, err = resp.GetString(39)
			}
			res.add(code, approval{rrn: rrn, card: card.ID, amount: 1}, err)
		}()
	}
}

// assertNoApprovalLost wants, for every approval the network received, its
// hold in Postgres: still open, of the approved amount.
func assertNoApprovalLost(t *testing.T, h *harness, res *loadResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, h.App.FlushJournal(ctx))
	lost := 0
	for _, a := range res.approved {
		var (
			state  string
			amount int64
		)
		err := h.App.Pool.QueryRow(ctx, `SELECT state, amount FROM holds WHERE reference = $1`, a.rrn+"|"+a.card).Scan(&state, &amount)
		if err != nil || state != "OPEN" || amount != a.amount {
			lost++
			if lost <= 5 {
				t.Errorf("approval RRN %s on %s: hold in postgres state %q amount %d (%v), want OPEN %d", a.rrn, a.card, state, amount, err, a.amount)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d approvals the network received are not in postgres", lost, len(res.approved))
	}
}

func durableCards(t *testing.T, h *harness, n int) (*program, []testCard) {
	t.Helper()
	p := h.newProgram(ledger.FundingCredit, 10_000_000, 1_000_000)
	cards := make([]testCard, n)
	for i := range cards {
		cards[i] = p.virtualCard(p.balance)
	}
	return p, cards
}

// TestRedisRestartLosesNoApproval restarts a Redis without persistence
// under 300 authorizations a second, in the default mode (answers after
// the Postgres commit). Every approval the network received must be found
// afterwards, and the rebuilt Redis must agree with Postgres.
func TestRedisRestartLosesNoApproval(t *testing.T) {
	r := startPrivateRedis(t, 0)
	h := startApp(t, func(c *app.Config) {
		c.RedisURL = "redis://" + r.addr() + "/0"
		c.ISODeadline = 500 * time.Millisecond
	})
	p, cards := durableCards(t, h, 10)
	stop := make(chan struct{})
	res := &loadResult{codes: map[string]int{}}
	done := make(chan struct{})
	go func() { runLoad(t, h, res, cards, 300, stop); close(done) }()

	time.Sleep(1500 * time.Millisecond)
	r.stop() // kill -9: everything Redis held is gone
	startPrivateRedis(t, r.port)
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	t.Logf("answers %v, send errors %d, approvals %d", res.codes, res.errors, len(res.approved))
	if len(res.approved) < 100 {
		t.Fatalf("only %d approvals: the load did not run", len(res.approved))
	}
	if h.App.Rebuilds() < 1 {
		t.Fatal("the switch did not rebuild redis")
	}
	assertNoApprovalLost(t, h, res)
	p.checkMoney()
	h.audit("after the redis restart")
	// The restarted Redis's cleanup runs before the harness's: drain now.
	h.shutdown(t)
}

// TestPostgresOutage cuts Postgres off for a while under load: the network
// gets 9112 while it is down, no approval is lost, and approvals resume
// once it is back.
func TestPostgresOutage(t *testing.T) {
	proxy := ledgertest.NewTCPProxy(t, "127.0.0.1:5432")
	h := startApp(t, func(c *app.Config) {
		c.DatabaseURL = ledgertest.URLVia(t, c.DatabaseURL, proxy.Addr())
		c.ISODeadline = 300 * time.Millisecond
	})
	p, cards := durableCards(t, h, 10)
	stop := make(chan struct{})
	res := &loadResult{codes: map[string]int{}}
	done := make(chan struct{})
	go func() { runLoad(t, h, res, cards, 200, stop); close(done) }()

	time.Sleep(time.Second)
	proxy.Stop()
	down := time.Now()
	time.Sleep(time.Second) // let the in-flight ones settle
	res.mu.Lock()
	before := res.codes["0000"]
	res.mu.Unlock()
	time.Sleep(4 * time.Second)
	res.mu.Lock()
	during := res.codes["0000"] - before
	res.mu.Unlock()
	proxy.Start(t)
	back := time.Now()
	res.mark()
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	res.mu.Lock()
	resumed := res.firstBack.Sub(back)
	res.mu.Unlock()
	t.Logf("postgres down %s; answers %v, send errors %d; approvals while down %d; first approval %s after it returned",
		back.Sub(down).Round(time.Millisecond), res.codes, res.errors, during, resumed.Round(time.Millisecond))
	if during != 0 {
		t.Errorf("%d approvals while postgres was down, want 0 (answers wait for the commit)", during)
	}
	if res.codes["9112"] == 0 {
		t.Error("no 9112 while postgres was down")
	}
	if res.firstBack.IsZero() {
		t.Fatal("no approval after postgres returned")
	}
	assertNoApprovalLost(t, h, res)
	p.checkMoney()
	h.audit("after the postgres outage")
}

// TestPostgresDownThenRedisLost is the worst case for a journal that trails
// the answers: Postgres unreachable, and Redis restarted without its data
// inside that window. Answers that waited for Postgres were 9112 all along,
// so none of the approvals the network received is lost.
func TestPostgresDownThenRedisLost(t *testing.T) {
	r := startPrivateRedis(t, 0)
	proxy := ledgertest.NewTCPProxy(t, "127.0.0.1:5432")
	h := startApp(t, func(c *app.Config) {
		c.RedisURL = "redis://" + r.addr() + "/0"
		c.DatabaseURL = ledgertest.URLVia(t, c.DatabaseURL, proxy.Addr())
		c.ISODeadline = 300 * time.Millisecond
	})
	p, cards := durableCards(t, h, 10)
	stop := make(chan struct{})
	res := &loadResult{codes: map[string]int{}}
	done := make(chan struct{})
	go func() { runLoad(t, h, res, cards, 200, stop); close(done) }()

	time.Sleep(time.Second)
	proxy.Stop()
	time.Sleep(1500 * time.Millisecond)
	r.stop()
	startPrivateRedis(t, r.port)
	time.Sleep(1500 * time.Millisecond)
	proxy.Start(t)
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	t.Logf("answers %v, send errors %d, approvals %d", res.codes, res.errors, len(res.approved))
	if len(res.approved) < 100 {
		t.Fatalf("only %d approvals: the load did not run", len(res.approved))
	}
	assertNoApprovalLost(t, h, res)
	p.checkMoney()
	h.audit("after the outage and the redis restart")
	h.shutdown(t)
}
