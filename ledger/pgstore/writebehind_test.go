package pgstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestWriteBehindMirrorsRedis plays two partner programs (one per funding
// model), flushes, and wants Postgres to hold exactly the Redis rows, every
// event once in the journal, and the streams trimmed.
func TestWriteBehindMirrorsRedis(t *testing.T) {
	fx := newFixture(t)
	fx.seedProgram(t, "pa", "DEPOSIT", "400001")
	fx.seedProgram(t, "pb", "CREDIT", "400002")
	w, reg := fx.worker(t, "w1")
	ctx := ctxT(t, 20*time.Second)

	if n, _, err := w.Lag(ctx); err != nil || n != 2*seedEvents {
		t.Fatalf("Lag before flush = %d, %v; want %d (%d events per partner)", n, err, 2*seedEvents, seedEvents)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	fx.assertMirrors(t)
	fx.assertJournal(t, "pa", seedEvents)
	fx.assertJournal(t, "pb", seedEvents)

	n, age, err := w.Lag(ctx)
	if err != nil || n != 0 || age != 0 {
		t.Fatalf("Lag after flush = %d, %s, %v; want 0, 0, nil", n, age, err)
	}
	for _, p := range []string{"pa", "pb"} {
		// Trimmed to the last delivered entry, which trimming keeps.
		if l, err := fx.rdb.XLen(ctx, fx.keys.Journal(p)).Result(); err != nil || l > 1 {
			t.Errorf("journal stream of %s holds %d entries after flush (%v), want at most 1", p, l, err)
		}
	}
	if got := counterValue(t, reg, "antaca_writebehind_events_total", map[string]string{"result": "applied"}); got != 2*seedEvents {
		t.Errorf("events_total{applied} = %v, want %d", got, 2*seedEvents)
	}
	if got := counterValue(t, reg, "antaca_writebehind_lag_entries", nil); got != 0 {
		t.Errorf("lag_entries gauge = %v, want 0", got)
	}

	// The journal keeps the event as the scripts wrote it.
	var typ string
	var changes string
	if err := fx.pool.QueryRow(ctx, `SELECT type, changes::text FROM journal WHERE partner_id = 'pa' AND seq = 3`).Scan(&typ, &changes); err != nil {
		t.Fatal(err)
	}
	if typ != "reload_partner" || !strings.Contains(changes, `"total_in": "1000000"`) {
		t.Errorf("journal pa/3 = %s %s, want the reload_partner event with its total_in add", typ, changes)
	}
}

// TestWriteBehindReplay re-adds entries Postgres already holds (as a Redis
// that replays its journal would) and wants nothing to change.
func TestWriteBehindReplay(t *testing.T) {
	fx := newFixture(t)
	fx.seedProgram(t, "pa", "DEPOSIT", "400001")
	ctx := ctxT(t, 20*time.Second)
	entries, err := fx.rdb.XRange(ctx, fx.keys.Journal("pa"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	w, reg := fx.worker(t, "w1")
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	before := fx.dumpPG(t)

	for _, e := range entries {
		if err := fx.rdb.XAdd(ctx, &redis.XAddArgs{Stream: fx.keys.Journal("pa"), Values: e.Values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush of the replay: %v", err)
	}
	if d := diffDumps(fx.dumpPG(t), before); len(d) > 0 {
		t.Fatalf("replaying the journal changed rows:\n%s", strings.Join(d, "\n"))
	}
	fx.assertJournal(t, "pa", int64(len(entries)))
	if got := counterValue(t, reg, "antaca_writebehind_events_total", map[string]string{"result": "duplicate"}); got != float64(len(entries)) {
		t.Errorf("events_total{duplicate} = %v, want %d", got, len(entries))
	}
}

var errCrash = errors.New("simulated crash")

// TestWriteBehindCrash stops a worker mid-batch in the two dangerous places
// and restarts it (or another one), and wants every event exactly once.
func TestWriteBehindCrash(t *testing.T) {
	tests := []struct {
		name string
		// crash sets the hook that makes the first worker fail.
		crash func(w *WriteBehind)
		// restart is the consumer that takes over, and how long it must
		// wait before it may reclaim.
		consumer string
		minIdle  time.Duration
	}{
		{name: "after read, restarted under the same name", crash: func(w *WriteBehind) { w.afterRead = func() error { return errCrash } },
			consumer: "w1", minIdle: time.Hour},
		{name: "after read, reclaimed by another worker", crash: func(w *WriteBehind) { w.afterRead = func() error { return errCrash } },
			consumer: "w2", minIdle: 150 * time.Millisecond},
		{name: "after commit before ack, reclaimed by another worker", crash: func(w *WriteBehind) { w.afterApply = func() error { return errCrash } },
			consumer: "w2", minIdle: 150 * time.Millisecond},
		{name: "after commit before ack, restarted under the same name", crash: func(w *WriteBehind) { w.afterApply = func() error { return errCrash } },
			consumer: "w1", minIdle: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			ctx := ctxT(t, 20*time.Second)
			fx.seedProgram(t, "pa", "DEPOSIT", "400001")

			w1, _ := fx.worker(t, "w1", func(o *Options) { o.BatchSize = 5 })
			tt.crash(w1)
			if _, err := w1.ProcessOnce(ctx); !errors.Is(err, errCrash) {
				t.Fatalf("first worker: err = %v, want the simulated crash", err)
			}
			if n, _, _ := w1.Lag(ctx); n == 0 {
				t.Fatal("after the crash nothing is pending; the test crashed too late")
			}

			w2, reg := fx.worker(t, tt.consumer, func(o *Options) { o.ReclaimMinIdle = tt.minIdle })
			if err := w2.Flush(ctx); err != nil {
				t.Fatalf("Flush by %s: %v", tt.consumer, err)
			}
			fx.assertMirrors(t)
			fx.assertJournal(t, "pa", seedEvents)
			applied := counterValue(t, reg, "antaca_writebehind_events_total", map[string]string{"result": "applied"})
			dup := counterValue(t, reg, "antaca_writebehind_events_total", map[string]string{"result": "duplicate"})
			if applied+dup != seedEvents {
				t.Errorf("second worker acknowledged %v applied + %v duplicate, want %d in all", applied, dup, seedEvents)
			}
		})
	}
}

// TestWriteBehindKeepsStreamOrder: entries read by a worker that died block
// the later entries another worker reads, until they are reclaimed and
// applied first.
func TestWriteBehindKeepsStreamOrder(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 20*time.Second)
	p := "pa"
	for i := range 5 {
		fx.emit(t, p, "create", chg{T: "customers", ID: "c1", Set: map[string]string{"first_name": "v" + string(rune('0'+i)), "email": "e" + string(rune('0'+i))}})
	}
	dead, _ := fx.worker(t, "dead")
	dead.afterRead = func() error { return errCrash }
	if _, err := dead.ProcessOnce(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("dead worker: err = %v, want the simulated crash", err)
	}
	// Later events only set first_name: applied before the older ones,
	// "set where v < version" would keep the old email forever.
	for i := 5; i < 8; i++ {
		fx.emit(t, p, "rename", chg{T: "customers", ID: "c1", Set: map[string]string{"first_name": "v" + string(rune('0'+i))}})
	}
	live, _ := fx.worker(t, "live", func(o *Options) { o.ReclaimMinIdle = time.Second })
	n, err := live.ProcessOnce(ctx)
	if err != nil {
		t.Fatalf("live worker: %v", err)
	}
	if n != 0 {
		t.Fatalf("live worker acknowledged %d entries while older ones were pending elsewhere, want 0", n)
	}
	if got := fx.journalSeqs(t, p); len(got) != 0 {
		t.Fatalf("journal holds %v before the older entries were reclaimed, want nothing", got)
	}
	if err := live.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	fx.assertMirrors(t)
	fx.assertJournal(t, p, 8)
}

// TestWriteBehindPostgresOutage cuts Postgres off under a running worker,
// writes events meanwhile, brings it back and wants the lag to drain with
// nothing lost.
func TestWriteBehindPostgresOutage(t *testing.T) {
	fx := newFixture(t)
	proxy := newTCPProxy(t, "127.0.0.1:5432")
	ctx := ctxT(t, 30*time.Second)
	pool, err := OpenPool(ctx, urlVia(t, fx.dbURL, proxy.addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	w, reg := fx.worker(t, "w1", func(o *Options) { o.Pool = pool })

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := w.Run(runCtx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { stop(); wg.Wait() })

	fx.seedProgram(t, "pa", "DEPOSIT", "400001")
	waitFor(t, 10*time.Second, "the first program to reach postgres", func() bool {
		return len(fx.journalSeqs(t, "pa")) == seedEvents
	})

	proxy.stop()
	fx.seedProgram(t, "pb", "DEPOSIT", "400002")
	waitFor(t, 10*time.Second, "postgres errors to be counted", func() bool {
		return counterValue(t, reg, "antaca_writebehind_errors_total", map[string]string{"stage": "postgres"}) >= 2
	})
	if n, _, err := w.Lag(ctx); err != nil || n != seedEvents {
		t.Fatalf("lag during the outage = %d, %v; want the %d events of pb", n, err, seedEvents)
	}
	if l := fx.rdb.XLen(ctx, fx.keys.Journal("pb")).Val(); l != seedEvents {
		t.Fatalf("pb stream holds %d entries during the outage, want all %d (nothing trimmed)", l, seedEvents)
	}

	proxy.start(t)
	waitFor(t, 15*time.Second, "the lag to drain", func() bool {
		n, _, err := w.Lag(ctx)
		return err == nil && n == 0
	})
	stop()
	wg.Wait()
	fx.assertMirrors(t)
	fx.assertJournal(t, "pa", seedEvents)
	fx.assertJournal(t, "pb", seedEvents)
}

// TestWriteBehindRefusesInvalidEntry: an entry naming an unknown table is
// not applied and not skipped; it holds back its partner only, and Flush
// names it.
func TestWriteBehindRefusesInvalidEntry(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 20*time.Second)
	fx.emit(t, "pa", "create", chg{T: "customers", ID: "c1", Set: map[string]string{"first_name": "Ada"}})
	if err := fx.rdb.XAdd(ctx, &redis.XAddArgs{Stream: fx.keys.Journal("pa"), Values: map[string]any{
		"seq": "2", "type": "bogus", "ts": "1", "ch": `[{"t":"cardz","id":"x","v":"1","set":{"status":"A"}}]`}}).Err(); err != nil {
		t.Fatal(err)
	}
	must(t, fx.rdb.Set(ctx, fx.keys.Seq("pa"), 2, 0).Err())
	fx.emit(t, "pa", "rename", chg{T: "customers", ID: "c1", Set: map[string]string{"first_name": "Grace"}})
	fx.emit(t, "pb", "create", chg{T: "customers", ID: "c2", Set: map[string]string{"first_name": "Linus"}})

	w, reg := fx.worker(t, "w1")
	err := w.Flush(ctx)
	if err == nil || !strings.Contains(err.Error(), `unknown table "cardz"`) {
		t.Fatalf("Flush error = %v, want it to name the unknown table", err)
	}
	fx.assertJournal(t, "pa", 1)
	fx.assertJournal(t, "pb", 1)
	if n, _, _ := w.Lag(ctx); n != 2 {
		t.Errorf("lag = %d, want 2 (the refused entry and the one behind it)", n)
	}
	if l := fx.rdb.XLen(ctx, fx.keys.Journal("pa")).Val(); l < 2 {
		t.Errorf("pa stream holds %d entries, want the refused one and the one after it kept", l)
	}
	if got := counterValue(t, reg, "antaca_writebehind_errors_total", map[string]string{"stage": "rejected"}); got != 1 {
		t.Errorf("errors_total{rejected} = %v, want 1 (logged once)", got)
	}
}

// TestWriteBehindRefusesReusedSeq plays a Redis failover that lost the last
// events Postgres already holds: the partner's sequence runs again over used
// numbers. Those events must not vanish as "already applied": the worker
// refuses them loudly and holds that partner back, others carry on.
func TestWriteBehindRefusesReusedSeq(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 20*time.Second)
	fx.emit(t, "pa", "create", chg{T: "customers", ID: "c1", Set: map[string]string{"first_name": "Ada"}})
	fx.emit(t, "pa", "rename", chg{T: "customers", ID: "c1", Set: map[string]string{"first_name": "Grace"}})
	w, reg := fx.worker(t, "w1")
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	must(t, fx.rdb.Set(ctx, fx.keys.Seq("pa"), 1, 0).Err()) // the replica had seen only seq 1
	if seq := fx.emit(t, "pa", "rename", chg{T: "customers", ID: "c1", Set: map[string]string{"first_name": "Linus"}}); seq != 2 {
		t.Fatalf("reused seq = %d, want 2", seq)
	}
	fx.emit(t, "pb", "create", chg{T: "customers", ID: "c2", Set: map[string]string{"first_name": "Barbara"}})

	err := w.Flush(ctx)
	if err == nil || !strings.Contains(err.Error(), "already stored with other content") {
		t.Fatalf("Flush error = %v, want the sequence conflict named", err)
	}
	var name string
	must(t, fx.pool.QueryRow(ctx, `SELECT first_name FROM customers WHERE id = 'c1'`).Scan(&name))
	if name != "Grace" {
		t.Errorf("c1 first_name = %q, want %q (the conflicting event must not apply)", name, "Grace")
	}
	fx.assertJournal(t, "pa", 2)
	fx.assertJournal(t, "pb", 1)
	if n, _, _ := w.Lag(ctx); n != 1 {
		t.Errorf("lag = %d, want 1 (the refused entry stays)", n)
	}
	if got := counterValue(t, reg, "antaca_writebehind_errors_total", map[string]string{"stage": "rejected"}); got != 1 {
		t.Errorf("errors_total{rejected} = %v, want 1", got)
	}
}

// TestWriteBehindNewPartner: a partner added while the worker runs is found
// on the next refresh.
func TestWriteBehindNewPartner(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 20*time.Second)
	w, _ := fx.worker(t, "w1")
	if n, err := w.ProcessOnce(ctx); err != nil || n != 0 {
		t.Fatalf("ProcessOnce with no partners = %d, %v; want 0, nil", n, err)
	}
	fx.emit(t, "late", "create", chg{T: "customers", ID: "c1", Set: map[string]string{"first_name": "Ada"}})
	waitFor(t, 5*time.Second, "the new partner's event", func() bool {
		n, err := w.ProcessOnce(ctx)
		return err == nil && n == 1
	})
	fx.assertMirrors(t)
}

func TestNewWriteBehindValidates(t *testing.T) {
	fx := newFixture(t)
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "no redis", opts: Options{Pool: fx.pool}, wantErr: "Redis is required"},
		{name: "no pool", opts: Options{Redis: fx.rdb}, wantErr: "Pool (or Sink) is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewWriteBehind(tt.opts); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewWriteBehind error = %v, want %q", err, tt.wantErr)
			}
		})
	}
	w, err := NewWriteBehind(Options{Redis: fx.rdb, Pool: fx.pool})
	if err != nil {
		t.Fatal(err)
	}
	if w.group != DefaultGroup || w.batchSize != 500 || w.minIdle != 30*time.Second || w.block != time.Second || w.keys.Prefix != "antaca" || w.consumer == "" {
		t.Errorf("defaults = group %q batch %d minIdle %s block %s prefix %q consumer %q",
			w.group, w.batchSize, w.minIdle, w.block, w.keys.Prefix, w.consumer)
	}
}
