package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/antaca/antaca/ledger"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Options configures a WriteBehind. Redis and one of Pool or Sink are
// required; zero values of the rest take the defaults named.
type Options struct {
	// Redis holds the partner set and the journal streams.
	Redis redis.UniversalClient
	// Keys names the deployment's keys (Prefix "" means ledger.DefaultPrefix).
	Keys ledger.Keys
	// Pool is the Postgres database events are written to (through PGSink).
	Pool *pgxpool.Pool
	// Sink overrides where events go; when set, Pool is not used.
	Sink Sink
	// BatchSize is the most events committed in one transaction
	// (default 1000).
	BatchSize int
	// SweepInterval is how often the journal streams are searched for
	// entries no committer took (default 1s).
	SweepInterval time.Duration
	// SweepAfter is how old a stream entry must be before the sweep
	// recovers it (default 5s): younger ones are normally being committed
	// by the switch that wrote them.
	SweepAfter time.Duration
	// RetryMax caps the backoff between attempts while Postgres fails
	// (default 250ms, so that answers resume quickly once it is back).
	RetryMax time.Duration
	// MaxWait bounds how long Commit waits for durability when its
	// context has no earlier deadline (default 5s).
	MaxWait time.Duration
	// CommitInterval is the shortest time between the starts of two group
	// commits (0: commit as soon as anything is queued). An entry queued
	// while nothing was committed for that long is committed at once; under
	// load, what arrives meanwhile joins one batch, so Postgres pays for
	// fewer, larger transactions and the answers wait at most that much
	// longer. A full batch (BatchSize) does not wait.
	CommitInterval time.Duration
	// MaxQueue is the most entries queued in memory; beyond it new entries
	// that nobody waits for are left to the sweep (default 200,000).
	MaxQueue int
	// Committed, when set, is given every batch of events once it is
	// committed (quarantined ones left out), in the committer's goroutine:
	// it must return quickly (RecentJournal.Add).
	Committed func([]Event)
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives progress and failures; nil discards them.
	Logger *slog.Logger
}

// WriteBehind makes the partners' journals durable in Postgres. It
// implements ledger.Journal.
//
// Group commit: every script returns the journal entries it appended, and
// the ledger hands them to Commit. A single committer takes everything
// queued — what arrived while the previous transaction ran — and commits it
// as one batch (Sink.Apply: idempotent by event id), then releases the
// waiting answers together and deletes the committed entries from the
// streams (XDEL). Entries are committed in the order they were queued, and
// a batch that fails stays at the head of the queue until it commits, so
// one switch never applies a partner's events out of order.
//
// Recovery: the streams keep every entry until it is committed. The sweep
// takes entries older than SweepAfter that this process does not hold (a
// switch that crashed between its script and its commit) and commits them
// the same way. Flush does it for every entry at once.
//
// Poison: an entry Postgres refuses (or that does not validate) is found by
// splitting the failed batch, and moved to the quarantine table with its
// error (metric antaca_journal_quarantined_total, alert); every other entry,
// of every partner, moves on. What Postgres cannot store in text or jsonb
// (NUL, invalid UTF-8) is encoded losslessly before that (docs/ledger.md).
type WriteBehind struct {
	rdb        redis.UniversalClient
	keys       ledger.Keys
	sink       Sink
	batchSize  int
	sweepEvery time.Duration
	sweepAfter time.Duration
	retryMax   time.Duration
	maxWait    time.Duration
	interval   time.Duration
	maxQueue   int
	log        *slog.Logger
	m          *metrics

	mu      sync.Mutex // guards the queue
	queue   []*submission
	queued  int                 // entries in queue
	inQueue map[string]struct{} // "stream id" of the queued entries
	wake    chan struct{}

	cmu     sync.Mutex // one commit at a time
	healthy atomic.Bool

	// committed is Options.Committed; quarantinedNow holds what the batch
	// being committed sent to the quarantine (under cmu).
	committed      func([]Event)
	quarantinedNow map[EventID]bool

	// Test hooks: simulate a crash after committing to Postgres but before
	// the entries are deleted from the streams.
	afterApply func() error
}

