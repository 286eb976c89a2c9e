package ledger_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/api/decision"
	"github.com/antaca/antaca/api/signing"
	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// partnerBackend is a program's decisioning backend whose answer the test
// sets.
type partnerBackend struct {
	srv    *httptest.Server
	mu     sync.Mutex
	answer func(w http.ResponseWriter, txn authz.PartnerTxn)
	calls  atomic.Int64
	badSig atomic.Int64
}

func newPartnerBackend(t *testing.T, secret string) *partnerBackend {
	b := &partnerBackend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		sig := r.Header.Get(signing.Header)
		ts := strings.TrimPrefix(strings.Split(sig, ",")[0], "t=")
		var sec int64
		_ = json.Unmarshal([]byte(ts), &sec)
		if sig == "" || sig != signing.Sign(secret, time.Unix(sec, 0), body) {
			b.badSig.Add(1)
		}
		var txn authz.PartnerTxn
		_ = json.Unmarshal(body, &txn)
		b.mu.Lock()
		f := b.answer
		b.mu.Unlock()
		f(w, txn)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *partnerBackend) set(f func(w http.ResponseWriter, txn authz.PartnerTxn)) {
	b.mu.Lock()
	b.answer = f
	b.mu.Unlock()
}

func reply(body string) func(w http.ResponseWriter, txn authz.PartnerTxn) {
	return func(w http.ResponseWriter, _ authz.PartnerTxn) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

// withRemote gives the controlled card's program a backend and a stand-in
// policy, and the engine a decision client.
func withRemote(t *testing.T, c *controlled, standIn authz.StandIn, timeout time.Duration, cfg decision.Config) (*partnerBackend, *prometheus.Registry) {
	t.Helper()
	ctx := context.Background()
	p, err := c.l.Program(ctx, c.partner, c.prg)
	must(t, err)
	b := newPartnerBackend(t, "sekret")
	p.RemoteURL, p.RemoteSecret, p.StandIn, p.DecisionTimeoutMS = b.srv.URL, "sekret", standIn, timeout.Milliseconds()
	must(t, c.l.UpdateProgram(ctx, p))
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	c.eng.Programs, c.eng.Decider = c.led, decision.New(cfg)
	return b, reg
}

func lastMeta(t *testing.T, c *controlled) map[string]any {
	t.Helper()
	opts, err := redis.ParseURL(ledgertest.RedisURL())
	must(t, err)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	msgs, err := rdb.XRevRangeN(context.Background(), c.l.Keys().Journal(c.partner), "+", "-", 1).Result()
	must(t, err)
	var m map[string]any
	_ = json.Unmarshal([]byte(msgs[0].Values["meta"].(string)), &m)
	return m
}

// TestPartnerDecides: the backend's answers approve, decline, approve in
// part and fund just in time; a slow, failing or garbled backend leaves
// the decision to the stand-in policy. Money is conserved in every case.
func TestPartnerDecides(t *testing.T) {
	t.Parallel()
	c := newControlled(t, "48300001", 1_000, time.Now())
	b, reg := withRemote(t, c, authz.StandIn{Policy: authz.StandInApprove, Amount: 500}, 200*time.Millisecond, decision.Config{BreakerFailures: 100})
	slow := func(w http.ResponseWriter, txn authz.PartnerTxn) {
		time.Sleep(600 * time.Millisecond)
		reply(`{"approved": true}`)(w, txn)
	}
	cases := []struct {
		name      string
		answer    func(http.ResponseWriter, authz.PartnerTxn)
		amount    int64
		want      authz.Reason
		approved  int64
		decidedBy string
		availDiff int64 // change of the user's available
	}{
		{"approve", reply(`{"approved": true}`), 100, authz.ReasonApproved, 100, "partner", -100},
		{"decline", reply(`{"approved": false, "reason": "budget\nexceeded"}`), 100, authz.ReasonPartnerDeclined, 0, "partner", 0},
		{"partial", reply(`{"approved": true, "amount": 60}`), 100, authz.ReasonApprovedPartial, 60, "partner", -60},
		{"fund", reply(`{"approved": true, "fund": 5000}`), 4000, authz.ReasonApproved, 4000, "partner", 1000},
		{"slow: stand-in approves up to 500, funding the shortfall", slow, 400, authz.ReasonApproved, 400, "stand_in", -400},
		{"500: stand-in", func(w http.ResponseWriter, _ authz.PartnerTxn) { w.WriteHeader(500) }, 300, authz.ReasonApproved, 300, "stand_in", -300},
		{"garbage: stand-in", reply(`<html>oops</html>`), 200, authz.ReasonApproved, 200, "stand_in", -200},
		{"partial above the amount is garbage: stand-in", reply(`{"approved": true, "amount": 900}`), 200, authz.ReasonApproved, 200, "stand_in", -200},
		{"stand-in above its amount declines", reply(`{}`), 600, authz.ReasonStandInDeclined, 0, "stand_in", 0},
	}
	for _, tc := range cases {
		b.set(tc.answer)
		before := c.user(t, 0)
		pb := c.partnerBalance(t)
		d := c.authorize(c.req(tc.amount))
		if d.Reason != tc.want || d.Amount != tc.approved {
			t.Errorf("%s: %s %d, want %s %d", tc.name, d.Reason, d.Amount, tc.want, tc.approved)
		}
		after := c.user(t, 0)
		if got := after.Available - before.Available; got != tc.availDiff {
			t.Errorf("%s: available moved %d, want %d", tc.name, got, tc.availDiff)
		}
		if m := lastMeta(t, c); m["decided_by"] != tc.decidedBy {
			t.Errorf("%s: decided_by %v, want %s", tc.name, m["decided_by"], tc.decidedBy)
		}
		funded := pb.Available - c.partnerBalance(t).Available
		if tc.name == "fund" && funded != 5000 {
			t.Errorf("fund: partner credit charged %d, want 5000", funded)
		}
		c.checkMoney(t)
	}
	if m := lastMeta(t, c); m["decided_by"] != "stand_in" {
		t.Errorf("last meta %v", m)
	}
	if n := b.badSig.Load(); n != 0 {
		t.Errorf("%d requests with a wrong signature", n)
	}
	if got := counterSum(t, reg, "antaca_partner_stand_in_total", "cause", "timeout"); got != 1 {
		t.Errorf("stand-in for timeouts = %v, want 1", got)
	}
}

func counterSum(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// TestPartnerCircuitAndIsolation: after BreakerFailures failures in a row
// the backend is not asked any more and stand-in decides at once; a
// backend holding MaxInFlight requests gets no more (busy: stand-in).
func TestPartnerCircuitAndIsolation(t *testing.T) {
	t.Parallel()
	c := newControlled(t, "48300002", 100_000, time.Now())
	b, reg := withRemote(t, c, authz.StandIn{Policy: authz.StandInApproveIfFunded}, 500*time.Millisecond,
		decision.Config{BreakerFailures: 3, BreakerCooldown: time.Hour, MaxInFlight: 2})
	b.set(func(w http.ResponseWriter, _ authz.PartnerTxn) { w.WriteHeader(503) })
	for i := range 3 {
		if d := c.authorize(c.req(10)); d.Reason != authz.ReasonApproved {
			t.Fatalf("failure %d: %s, want approved by stand-in", i, d.Reason)
		}
	}
	calls := b.calls.Load()
	for range 5 {
		if d := c.authorize(c.req(10)); d.Reason != authz.ReasonApproved {
			t.Fatalf("open circuit: %s", d.Reason)
		}
	}
	if b.calls.Load() != calls {
		t.Fatalf("the backend was asked %d times with its circuit open", b.calls.Load()-calls)
	}
	if got := counterSum(t, reg, "antaca_partner_stand_in_total", "cause", "circuit_open"); got != 5 {
		t.Errorf("circuit_open stand-ins = %v, want 5", got)
	}
	c.checkMoney(t)

	// Bounded concurrency, on a second card program-alike: a fresh client.
	c2 := newControlled(t, "48300003", 100_000, time.Now())
	release := make(chan struct{})
	b2, reg2 := withRemote(t, c2, authz.StandIn{Policy: authz.StandInDecline}, 2*time.Second, decision.Config{MaxInFlight: 2})
	var entered sync.WaitGroup
	entered.Add(2)
	b2.set(func(w http.ResponseWriter, txn authz.PartnerTxn) {
		entered.Done()
		<-release
		reply(`{"approved": true}`)(w, txn)
	})
	var wg sync.WaitGroup
	results := make([]authz.Reason, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c2.authorize(c2.req(10)).Reason
		}()
	}
	entered.Wait()
	if d := c2.authorize(c2.req(10)); d.Reason != authz.ReasonStandInDeclined {
		t.Errorf("third while two are in flight: %s, want %s", d.Reason, authz.ReasonStandInDeclined)
	}
	close(release)
	wg.Wait()
	for i, r := range results {
		if r != authz.ReasonApproved {
			t.Errorf("in flight %d: %s", i, r)
		}
	}
	if got := counterSum(t, reg2, "antaca_partner_stand_in_total", "cause", "busy"); got != 1 {
		t.Errorf("busy stand-ins = %v, want 1", got)
	}
	c2.checkMoney(t)
}
