package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
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
	// Group is the consumer group (default DefaultGroup).
	Group string
	// Consumer names this worker in the group (default: the host name).
	// A worker restarted under the same name re-applies what it had read
	// at once; under a new name, what it had read is reclaimed after
	// ReclaimMinIdle.
	Consumer string
	// BatchSize is the most events applied in one Postgres transaction
	// (default 500).
	BatchSize int
	// Block is how long a read waits for new entries (default 1s; negative:
	// never wait, poll).
	Block time.Duration
	// ReclaimMinIdle is how long an entry must have been pending with
	// another consumer before it is taken over (default 30s). Reclaiming
	// early is safe (applying is idempotent) but wastes work.
	ReclaimMinIdle time.Duration
	// RefreshInterval is how often the partner set is re-read to find new
	// journal streams (default 5s).
	RefreshInterval time.Duration
	// RetryMax caps the backoff between attempts while Redis or Postgres
	// fail (default 5s).
	RetryMax time.Duration
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives progress and failures; nil discards them.
	Logger *slog.Logger
}

// WriteBehind copies the partners' journal streams from Redis into Postgres.
//
// It reads entries through a consumer group, applies each batch in one
// Postgres transaction (Sink.Apply: idempotent by event id), then
// acknowledges the entries and trims the stream below the lowest entry still
// pending, so Redis drops only what Postgres holds. Delivery is at least
// once; the journal's primary key makes the effect exactly once.
//
// Per stream, entries are applied strictly in stream order: an entry is held
// back while an older entry of the same stream is still pending (read by a
// worker that has not acknowledged it, or refused). That costs a crashed
// worker's partners up to ReclaimMinIdle of lag, and it is what makes the
// rows converge: "set only where v < version" keeps a row's newest version
// but would let an older event, applied late, lose the columns it set that
// the newer one did not touch.
//
// An entry that does not validate (unknown table or column, bad number) is
// never skipped: it stays pending, is logged and counted once
// (errors_total{stage="rejected"}), and holds back its partner's later
// entries until the code that wrote it is fixed; the lag alert fires.
type WriteBehind struct {
	rdb       redis.UniversalClient
	keys      ledger.Keys
	sink      Sink
	group     string
	consumer  string
	batchSize int
	block     time.Duration
	minIdle   time.Duration
	refresh   time.Duration
	retryMax  time.Duration
	log       *slog.Logger
	m         *metrics
	cluster   bool

	mu          sync.Mutex // one step at a time: Run, ProcessOnce and Flush share the state below
	streams     []string
	partnerOf   map[string]string
	hasGroup    map[string]bool
	lastRefresh time.Time
	lastReclaim time.Time
	claimFrom   map[string]string
	ownPending  bool              // entries read but not acknowledged may be pending under our name
	rejected    map[string]string // "stream id" -> why, for entries refused

	// Test hooks: simulate a crash after reading, or after committing to
	// Postgres but before acknowledging.
	afterRead  func() error
	afterApply func() error
}

// entry is a stream entry with the stream it came from.
type entry struct {
	stream string
	msg    redis.XMessage
}

// stepResult says what one pass did.
type stepResult struct {
	acked    int // entries applied (or already applied) and acknowledged
	deferred int // entries held back behind an older pending entry
	rejected int // entries refused
}