// submission is what one Commit call queued.
type submission struct {
	entries []ledger.JournalEntry
	queued  time.Time
	done    chan struct{} // closed when committed; nil when nobody waits
	err     error         // set before done is closed
}

// NewWriteBehind checks opts and fills in the defaults. The committer and
// the sweep run in Run; Flush steps them without it.
func NewWriteBehind(opts Options) (*WriteBehind, error) {
	if opts.Redis == nil {
		return nil, errors.New("write-behind: Options.Redis is required")
	}
	sink := opts.Sink
	if sink == nil {
		if opts.Pool == nil {
			return nil, errors.New("write-behind: Options.Pool (or Sink) is required")
		}
		sink = NewPGSink(opts.Pool)
	}
	w := &WriteBehind{
		rdb:        opts.Redis,
		keys:       opts.Keys,
		sink:       sink,
		batchSize:  opts.BatchSize,
		sweepEvery: opts.SweepInterval,
		sweepAfter: opts.SweepAfter,
		retryMax:   opts.RetryMax,
		maxWait:    opts.MaxWait,
		interval:   max(opts.CommitInterval, 0),
		maxQueue:   opts.MaxQueue,
		log:        opts.Logger,
		committed:  opts.Committed,
		m:          newMetrics(opts.Registerer),
		inQueue:    map[string]struct{}{},
		wake:       make(chan struct{}, 1),
	}
	if w.keys.Prefix == "" {
		w.keys.Prefix = ledger.DefaultPrefix
	}
	if w.batchSize <= 0 {
		w.batchSize = 1000
	}
	if w.sweepEvery <= 0 {
		w.sweepEvery = time.Second
	}
	if w.sweepAfter <= 0 {
		w.sweepAfter = 5 * time.Second
	}
	if w.retryMax <= 0 {
		w.retryMax = 250 * time.Millisecond
	}
	if w.maxWait <= 0 {
		w.maxWait = 5 * time.Second
	}
	if w.maxQueue <= 0 {
		w.maxQueue = 200_000
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("component", "writebehind")
	w.healthy.Store(true)
	w.m.healthy.Set(1)
	return w, nil
}

var _ ledger.Journal = (*WriteBehind)(nil)

// Commit implements ledger.Journal.
func (w *WriteBehind) Commit(ctx context.Context, entries []ledger.JournalEntry, wait bool) error {
	sub := &submission{entries: entries, queued: time.Now()}
	if wait {
		sub.done = make(chan struct{})
	}
	w.mu.Lock()
	if !wait && w.queued+len(entries) > w.maxQueue {
		// Nobody waits for these; they stay in the streams for the sweep.
		w.mu.Unlock()
		w.m.errors.WithLabelValues(stageOverflow).Add(float64(len(entries)))
		return nil
	}
	if !wait && len(entries) == 0 {
		w.mu.Unlock()
		return nil
	}
	w.queue = append(w.queue, sub)
	w.queued += len(entries)
	for _, e := range entries {
		w.inQueue[entryKey(w.keys.Journal(e.PartnerID), e.StreamID)] = struct{}{}
	}
	n := w.queued
	w.mu.Unlock()
	w.m.queue.Set(float64(n))
	select {
	case w.wake <- struct{}{}:
	default:
	}
	if !wait {
		return nil
	}
	timer := time.NewTimer(w.maxWait)
	defer timer.Stop()
	select {
	case <-sub.done:
		w.m.commitWait.Observe(time.Since(sub.queued).Seconds())
		return sub.err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ledger.ErrNotDurable, ctx.Err())
	case <-timer.C:
		return fmt.Errorf("%w: not committed within %s", ledger.ErrNotDurable, w.maxWait)
	}
}

