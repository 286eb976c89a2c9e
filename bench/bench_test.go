package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
	iss := &simulator.DirectIssuer{Ledger: l, Issuing: &issuing.Service{Ledger: l, Keys: keys}}
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

// TestMain lets this test binary play `antaca sim` when the bench starts
// it as its load generator child (`bench.test sim load ...`), as the
// antaca binary does for `antaca bench`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "sim" {
		if err := simulator.Command().ParseAndRun(context.Background(), os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBenchSmoke runs `antaca bench` in a tiny configuration: a real
// switch, every phase for a moment (closed loop, open loops, the CPU step
// with its child generator, overload and recovery, the audit),
// redis-benchmark on the captured scripts and pgbench. It checks that each
// phase measured something and that no approval was lost; it asserts no
// rate or latency.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a switch and external tools")
	}
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"--out", dir, "--redis-url", ledgertest.RedisURL(), "--admin-database-url", ledgertest.AdminDatabaseURL(),
		"--links", "2", "--cards", "4", "--in-flight", "8", "--warmup", "500ms", "--closed", "2s", "--open-step", "1s",
		"--open-levels", "0.1", "--cpu-rate", "100", "--cpu-duration", "1s", "--overload", "0.2", "--overload-duration", "1s",
		"--recovery", "0.05", "--recovery-duration", "1s",
		"--redis-requests", "5000", "--redis-clients", "10", "--pgbench-seconds", "2", "--pgbench-clients", "4"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := CommandWithOutput(&stdout, &stderr).ParseAndRun(ctx, args); err != nil {
		t.Fatalf("antaca bench: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	t.Log("\n" + out)
	for _, want := range []string{"closed loop", "reserve script, redis-benchmark -P 1", "reserve script, redis-benchmark -P 16",
		"card_by_pan", "pgbench", "CPU µs per approval", "overload", "audit after the overload", "bench.json", "bench.html"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("bench.json does not decode into bench.Result: %v\n%s", err, b)
	}
	if res.ClosedLoop == nil || res.ClosedLoop.Approvals == 0 {
		t.Fatalf("bench.json: the closed loop approved nothing: %+v", res.ClosedLoop)
	}
	// The auth profile's cards have funds for far more than the run:
	// every answer of the closed loop must be an approval.
	if f := res.ClosedLoop.Failures; total(f) > 0 {
		t.Errorf("closed loop failures %v, want none", f)
	}
	if len(res.OpenLoop) != 1 || res.OpenLoop[0].Report == nil || res.OpenLoop[0].Report.Answers == 0 {
		t.Errorf("bench.json: open loop = %+v, want one answered step", res.OpenLoop)
	}
	if res.CPU == nil || res.CPU.Approvals == 0 || res.CPU.USPerApproval["switch"] <= 0 || res.CPU.USPerApproval["generator"] <= 0 {
		t.Errorf("bench.json: cpu = %+v, want approvals and CPU of the switch and the generator", res.CPU)
	}
	if res.Overload == nil || res.Overload.Overload.Approvals == 0 || res.Overload.Recovery.Approvals == 0 {
		t.Errorf("bench.json: overload = %+v, want approvals in both phases", res.Overload)
	}
	if res.WriteBehind == nil || res.WriteBehind.Batches == 0 || res.WriteBehind.LagSamples == 0 {
		t.Errorf("bench.json: write_behind = %+v, want group commits and lag samples", res.WriteBehind)
	}
	if res.RedisStats == nil || res.RedisStats.Scripts["reserve"] < 0.9 {
		t.Errorf("bench.json: redis_commandstats = %+v, want about one reserve call per approval", res.RedisStats)
	}
	// Durability: the audit is clean and every approval the generator
	// received has its hold in Postgres.
	if res.Audit == nil || !res.Audit.Clean || res.Audit.Approvals == 0 || res.Audit.Lost != 0 {
		t.Errorf("bench.json: audit = %+v, want clean, approvals checked and none lost", res.Audit)
	}
	if res.Redis == nil || res.Redis.Rate <= 0 || res.RedisPipelined == nil || res.RedisPipelined.Rate <= 0 || res.Redis.USPerCall <= 0 {
		t.Errorf("bench.json: reserve script = %+v / %+v, want rates and µs per call", res.Redis, res.RedisPipelined)
	}
	if len(res.RedisScripts) == 0 {
		t.Errorf("bench.json: no other script measured")
	}
	if res.Postgres == nil || res.Postgres.Rate <= 0 {
		t.Errorf("bench.json: postgres_row_lock = %+v, want a rate > 0", res.Postgres)
	}
	for _, k := range []string{"closed_over_redis", "closed_over_redis_pipelined", "closed_over_postgres"} {
		if res.Ratios[k] <= 0 {
			t.Errorf("bench.json: ratios %v lack %s", res.Ratios, k)
		}
	}
	if !strings.Contains(stderr.String(), "closed loop") {
		t.Errorf("no progress:\n%s", stderr.String())
	}
}

// TestBenchFull is the real `antaca bench` run behind ANTACA_BENCH_E2E=1
// (results to ANTACA_BENCH_OUT, default a temporary directory).
func TestBenchFull(t *testing.T) {
	if os.Getenv("ANTACA_BENCH_E2E") == "" {
		t.Skip("set ANTACA_BENCH_E2E=1 for the full end-to-end benchmark (~3 min)")
	}
	out := os.Getenv("ANTACA_BENCH_OUT")
	if out == "" {
		out = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := CommandWithOutput(os.Stdout, os.Stderr).ParseAndRun(ctx, []string{"--out", out,
		"--redis-url", ledgertest.RedisURL(), "--admin-database-url", ledgertest.AdminDatabaseURL()}); err != nil {
		t.Fatal(err)
	}
}