// NewWriteBehind checks opts and fills in the defaults. The worker starts
// with Run (or ProcessOnce/Flush).
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
		rdb:       opts.Redis,
		keys:      opts.Keys,
		sink:      sink,
		group:     opts.Group,
		consumer:  opts.Consumer,
		batchSize: opts.BatchSize,
		block:     opts.Block,
		minIdle:   opts.ReclaimMinIdle,
		refresh:   opts.RefreshInterval,
		retryMax:  opts.RetryMax,
		log:       opts.Logger,
		m:         newMetrics(opts.Registerer),
		hasGroup:  map[string]bool{},
		claimFrom: map[string]string{},
		rejected:  map[string]string{},
		// After a restart under the same name, what we had read is pending
		// under our name: re-read it first.
		ownPending: true,
	}
	if w.keys.Prefix == "" {
		w.keys.Prefix = ledger.DefaultPrefix
	}
	if w.group == "" {
		w.group = DefaultGroup
	}
	if w.consumer == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = fmt.Sprintf("pid-%d", os.Getpid())
		}
		w.consumer = host
	}
	if w.batchSize <= 0 {
		w.batchSize = 500
	}
	if w.block == 0 {
		w.block = time.Second
	}
	if w.minIdle <= 0 {
		w.minIdle = 30 * time.Second
	}
	if w.refresh <= 0 {
		w.refresh = 5 * time.Second
	}
	if w.retryMax <= 0 {
		w.retryMax = 5 * time.Second
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("component", "writebehind", "consumer", w.consumer)
	_, w.cluster = w.rdb.(*redis.ClusterClient)
	return w, nil
}

// pollInterval paces passes that found nothing to do without a blocking read.
const pollInterval = 50 * time.Millisecond

// Run applies journal entries until ctx is done, then returns nil. Failures
// of Redis or Postgres are logged, counted and retried with backoff; nothing
// is lost meanwhile, because unacknowledged entries stay in the streams. On
// shutdown, call Flush with a deadline to leave as little lag as possible.
func (w *WriteBehind) Run(ctx context.Context) error {
	w.log.Info("write-behind running", "group", w.group, "batch", w.batchSize)
	var (
		backoff time.Duration
		lastLag time.Time
	)
	for ctx.Err() == nil {
		res, err := w.step(ctx, w.block)
		if time.Since(lastLag) >= time.Second {
			lastLag = time.Now()
			if _, _, lerr := w.Lag(ctx); lerr != nil && ctx.Err() == nil {
				w.log.Debug("measuring lag", "err", lerr)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			backoff = nextBackoff(backoff, w.retryMax)
			w.log.Warn("write-behind pass failed; retrying", "err", err, "retry_in", backoff)
			sleepCtx(ctx, backoff)
			continue
		}
		backoff = 0
		if res.acked == 0 && (res.deferred > 0 || w.block < 0) {
			sleepCtx(ctx, pollInterval)
		}
	}
	w.log.Info("write-behind stopped")
	return nil
}

// ProcessOnce makes one pass without waiting for new entries: re-read what
// is pending under this consumer, reclaim idle entries when due, read new
// entries, apply and acknowledge them. It returns the number of entries
// acknowledged. Tests and tools use it to step the worker.
func (w *WriteBehind) ProcessOnce(ctx context.Context) (int, error) {
	res, err := w.step(ctx, -1)
	return res.acked, err
}

// Flush processes until every journal stream is acknowledged (lag 0), and
// retries failures meanwhile. It returns ctx's error, wrapped with the last
// failure, if ctx ends first; and an error naming them if refused entries
// hold the rest back. Used on SIGTERM, before Rebuild or Audit, and by tests.
// Entries pending under a dead consumer are reclaimed after ReclaimMinIdle,
// so Flush may take that long after a crash.
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
		res, err := w.step(ctx, -1)
		if err != nil {
			lastErr = err
			backoff = nextBackoff(backoff, w.retryMax)
			sleepCtx(ctx, backoff)
			continue
		}
		backoff = 0
		if res.acked > 0 {
			wait = 5 * time.Millisecond
			continue
		}
		entries, _, err := w.Lag(ctx)
		if err != nil {
			lastErr = err
			sleepCtx(ctx, wait)
			continue
		}
		if entries == 0 {
			return nil
		}
		if res.rejected > 0 {
			return fmt.Errorf("flushing: %d entries not acknowledged, held back by refused entries: %s",
				entries, w.rejectedSummary())
		}
		// Maybe a partner this worker has not seen yet: look now rather
		// than at the next RefreshInterval.
		w.mu.Lock()
		w.lastRefresh = time.Time{}
		w.mu.Unlock()
		sleepCtx(ctx, wait)
		wait = min(wait*2, 100*time.Millisecond)
	}
}