// Healthy reports whether the last attempt to commit succeeded. While it
// is false the switch answers "issuer unavailable" at once instead of
// changing Redis for an answer that could not be made durable.
func (w *WriteBehind) Healthy() bool { return w.healthy.Load() }

func entryKey(stream, id string) string { return stream + " " + id }

// Run commits and sweeps until ctx is done, then returns nil. Failures of
// Redis or Postgres are logged, counted and retried with backoff; nothing is
// lost meanwhile: queued entries stay queued, and every entry stays in its
// stream until it is committed. On shutdown, call Flush with a deadline.
func (w *WriteBehind) Run(ctx context.Context) error {
	w.log.Info("write-behind running", "batch", w.batchSize, "sweep_after", w.sweepAfter)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.commitLoop(ctx)
	}()
	t := time.NewTicker(w.sweepEvery)
	defer t.Stop()
	for ctx.Err() == nil {
		if _, err := w.sweep(ctx, false); err != nil && ctx.Err() == nil {
			w.log.Warn("journal sweep failed; retrying", "err", err)
		}
		if _, _, err := w.Lag(ctx); err != nil && ctx.Err() == nil {
			w.log.Debug("measuring lag", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	wg.Wait()
	w.log.Info("write-behind stopped")
	return nil
}

// commitLoop commits whatever is queued, as soon as it is queued, but at
// most once per CommitInterval unless a full batch is waiting.
func (w *WriteBehind) commitLoop(ctx context.Context) {
	var (
		backoff time.Duration
		started time.Time
	)
	probe := time.NewTicker(w.retryMax)
	defer probe.Stop()
	for ctx.Err() == nil {
		if wait := w.interval - time.Since(started); wait > 0 && !w.batchFull() {
			sleepCtx(ctx, wait)
		}
		started = time.Now()
		n, err := w.commitPending(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = nextBackoff(backoff, w.retryMax)
			w.log.Warn("journal commit failed; retrying", "err", err, "retry_in", backoff)
			sleepCtx(ctx, backoff)
			continue
		}
		backoff = 0
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-probe.C:
			if !w.healthy.Load() {
				w.probe(ctx)
			}
		}
	}
}

// batchFull reports whether a whole batch is queued.
func (w *WriteBehind) batchFull() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queued >= w.batchSize
}

// probe checks whether the durable store is back while nothing is queued
// (the switch refuses work while it is down, so nothing else would try).
func (w *WriteBehind) probe(ctx context.Context) {
	p, ok := w.sink.(interface{ Ping(context.Context) error })
	if !ok {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, w.retryMax)
	defer cancel()
	if err := p.Ping(pctx); err == nil {
		w.setHealthy(true)
		w.log.Info("journal store reachable again")
	}
}

func (w *WriteBehind) setHealthy(ok bool) {
	w.healthy.Store(ok)
	if ok {
		w.m.healthy.Set(1)
	} else {
		w.m.healthy.Set(0)
	}
}

// pendingEvent is a queued entry, decoded, with where it came from.
type pendingEvent struct {
	ev    Event
	entry ledger.JournalEntry
	sub   *submission
}

