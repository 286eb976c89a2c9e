package bench

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/antaca/antaca/simulator"
)

// hotPath is the decision path on the real Redis: ledger, engine and a
// seeded program.
type hotPath struct {
	ledger *ledger.Ledger
	engine *authz.Engine
	cards  []simulator.Card
	keys   *cardcrypto.Keys
}

func newHotPath(tb testing.TB) *hotPath {
	tb.Helper()
	rdb, prefix := ledgertest.MustRedis(tb)
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix})
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if err := l.Preload(ctx); err != nil {
		tb.Fatal(err)
	}
	keys, err := cardcrypto.LoadOrCreate(filepath.Join(tb.TempDir(), "keys"))
	if err != nil {
		tb.Fatal(err)
	}
	iss := &simulator.DirectIssuer{Ledger: l, Issuing: &issuing.Service{Store: l, Keys: keys}}
	f, err := simulator.Seed(ctx, iss, simulator.SeedOptions{Customers: 20, Virtual: 2, Funds: 100_000_000_000, PartnerFunds: 100_000_000_000_000})
	if err != nil {
		tb.Fatal(err)
	}
	// As the switch does after its start-up recovery: Redis holds the state.
	if err := l.MarkReady(ctx); err != nil {
		tb.Fatal(err)
	}
	le := &ledger.Engine{L: l, Token: keys.LookupToken}
	return &hotPath{ledger: l, keys: keys, cards: f.Cards,
		engine: &authz.Engine{Ledger: le, PIN: keys, Limits: authz.Limits{MaxAmount: 500_000}, Logger: slog.New(slog.DiscardHandler)}}
}

var seq atomic.Uint64

// parallelism is goroutines per processor in the parallel benchmarks: the
// switch serves many requests at once, so ns/op is the inverse of a
// throughput with requests in flight, not the latency of one.
const parallelism = 8

// request is a fresh 0100 on one of the seeded cards.
func (h *hotPath) request(i uint64) *authz.Request {
	c := h.cards[i%uint64(len(h.cards))]
	n := seq.Add(1)
	return &authz.Request{Kind: authz.KindAuthorization, MTI: "0100", PAN: c.PAN, TxnType: authz.TxnPurchase, Amount: 100,
		Currency: "978", Expiry: c.Expiry, TransmissionTime: "0101000000", STAN: fmt.Sprintf("%06d", n%999_999+1),
		AcquirerID: "123456", RRN: fmt.Sprintf("B%011d", n), ReceivedAt: time.Now()}
}

// BenchmarkDecision is one authorization decided by authz.Engine with
// ledger.Engine on the real Redis: card lookup by PAN token, the card
// checks, and the atomic reserve script.
func BenchmarkDecision(b *testing.B) {
	h := newHotPath(b)
	ctx := context.Background()
	var failed atomic.Value
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var i uint64
		for pb.Next() {
			i++
			d := h.engine.Authorize(ctx, h.request(i))
			if d.Reason != authz.ReasonApproved {
				failed.Store(d.Reason)
			}
		}
	})
	if r := failed.Load(); r != nil {
		b.Fatalf("a decision was %v, want APPROVED", r)
	}
}

// BenchmarkEndToEndISO is an authorization over loopback TCP: the
// simulator's links -> iso.Server -> authz.Engine -> Redis and back.
func BenchmarkEndToEndISO(b *testing.B) {
	h := newHotPath(b)
	srv, err := iso.New(iso.Config{Addr: "127.0.0.1:0"}, h.engine)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(context.Background()) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	ctx := context.Background()
	n, err := simulator.Connect(ctx, simulator.NetworkConfig{Addr: srv.Addr().String(), Links: 4})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	if err := n.WaitUp(ctx, 4); err != nil {
		b.Fatal(err)
	}
	var failed atomic.Value
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var i int
		for pb.Next() {
			i++
			c := h.cards[i%len(h.cards)]
			t := simulator.Txn{MTI: "0100", PAN: c.PAN, Amount: 100, Currency: "978", Expiry: c.Expiry}
			msg, err := n.Build(&t)
			if err != nil {
				failed.Store(err.Error())
				return
			}
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := n.Send(sctx, msg)
			cancel()
			if err != nil {
				failed.Store(err.Error())
				return
			}
			if code, _ := resp.GetString(39); code != "0000" {
				failed.Store("DE39 " + code)
			}
		}
	})
	b.StopTimer()
	if f := failed.Load(); f != nil {
		b.Fatalf("end to end: %v", f)
	}
}