// Lag returns how many journal entries the group has not acknowledged and
// the age of the oldest of them, and updates the lag gauges.
func (w *WriteBehind) Lag(ctx context.Context) (entries int64, age time.Duration, err error) {
	partners, err := partnerIDs(ctx, w.rdb, w.keys)
	if err != nil {
		return 0, 0, err
	}
	entries, age, err = lagOf(ctx, w.rdb, w.keys, w.group, partners)
	if err != nil {
		return 0, 0, err
	}
	w.m.lagEntries.Set(float64(entries))
	w.m.lagSeconds.Set(age.Seconds())
	return entries, age, nil
}

func (w *WriteBehind) step(ctx context.Context, block time.Duration) (stepResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var res stepResult
	if err := w.refreshStreams(ctx); err != nil {
		return res, w.fail(stageRedis, err)
	}
	if len(w.streams) == 0 {
		if block > 0 {
			sleepCtx(ctx, block)
		}
		return res, nil
	}

	var (
		entries []entry
		ownMore bool // the re-read may have left pending entries of ours behind
	)
	if w.ownPending {
		own, err := w.read(ctx, "0", -1)
		if err != nil {
			return res, w.fail(stageRedis, fmt.Errorf("re-reading pending entries: %w", err))
		}
		perStream := map[string]int64{}
		for _, e := range own {
			perStream[e.stream]++
			ownMore = ownMore || perStream[e.stream] >= w.perStreamCount()
		}
		if len(own) == 0 {
			w.ownPending = false
		}
		entries = append(entries, own...)
	}
	if time.Since(w.lastReclaim) >= max(w.minIdle/2, 10*time.Millisecond) {
		claimed, more, err := w.reclaim(ctx)
		if err != nil {
			return res, w.fail(stageRedis, err)
		}
		if !more {
			w.lastReclaim = time.Now()
		}
		entries = append(entries, claimed...)
	}
	if len(entries) > 0 {
		block = -1
	}
	fresh, err := w.read(ctx, ">", block)
	if err != nil {
		return res, w.fail(stageRedis, fmt.Errorf("reading journal: %w", err))
	}
	entries = append(entries, fresh...)
	if len(entries) == 0 {
		return res, nil
	}
	w.ownPending = true // until acknowledged, they are pending under our name
	if w.afterRead != nil {
		if err := w.afterRead(); err != nil {
			return res, err
		}
	}
	res, err = w.process(ctx, entries)
	if err == nil && res.deferred == 0 && res.rejected == 0 && !ownMore {
		w.ownPending = false
	}
	return res, err
}

// fail counts an error of a stage and passes it on.
func (w *WriteBehind) fail(stage string, err error) error {
	w.m.errors.WithLabelValues(stage).Inc()
	return err
}