// commitPending commits one batch from the head of the queue and returns
// how many entries it took off the queue.
func (w *WriteBehind) commitPending(ctx context.Context) (int, error) {
	w.cmu.Lock()
	defer w.cmu.Unlock()
	w.quarantinedNow = nil

	w.mu.Lock()
	var (
		subs    []*submission
		entries int
	)
	for _, s := range w.queue {
		if len(subs) > 0 && entries+len(s.entries) > w.batchSize {
			break
		}
		subs = append(subs, s)
		entries += len(s.entries)
	}
	w.mu.Unlock()
	if len(subs) == 0 {
		return 0, nil
	}

	evs := make([]pendingEvent, 0, entries)
	for _, s := range subs {
		for _, e := range s.entries {
			ev, err := ParseJournalEntry(e)
			if err != nil {
				if qerr := w.quarantine(ctx, e, ev.Seq, err); qerr != nil {
					return 0, w.fail(stagePostgres, qerr)
				}
				s.err = fmt.Errorf("%w: journal entry quarantined: %v", ledger.ErrNotDurable, err)
				continue
			}
			evs = append(evs, pendingEvent{ev: ev, entry: e, sub: s})
		}
	}
	t0 := time.Now()
	applied, err := w.applyIsolating(ctx, evs)
	if err != nil {
		w.setHealthy(false)
		return 0, w.fail(stagePostgres, err)
	}
	if len(evs) > 0 {
		w.m.batchTime.Observe(time.Since(t0).Seconds())
		w.m.batches.Inc()
		w.m.batchSize.Observe(float64(len(evs)))
	}
	w.m.events.WithLabelValues("applied").Add(float64(applied))
	w.m.events.WithLabelValues("duplicate").Add(float64(len(evs) - applied))
	if !w.healthy.Load() {
		w.log.Info("journal commits resumed")
	}
	w.setHealthy(true)

	ids := map[string][]string{}
	w.mu.Lock()
	w.queue = w.queue[len(subs):]
	if len(w.queue) == 0 {
		w.queue = nil // let the backing array go
	}
	for _, s := range subs {
		w.queued -= len(s.entries)
		for _, e := range s.entries {
			st := w.keys.Journal(e.PartnerID)
			delete(w.inQueue, entryKey(st, e.StreamID))
			ids[st] = append(ids[st], e.StreamID)
		}
	}
	n := w.queued
	w.mu.Unlock()
	w.m.queue.Set(float64(n))
	for _, s := range subs {
		if s.done != nil {
			close(s.done)
		}
	}
	// After the answers are released: nobody waits for this.
	if w.committed != nil {
		done := make([]Event, 0, len(evs))
		for _, p := range evs {
			if !w.quarantinedNow[EventID{p.ev.PartnerID, p.ev.Seq}] {
				done = append(done, p.ev)
			}
		}
		w.committed(done)
	}
	if w.afterApply != nil {
		if err := w.afterApply(); err != nil {
			return len(subs), err
		}
	}
	if err := w.deleteCommitted(ctx, ids); err != nil {
		// Harmless: the sweep commits them again (a duplicate changes
		// nothing) and deletes them then.
		w.m.errors.WithLabelValues(stageRedis).Inc()
		w.log.Warn("deleting committed journal entries", "err", err)
	}
	return max(len(subs), 1), nil
}

// applyIsolating applies evs; when Postgres refuses the batch for its
// content, it splits it to find the entries at fault, quarantines them and
// applies the rest, in order. It returns an error only for failures worth
// retrying (Postgres unreachable, a deadlock ...).
func (w *WriteBehind) applyIsolating(ctx context.Context, evs []pendingEvent) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	batch := make([]Event, len(evs))
	for i := range evs {
		batch[i] = evs[i].ev
	}
	applied, err := w.sink.Apply(ctx, batch)
	if err == nil {
		return applied, nil
	}
	var conflict *ConflictError
	if errors.As(err, &conflict) {
		bad := map[EventID]bool{}
		for _, id := range conflict.Events {
			bad[id] = true
		}
		rest := make([]pendingEvent, 0, len(evs))
		for _, p := range evs {
			if bad[EventID{p.ev.PartnerID, p.ev.Seq}] {
				qerr := fmt.Errorf("event %s/%d: %w", p.ev.PartnerID, p.ev.Seq, errSeqReused)
				if err := w.quarantine(ctx, p.entry, p.ev.Seq, qerr); err != nil {
					return 0, err
				}
				p.sub.err = fmt.Errorf("%w: journal entry quarantined: %v", ledger.ErrNotDurable, qerr)
				continue
			}
			rest = append(rest, p)
		}
		if len(rest) == len(evs) {
			return 0, err // nothing identified: retry as a whole
		}
		return w.applyIsolating(ctx, rest)
	}
	if !refused(err) || ctx.Err() != nil {
		return 0, err
	}
	if len(evs) == 1 {
		if qerr := w.quarantine(ctx, evs[0].entry, evs[0].ev.Seq, err); qerr != nil {
			return 0, qerr
		}
		evs[0].sub.err = fmt.Errorf("%w: journal entry quarantined: %v", ledger.ErrNotDurable, err)
		return 0, nil
	}
	mid := len(evs) / 2
	a, err := w.applyIsolating(ctx, evs[:mid])
	if err != nil {
		return 0, err
	}
	b, err := w.applyIsolating(ctx, evs[mid:])
	return a + b, err
}

