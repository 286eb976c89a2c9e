package pgstore

import (
	"context"
	"errors"
	"fmt"
	"github.com/antaca/antaca/ledger/ledgertest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/antaca/antaca/ledger"
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
		// Committed entries are deleted from the streams.
		if l, err := fx.rdb.XLen(ctx, fx.keys.Journal(p)).Result(); err != nil || l != 0 {
			t.Errorf("journal stream of %s holds %d entries after flush (%v), want none", p, l, err)
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

// TestWriteBehindCrash stops a write-behind after it committed a batch but
// before it deleted the entries from the stream, and before it committed
// anything at all; another one takes over, and every event is applied
// exactly once.
func TestWriteBehindCrash(t *testing.T) {
	tests := []struct {
		name  string
		crash func(w *WriteBehind)
	}{
		{name: "after commit, before the entries are deleted", crash: func(w *WriteBehind) { w.afterApply = func() error { return errCrash } }},
		{name: "before anything was committed", crash: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			ctx := ctxT(t, 20*time.Second)
			fx.seedProgram(t, "pa", "DEPOSIT", "400001")

			if tt.crash != nil {
				w1, _ := fx.worker(t, "w1", func(o *Options) { o.BatchSize = 5 })
				tt.crash(w1)
				if _, err := w1.ProcessOnce(ctx); !errors.Is(err, errCrash) {
					t.Fatalf("first worker: err = %v, want the simulated crash", err)
				}
				if n, _, _ := w1.Lag(ctx); n != seedEvents {
					t.Fatalf("after the crash %d entries are in the stream, want all %d", n, seedEvents)
				}
			}

			w2, reg := fx.worker(t, "w2")
			if err := w2.Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			fx.assertMirrors(t)
			fx.assertJournal(t, "pa", seedEvents)
			applied := counterValue(t, reg, "antaca_writebehind_events_total", map[string]string{"result": "applied"})
			dup := counterValue(t, reg, "antaca_writebehind_events_total", map[string]string{"result": "duplicate"})
			if applied+dup != seedEvents {
				t.Errorf("second worker committed %v applied + %v duplicate, want %d in all", applied, dup, seedEvents)
			}
			if tt.crash != nil && dup != 5 {
				t.Errorf("second worker found %v duplicates, want the 5 of the crashed batch", dup)
			}
		})
	}
}

// TestGroupCommit: Commit with wait returns once the entries are in
// Postgres, releases many waiters with few transactions, and deletes the
// committed entries from the stream; without wait it only queues.
func TestGroupCommit(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 20*time.Second)
	w, reg := fx.worker(t, "w1")
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(runCtx) }()
	t.Cleanup(func() { stop(); wg.Wait() })

	const n = 200
	var cw sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		cw.Add(1)
		go func() {
			defer cw.Done()
			seq := fx.emit(t, "pa", "create", chg{T: "customers", ID: fmt.Sprintf("c%d", i), Set: map[string]string{"first_name": "Ada"}})
			e := fx.lastEntry(t, "pa", seq)
			if err := w.Commit(ctx, []ledger.JournalEntry{e}, true); err != nil {
				errs <- err
				return
			}
			var got int
			if err := fx.pool.QueryRow(ctx, `SELECT count(*) FROM journal WHERE partner_id = 'pa' AND seq = $1`, seq).Scan(&got); err != nil || got != 1 {
				errs <- fmt.Errorf("entry %d not in postgres when Commit returned (%d, %v)", seq, got, err)
			}
		}()
	}
	cw.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	fx.assertJournal(t, "pa", n)
	batches := counterValue(t, reg, "antaca_writebehind_batches_total", nil)
	if batches < 1 || batches >= n {
		t.Errorf("%d waiters took %v commits, want fewer than one each", n, batches)
	}
	if l := fx.rdb.XLen(ctx, fx.keys.Journal("pa")).Val(); l != 0 {
		t.Errorf("stream holds %d entries after every commit returned, want 0", l)
	}
	// A barrier with nothing queued returns at once.
	if err := w.Commit(ctx, nil, true); err != nil {
		t.Errorf("barrier: %v", err)
	}
}