// refreshStreams re-reads the partner set when due and creates the group on
// streams that lack it. The group starts at "0": entries written before the
// write-behind first ran are not in Postgres either.
func (w *WriteBehind) refreshStreams(ctx context.Context) error {
	if !w.lastRefresh.IsZero() && time.Since(w.lastRefresh) < w.refresh {
		return nil
	}
	partners, err := partnerIDs(ctx, w.rdb, w.keys)
	if err != nil {
		return err
	}
	streams := make([]string, 0, len(partners))
	partnerOf := make(map[string]string, len(partners))
	for _, p := range partners {
		s := w.keys.Journal(p)
		streams = append(streams, s)
		partnerOf[s] = p
	}
	var missing []string
	for _, s := range streams {
		if !w.hasGroup[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		pipe := w.rdb.Pipeline()
		cmds := make([]*redis.StatusCmd, len(missing))
		for i, s := range missing {
			cmds[i] = pipe.XGroupCreateMkStream(ctx, s, w.group, "0")
		}
		_, _ = pipe.Exec(ctx)
		for i, s := range missing {
			if err := cmds[i].Err(); err != nil && !isBusyGroup(err) {
				return fmt.Errorf("creating consumer group on %s: %w", s, err)
			}
			w.hasGroup[s] = true
		}
		w.log.Debug("journal streams", "streams", len(streams), "new", len(missing))
	}
	w.streams, w.partnerOf = streams, partnerOf
	w.lastRefresh = time.Now()
	return nil
}

// perStreamCount bounds what one read takes per stream, so a deployment with
// many partners does not pull BatchSize entries of each into memory at once.
func (w *WriteBehind) perStreamCount() int64 {
	return int64(max(w.batchSize/max(len(w.streams), 1), min(w.batchSize, 100)))
}

// read runs XREADGROUP with id ("0": entries pending under our name, ">":
// new entries) over every stream. On Redis Cluster the streams live in
// different slots, so it sends one non-blocking read per stream in a
// pipeline and sleeps a little instead of blocking.
func (w *WriteBehind) read(ctx context.Context, id string, block time.Duration) ([]entry, error) {
	if block < 0 {
		block = -1
	}
	count := w.perStreamCount()
	var out []entry
	collect := func(res []redis.XStream) {
		for _, st := range res {
			for _, m := range st.Messages {
				out = append(out, entry{stream: st.Stream, msg: m})
			}
		}
	}
	onErr := func(err error) error {
		if isNoGroup(err) {
			// The stream was deleted (and maybe written again) under us:
			// recreate the groups on the next pass.
			w.hasGroup = map[string]bool{}
			w.lastRefresh = time.Time{}
		}
		return err
	}
	if !w.cluster {
		args := &redis.XReadGroupArgs{Group: w.group, Consumer: w.consumer, Count: count, Block: block,
			Streams: make([]string, 0, 2*len(w.streams))}
		args.Streams = append(args.Streams, w.streams...)
		for range w.streams {
			args.Streams = append(args.Streams, id)
		}
		res, err := w.rdb.XReadGroup(ctx, args).Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, onErr(err)
		}
		collect(res)
		return out, nil
	}
	pipe := w.rdb.Pipeline()
	cmds := make([]*redis.XStreamSliceCmd, len(w.streams))
	for i, s := range w.streams {
		cmds[i] = pipe.XReadGroup(ctx, &redis.XReadGroupArgs{Group: w.group, Consumer: w.consumer,
			Count: count, Block: -1, Streams: []string{s, id}})
	}
	_, _ = pipe.Exec(ctx)
	for _, c := range cmds {
		res, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, onErr(err)
		}
		collect(res)
	}
	if len(out) == 0 && block > 0 {
		sleepCtx(ctx, min(block, 100*time.Millisecond))
	}
	return out, nil
}

// reclaim takes over entries pending longer than ReclaimMinIdle under any
// consumer (one that crashed, or us after a failure) with XAUTOCLAIM. It
// reports more when a stream may hold further idle entries.
func (w *WriteBehind) reclaim(ctx context.Context) ([]entry, bool, error) {
	count := w.perStreamCount()
	pipe := w.rdb.Pipeline()
	cmds := make([]*redis.XAutoClaimCmd, len(w.streams))
	for i, s := range w.streams {
		start := w.claimFrom[s]
		if start == "" {
			start = "0-0"
		}
		cmds[i] = pipe.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: s, Group: w.group, Consumer: w.consumer,
			MinIdle: w.minIdle, Start: start, Count: count})
	}
	_, _ = pipe.Exec(ctx)
	var (
		out  []entry
		more bool
	)
	for i, s := range w.streams {
		msgs, next, err := cmds[i].Result()
		if err != nil {
			if isNoGroup(err) {
				w.hasGroup = map[string]bool{}
				w.lastRefresh = time.Time{}
			}
			return nil, false, fmt.Errorf("reclaiming idle entries of %s: %w", s, err)
		}
		if next != "0-0" {
			more = true
		}
		w.claimFrom[s] = next
		for _, m := range msgs {
			out = append(out, entry{stream: s, msg: m})
		}
	}
	if len(out) > 0 {
		w.log.Info("reclaimed idle journal entries", "entries", len(out))
	}
	return out, more, nil
}