// quarantine moves an entry the journal cannot take aside, with its error.
func (w *WriteBehind) quarantine(ctx context.Context, e ledger.JournalEntry, seq int64, cause error) error {
	q, ok := w.sink.(Quarantiner)
	if !ok {
		return fmt.Errorf("journal entry %s/%s refused and the sink has no quarantine: %w", e.PartnerID, e.StreamID, cause)
	}
	if err := q.Quarantine(ctx, QuarantinedEntry{PartnerID: e.PartnerID, StreamID: e.StreamID, Seq: seq,
		Fields: e.Fields(), Err: cause.Error()}); err != nil {
		return fmt.Errorf("quarantining journal entry %s/%s: %w", e.PartnerID, e.StreamID, err)
	}
	w.m.quarantined.Inc()
	if w.quarantinedNow == nil {
		w.quarantinedNow = map[EventID]bool{}
	}
	w.quarantinedNow[EventID{e.PartnerID, seq}] = true
	w.log.Error("journal entry quarantined; the journal moves on without it",
		"partner", e.PartnerID, "stream_id", e.StreamID, "seq", seq, "err", cause)
	return nil
}

// deleteCommitted removes committed entries from their streams.
func (w *WriteBehind) deleteCommitted(ctx context.Context, ids map[string][]string) error {
	if len(ids) == 0 {
		return nil
	}
	pipe := w.rdb.Pipeline()
	for s, list := range ids {
		pipe.XDel(ctx, s, list...)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// sweep queues the stream entries no committer holds: those older than
// SweepAfter, or every one when all is set. It returns how many it queued.
func (w *WriteBehind) sweep(ctx context.Context, all bool) (int, error) {
	partners, err := partnerIDs(ctx, w.rdb, w.keys)
	if err != nil {
		return 0, w.fail(stageRedis, err)
	}
	if len(partners) == 0 {
		return 0, nil
	}
	end := "+"
	if !all {
		now, err := w.rdb.Time(ctx).Result()
		if err != nil {
			return 0, w.fail(stageRedis, fmt.Errorf("reading redis time: %w", err))
		}
		end = strconv.FormatInt(now.Add(-w.sweepAfter).UnixMilli(), 10)
	}
	pipe := w.rdb.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(partners))
	for i, p := range partners {
		cmds[i] = pipe.XRangeN(ctx, w.keys.Journal(p), "-", end, int64(w.batchSize))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, w.fail(stageRedis, fmt.Errorf("reading journal streams: %w", err))
	}
	queued := 0
	for i, p := range partners {
		stream := w.keys.Journal(p)
		var entries []ledger.JournalEntry
		w.mu.Lock()
		for _, m := range cmds[i].Val() {
			if _, held := w.inQueue[entryKey(stream, m.ID)]; held {
				continue
			}
			entries = append(entries, entryFromStream(p, m))
		}
		w.mu.Unlock()
		if len(entries) == 0 {
			continue
		}
		if !all {
			w.log.Info("recovering journal entries no switch committed", "partner", p, "entries", len(entries))
		}
		w.m.recovered.Add(float64(len(entries)))
		if err := w.Commit(ctx, entries, false); err != nil {
			return queued, err
		}
		queued += len(entries)
	}
	return queued, nil
}

// entryFromStream reads a stream entry back into the form scripts return.
func entryFromStream(partnerID string, m redis.XMessage) ledger.JournalEntry {
	str := func(k string) string {
		v, _ := m.Values[k].(string)
		return v
	}
	e := ledger.JournalEntry{PartnerID: partnerID, StreamID: m.ID, Type: str("type"), Reason: str("reason"),
		Ts: str("ts"), Ch: str("ch"), Meta: str("meta")}
	e.Seq, _ = strconv.ParseInt(str("seq"), 10, 64)
	return e
}

// ProcessOnce sweeps every stream entry this process does not hold and
// commits what is queued, once. It returns the number of entries committed.
// Tests and tools use it to step the write-behind.
func (w *WriteBehind) ProcessOnce(ctx context.Context) (int, error) {
	if _, err := w.sweep(ctx, true); err != nil {
		return 0, err
	}
	total := 0
	for {
		w.mu.Lock()
		before := w.queued
		w.mu.Unlock()
		n, err := w.commitPending(ctx)
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil
		}
		w.mu.Lock()
		total += before - w.queued
		w.mu.Unlock()
	}
}