// TestCommitNotDurable: while Postgres is unreachable, a waiting Commit
// returns ErrNotDurable at its deadline, the entry stays queued and in the
// stream, Healthy turns false, and once Postgres is back the entry commits
// and Healthy turns true.
func TestCommitNotDurable(t *testing.T) {
	fx := newFixture(t)
	proxy := ledgertest.NewTCPProxy(t, "127.0.0.1:5432")
	ctx := ctxT(t, 30*time.Second)
	pool, err := OpenPool(ctx, ledgertest.URLVia(t, fx.dbURL, proxy.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	w, _ := fx.worker(t, "w1", func(o *Options) { o.Pool = pool; o.RetryMax = 50 * time.Millisecond })
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(runCtx) }()
	t.Cleanup(func() { stop(); wg.Wait() })

	proxy.Stop()
	seq := fx.emit(t, "pa", "create", chg{T: "customers", ID: "c1", Set: map[string]string{"first_name": "Ada"}})
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = w.Commit(dctx, []ledger.JournalEntry{fx.lastEntry(t, "pa", seq)}, true)
	cancel()
	if !errors.Is(err, ledger.ErrNotDurable) {
		t.Fatalf("Commit while postgres is down = %v, want ErrNotDurable", err)
	}
	waitFor(t, 5*time.Second, "the write-behind to report postgres down", func() bool { return !w.Healthy() })
	if l := fx.rdb.XLen(ctx, fx.keys.Journal("pa")).Val(); l != 1 {
		t.Fatalf("stream holds %d entries during the outage, want the 1 not committed", l)
	}
	proxy.Start(t)
	waitFor(t, 10*time.Second, "the queued entry to commit", func() bool {
		return w.Healthy() && len(fx.journalSeqs(t, "pa")) == 1
	})
	fx.assertMirrors(t)
}

// TestWriteBehindPostgresOutage cuts Postgres off under a running worker,
// writes events meanwhile, brings it back and wants the lag to drain with
// nothing lost.
func TestWriteBehindPostgresOutage(t *testing.T) {
	fx := newFixture(t)
	proxy := ledgertest.NewTCPProxy(t, "127.0.0.1:5432")
	ctx := ctxT(t, 30*time.Second)
	pool, err := OpenPool(ctx, ledgertest.URLVia(t, fx.dbURL, proxy.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	w, reg := fx.worker(t, "w1", func(o *Options) { o.Pool = pool; o.SweepAfter = time.Millisecond })

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

	proxy.Stop()
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

	proxy.Start(t)
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

// TestWriteBehindQuarantinesInvalidEntry: an entry naming an unknown table
// is moved to the quarantine with its error; its partner's later entries
// and other partners' entries are committed; Flush succeeds.
func TestWriteBehindQuarantinesInvalidEntry(t *testing.T) {
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
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := fx.journalSeqs(t, "pa"); len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Errorf("journal of pa = %v, want [1 3] (2 quarantined)", got)
	}
	fx.assertJournal(t, "pb", 1)
	fx.assertQuarantined(t, "pa", 2, `unknown table "cardz"`)
	if n, _, _ := w.Lag(ctx); n != 0 {
		t.Errorf("lag = %d, want 0", n)
	}
	if got := counterValue(t, reg, "antaca_journal_quarantined_total", nil); got != 1 {
		t.Errorf("quarantined_total = %v, want 1", got)
	}
}

// TestWriteBehindQuarantinesReusedSeq plays a Redis failover that lost the
// last events Postgres already holds: the partner's sequence runs again over
// used numbers. Those events must not vanish as "already applied": they are
// quarantined loudly, and the journal moves on.
func TestWriteBehindQuarantinesReusedSeq(t *testing.T) {
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

	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	var name string
	must(t, fx.pool.QueryRow(ctx, `SELECT first_name FROM customers WHERE id = 'c1'`).Scan(&name))
	if name != "Grace" {
		t.Errorf("c1 first_name = %q, want %q (the conflicting event must not apply)", name, "Grace")
	}
	fx.assertJournal(t, "pa", 2)
	fx.assertJournal(t, "pb", 1)
	fx.assertQuarantined(t, "pa", 2, "already stored with other content")
	if got := counterValue(t, reg, "antaca_journal_quarantined_total", nil); got != 1 {
		t.Errorf("quarantined_total = %v, want 1", got)
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
	if w.batchSize != 1000 || w.sweepAfter != 5*time.Second || w.sweepEvery != time.Second || w.retryMax != 250*time.Millisecond || w.keys.Prefix != "antaca" || !w.Healthy() {
		t.Errorf("defaults = batch %d sweepAfter %s sweepEvery %s retryMax %s prefix %q healthy %v",
			w.batchSize, w.sweepAfter, w.sweepEvery, w.retryMax, w.keys.Prefix, w.Healthy())
	}
}