// process applies entries in stream order, holding back what an older
// pending entry blocks, then acknowledges and trims.
func (w *WriteBehind) process(ctx context.Context, entries []entry) (stepResult, error) {
	var res stepResult
	byStream := map[string][]entry{}
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		k := e.stream + " " + e.msg.ID
		if !seen[k] {
			seen[k] = true
			byStream[e.stream] = append(byStream[e.stream], e)
		}
	}
	streams := make([]string, 0, len(byStream))
	for s, list := range byStream {
		streams = append(streams, s)
		sort.Slice(list, func(i, j int) bool { return streamIDLess(list[i].msg.ID, list[j].msg.ID) })
	}
	sort.Strings(streams)

	// The order gate: the pending entries up to our newest, lowest first.
	// The first one that is not in our hand is older than the entries of
	// ours after it; those wait.
	pipe := w.rdb.Pipeline()
	gates := make([]*redis.XPendingExtCmd, len(streams))
	for i, s := range streams {
		list := byStream[s]
		gates[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s, Group: w.group,
			Start: "-", End: list[len(list)-1].msg.ID, Count: int64(len(list))})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return res, w.fail(stageRedis, fmt.Errorf("reading pending entries: %w", err))
	}

	type item struct {
		stream string
		id     string
		ev     *Event // nil: the entry is gone from the stream
	}
	var todo []item
	for i, s := range streams {
		list := byStream[s]
		mine := make(map[string]bool, len(list))
		for _, e := range list {
			mine[e.msg.ID] = true
		}
		cut := ""
		for _, p := range gates[i].Val() {
			if !mine[p.ID] {
				cut = p.ID
				break
			}
		}
		for j, e := range list {
			if cut != "" && streamIDLess(cut, e.msg.ID) {
				res.deferred += len(list) - j
				break
			}
			if e.msg.Values == nil {
				// Pending but deleted from the stream: whoever trimmed
				// it lost the event. Nothing can bring it back; say so
				// loudly and let the rest through.
				w.m.errors.WithLabelValues(stageLost).Inc()
				w.log.Error("journal entry deleted from the stream before it reached postgres; event lost",
					"stream", s, "id", e.msg.ID)
				todo = append(todo, item{stream: s, id: e.msg.ID})
				continue
			}
			if _, refused := w.rejected[s+" "+e.msg.ID]; refused {
				// Refused earlier (a sequence conflict is only seen by
				// the sink): it keeps holding its partner back.
				res.rejected++
				res.deferred += len(list) - j - 1
				break
			}
			ev, err := ParseEntry(w.partnerOf[s], e.msg.ID, e.msg.Values)
			if err != nil {
				w.reject(s, e.msg.ID, err)
				res.rejected++
				res.deferred += len(list) - j - 1
				break
			}
			todo = append(todo, item{stream: s, id: e.msg.ID, ev: &ev})
		}
	}

	for start := 0; start < len(todo); start += w.batchSize {
		chunk := todo[start:min(start+w.batchSize, len(todo))]
		evs := make([]Event, 0, len(chunk))
		ids := map[string][]string{}
		for _, it := range chunk {
			if it.ev != nil {
				evs = append(evs, *it.ev)
			}
			ids[it.stream] = append(ids[it.stream], it.id)
		}
		applied := 0
		if len(evs) > 0 {
			t0 := time.Now()
			var err error
			applied, err = w.sink.Apply(ctx, evs)
			var conflict *ConflictError
			if errors.As(err, &conflict) {
				// Refuse those entries like invalid ones; the next
				// pass applies the rest.
				for _, id := range conflict.Events {
					for _, it := range chunk {
						if it.ev != nil && it.ev.PartnerID == id.PartnerID && it.ev.Seq == id.Seq {
							w.reject(it.stream, it.id, fmt.Errorf("event %s/%d: %w", id.PartnerID, id.Seq, errSeqReused))
						}
					}
				}
				return res, fmt.Errorf("applying batch of %d events: %w", len(evs), err)
			}
			if err != nil {
				return res, w.fail(stagePostgres, fmt.Errorf("applying batch of %d events: %w", len(evs), err))
			}
			w.m.batchTime.Observe(time.Since(t0).Seconds())
			w.m.batches.Inc()
		}
		if w.afterApply != nil {
			if err := w.afterApply(); err != nil {
				return res, err
			}
		}
		if err := w.ackAndTrim(ctx, ids); err != nil {
			return res, w.fail(stageRedis, err)
		}
		w.m.events.WithLabelValues("applied").Add(float64(applied))
		w.m.events.WithLabelValues("duplicate").Add(float64(len(evs) - applied))
		res.acked += len(chunk)
	}
	return res, nil
}