// CommitQueued commits everything queued in this process (not the
// streams: a Redis that lost its state has none). The switch calls it
// before it rebuilds Redis from Postgres, so the rebuild reads back what
// this process held.
func (w *WriteBehind) CommitQueued(ctx context.Context) error {
	for {
		n, err := w.commitPending(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// Flush commits until every journal stream is empty and nothing is queued,
// retrying failures meanwhile. It returns ctx's error, wrapped with the last
// failure, if ctx ends first. Used on SIGTERM, before Rebuild or Audit, and
// by tests.
func (w *WriteBehind) Flush(ctx context.Context) error {
	var (
		wait    = 5 * time.Millisecond
		backoff time.Duration
		lastErr error
	)
	for {
		if err := ctx.Err(); err != nil {
			if lastErr != nil {
				return fmt.Errorf("flushing: %w (last failure: %v)", err, lastErr)
			}
			return fmt.Errorf("flushing: %w", err)
		}
		if _, err := w.ProcessOnce(ctx); err != nil {
			lastErr = err
			backoff = nextBackoff(backoff, w.retryMax)
			sleepCtx(ctx, backoff)
			continue
		}
		backoff = 0
		entries, _, err := w.Lag(ctx)
		if err != nil {
			lastErr = err
			sleepCtx(ctx, wait)
			continue
		}
		if entries == 0 {
			return nil
		}
		sleepCtx(ctx, wait)
		wait = min(wait*2, 100*time.Millisecond)
	}
}

// Lag returns how many journal entries are not yet committed (in the
// streams or queued) and the age of the oldest, and updates the lag gauges.
func (w *WriteBehind) Lag(ctx context.Context) (entries int64, age time.Duration, err error) {
	partners, err := partnerIDs(ctx, w.rdb, w.keys)
	if err != nil {
		return 0, 0, err
	}
	entries, age, err = backlogOf(ctx, w.rdb, w.keys, partners)
	if err != nil {
		return 0, 0, err
	}
	w.mu.Lock()
	if len(w.queue) > 0 {
		age = max(age, time.Since(w.queue[0].queued))
	}
	w.mu.Unlock()
	w.m.lagEntries.Set(float64(entries))
	w.m.lagSeconds.Set(age.Seconds())
	return entries, age, nil
}

// fail counts an error of a stage and passes it on.
func (w *WriteBehind) fail(stage string, err error) error {
	w.m.errors.WithLabelValues(stage).Inc()
	return err
}

var errSeqReused = errors.New("already stored with other content: the journal sequence was reused (redis lost events?)")

func nextBackoff(cur, limit time.Duration) time.Duration {
	next := max(cur*2, 20*time.Millisecond)
	next = min(next, limit)
	// Jitter, so workers that failed together do not retry together.
	return next/2 + rand.N(next/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