var errSeqReused = errors.New("already stored with other content: the journal sequence was reused (redis lost events?)")

// reject records an entry that does not validate, logging it once.
func (w *WriteBehind) reject(stream, id string, err error) {
	k := stream + " " + id
	if _, known := w.rejected[k]; known {
		return
	}
	w.rejected[k] = err.Error()
	w.m.errors.WithLabelValues(stageRejected).Inc()
	w.log.Error("journal entry refused; it stays pending and holds back its partner's later entries",
		"stream", stream, "id", id, "err", err)
}

func (w *WriteBehind) rejectedSummary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	parts := make([]string, 0, len(w.rejected))
	for k, why := range w.rejected {
		parts = append(parts, k+": "+why)
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// ackAndTrim acknowledges ids, then trims each stream below its lowest
// pending entry, or when nothing is pending below the last entry delivered
// to the group: everything below that has been acknowledged, so Postgres
// holds it. The trim is best effort: a failure leaves more in Redis, and
// the next batch trims again.
func (w *WriteBehind) ackAndTrim(ctx context.Context, ids map[string][]string) error {
	streams := make([]string, 0, len(ids))
	for s := range ids {
		streams = append(streams, s)
	}
	sort.Strings(streams)
	pipe := w.rdb.Pipeline()
	pend := make([]*redis.XPendingCmd, len(streams))
	info := make([]*redis.XInfoGroupsCmd, len(streams))
	for i, s := range streams {
		pipe.XAck(ctx, s, w.group, ids[s]...)
		pend[i] = pipe.XPending(ctx, s, w.group)
		info[i] = pipe.XInfoGroups(ctx, s)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("acknowledging journal entries: %w", err)
	}
	for _, s := range streams {
		for _, id := range ids[s] {
			delete(w.rejected, s+" "+id)
		}
	}
	pipe = w.rdb.Pipeline()
	trims := 0
	for i, s := range streams {
		floor := ""
		if p := pend[i].Val(); p != nil && p.Count > 0 {
			floor = p.Lower
		} else {
			for _, g := range info[i].Val() {
				if g.Name == w.group {
					floor = g.LastDeliveredID
				}
			}
		}
		if floor != "" && floor != "0-0" {
			pipe.XTrimMinID(ctx, s, floor)
			trims++
		}
	}
	if trims > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			w.m.errors.WithLabelValues(stageRedis).Inc()
			w.log.Warn("trimming journal streams", "err", err)
		}
	}
	return nil
}

func nextBackoff(cur, limit time.Duration) time.Duration {
	next := max(cur*2, 100*time.Millisecond)
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
