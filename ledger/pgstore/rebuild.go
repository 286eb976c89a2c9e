package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/ledger"
	"github.com/redis/go-redis/v9"
)

// ErrUnflushed is returned by Rebuild when a journal stream still holds
// entries the write-behind has not written to the durable store:
// rebuilding then would overwrite newer Redis state with older rows.
var ErrUnflushed = errors.New("journal entries not yet written to the durable store")

// RebuildReport says what Rebuild restored.
type RebuildReport struct {
	// Skipped is true when Redis already held the state (the ready key was
	// set) and Rebuild did nothing.
	Skipped   bool
	Partners  int
	Rows      map[string]int // per table
	PANs      int
	OpenHolds int
	IdemKeys  int
	// RetiredHolds are closed holds past their retention: not restored.
	RetiredHolds int
	// Velocity is how many per-card velocity counters were restored.
	Velocity int
	// References are the restored RRN keys of holds (reversal fallback).
	References int
	// SpendWindows are the restored spend-control window counters.
	SpendWindows int
	// Notes are oddities found on the way that did not stop the rebuild.
	Notes []string
	Took  time.Duration
}

func (r RebuildReport) String() string {
	if r.Skipped {
		return "rebuild skipped: redis is ready"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rebuilt %d partners in %s:", r.Partners, r.Took.Round(time.Millisecond))
	for _, t := range ledger.Tables {
		fmt.Fprintf(&b, " %s=%d", t, r.Rows[t])
	}
	fmt.Fprintf(&b, " pans=%d open_holds=%d idem=%d refs=%d velocity=%d spend_windows=%d retired_holds=%d", r.PANs, r.OpenHolds, r.IdemKeys, r.References, r.Velocity, r.SpendWindows, r.RetiredHolds)
	for _, n := range r.Notes {
		b.WriteString("\n  note: " + n)
	}
	return b.String()
}

// setIfGreater raises a counter without ever lowering it: a journal
// sequence that went backwards would make new events collide with stored
// ones, and ON CONFLICT DO NOTHING would then drop them silently.
var setIfGreater = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 0`)

// DefaultIdempotencyTTL is how long the ledger keeps an idempotency record
// unless configured otherwise (ledger.Options.IdempotencyTTL's default).
const DefaultIdempotencyTTL = 7 * 24 * time.Hour

// RebuildOption adjusts Rebuild.
type RebuildOption func(*rebuildConfig)

type rebuildConfig struct {
	idemTTL   time.Duration
	velWindow time.Duration
	now       func() time.Time
}

// WithVelocityWindow restores the per-card authorization counters of the
// current velocity window (ledger.Engine.VelocityWindow) from the holds
// created in it. Declines counted there are not in Postgres, so a restored
// counter can be lower than the lost one, never higher.
func WithVelocityWindow(d time.Duration) RebuildOption {
	return func(c *rebuildConfig) { c.velWindow = d }
}

// WithIdempotencyTTL gives the idempotency records Rebuild restores the
// lifetime the ledger gives them (its IdempotencyTTL), counted from the
// hold's creation; records that would have expired already are not restored.
func WithIdempotencyTTL(d time.Duration) RebuildOption {
	return func(c *rebuildConfig) { c.idemTTL = d }
}

// holdRetiredAt is when a closed hold leaves Redis (the scripts' retire:
// the idempotency window after it closed); zero for an open hold or when
// holds are kept for good.
func holdRetiredAt(t *table, vals []string, cfg rebuildConfig) time.Time {
	if cfg.idemTTL <= 0 || vals[t.index["state"]] == "OPEN" {
		return time.Time{}
	}
	closed, _ := strconv.ParseInt(vals[t.index["closed_ms"]], 10, 64)
	if closed == 0 {
		closed, _ = strconv.ParseInt(vals[t.index["created_ms"]], 10, 64)
	}
	return time.UnixMilli(closed).Add(cfg.idemTTL)
}

// retired reports whether a hold row has left Redis for good.
func retired(t *table, vals []string, cfg rebuildConfig) bool {
	at := holdRetiredAt(t, vals, cfg)
	return !at.IsZero() && !at.After(cfg.now())
}

// Rebuild restores the Redis state from the durable store (Postgres, or
// SQLite for the demo) after Redis lost it (restart without persistence,
// failover to an empty replica). When the ready key exists it does
// nothing. Otherwise it writes every row of every table (in ledger.Tables
// order) as its hash, the auxiliary keys of docs/ledger.md (partner set,
// BINs, id index of partners, customers, balances and cards, PAN index,
// partner balance by type and currency, open holds, the idempotency
// records and RRN references of holds) plus the cards-per-balance and
// balances-per-customer sets the scripts keep, the journal sequences
// (never lowered), and finally sets ready. It pipelines its writes and can
// be re-run after a failure.
//
// What the store does not hold is not restored: the idempotency answers of
// operations other than holds (reloads, captures, voids, declines) — a
// retransmission of those after a rebuild is processed again — and the
// declines counted by velocity counters (WithVelocityWindow restores the
// counters from the holds).
//
// Rebuild trusts the store to be complete: callers flush the write-behind
// first (WriteBehind.Flush). As a guard it refuses, with ErrUnflushed, when
// a journal stream still holds entries the write-behind has not
// acknowledged. The switch must not serve traffic until Rebuild returns.
func Rebuild(ctx context.Context, rdb redis.UniversalClient, keys ledger.Keys, db *DB, opts ...RebuildOption) (RebuildReport, error) {
	start := time.Now()
	cfg := newRebuildConfig(opts)
	if keys.Prefix == "" {
		keys.Prefix = ledger.DefaultPrefix
	}
	rep := RebuildReport{Rows: map[string]int{}}
	n, err := rdb.Exists(ctx, keys.Ready()).Result()
	if err != nil {
		return rep, fmt.Errorf("checking ready key: %w", err)
	}
	if n > 0 {
		rep.Skipped = true
		return rep, nil
	}

	partners, err := rebuildPartners(ctx, rdb, keys, db)
	if err != nil {
		return rep, err
	}
	rep.Partners = len(partners)
	if err := checkFlushed(ctx, rdb, keys, partners); err != nil {
		return rep, err
	}

	rb := newRebuilder(ctx, rdb, keys, cfg, &rep)
	for _, t := range tableOrder {
		if err := eachRow(ctx, db, t, func(r storedRow) error { return rb.restoreRow(t, r) }); err != nil {
			return rep, fmt.Errorf("restoring %s: %w", t.name, err)
		}
	}
	if err := rb.restoreSequences(db); err != nil {
		return rep, err
	}
	rb.restoreReferences()
	rb.restoreSpendWindows()
	rb.restoreVelocity()
	if err := rb.pw.flush(); err != nil {
		return rep, err
	}
	if err := rdb.Set(ctx, keys.Ready(), time.Now().UTC().Format(time.RFC3339), 0).Err(); err != nil {
		return rep, fmt.Errorf("setting ready: %w", err)
	}
	rep.Took = time.Since(start)
	return rep, nil
}

func newRebuildConfig(opts []RebuildOption) rebuildConfig {
	cfg := rebuildConfig{idemTTL: DefaultIdempotencyTTL, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// checkFlushed refuses, with ErrUnflushed, when a partner's journal stream
// still holds entries the store has not acknowledged.
func checkFlushed(ctx context.Context, rdb redis.UniversalClient, keys ledger.Keys, partners []string) error {
	if len(partners) == 0 {
		return nil
	}
	streams := make([]string, len(partners))
	for i, p := range partners {
		streams[i] = keys.Journal(p)
	}
	lens, err := streamBacklogs(ctx, rdb, streams)
	if err != nil {
		return fmt.Errorf("checking journal streams: %w", err)
	}
	for i, n := range lens {
		if n > 0 {
			return fmt.Errorf("rebuilding: %s holds %d entries not in the durable store (flush the write-behind first): %w",
				streams[i], n, ErrUnflushed)
		}
	}
	return nil
}

// rebuilder writes what Rebuild restores, and collects what is written
// once every row was read: the RRN references (the newest hold for each)
// and the velocity counters of the current window.
type rebuilder struct {
	ctx  context.Context
	pw   *pipeWriter
	keys ledger.Keys
	cfg  rebuildConfig
	rep  *RebuildReport

	pbalcur  map[string]string // partner balance by type and currency -> id
	refs     map[string]refTarget
	velIndex int64
	velocity map[[2]string]int64 // partner, card -> authorizations
	spend    spendWindows        // spend-control windows still running
}

type refTarget struct {
	hold    string
	created int64
	expires time.Time
}

func newRebuilder(ctx context.Context, rdb redis.UniversalClient, keys ledger.Keys, cfg rebuildConfig, rep *RebuildReport) *rebuilder {
	rb := &rebuilder{ctx: ctx, pw: &pipeWriter{ctx: ctx, pipe: rdb.Pipeline()}, keys: keys, cfg: cfg, rep: rep,
		pbalcur: map[string]string{}, refs: map[string]refTarget{}, velocity: map[[2]string]int64{}, spend: spendWindows{}}
	if cfg.velWindow > 0 {
		rb.velIndex = cfg.now().UnixMilli() / cfg.velWindow.Milliseconds()
	}
	return rb
}

// restoreRow writes one row as its hash, with the keys that find it.
func (rb *rebuilder) restoreRow(t *table, r storedRow) error {
	if t.name == "holds" && retired(t, r.vals, rb.cfg) {
		rb.rep.RetiredHolds++ // the store keeps it; Redis had let it go
		return nil
	}
	rb.rep.Rows[t.name]++
	key := rb.keys.Row(r.partner, t.name, r.id)
	fields := make([]any, 0, 2*(3+len(t.cols)))
	fields = append(fields, "id", r.id, "partner_id", r.partner, "v", r.v)
	for i, c := range t.cols {
		fields = append(fields, c, r.vals[i])
	}
	pipe, ctx, keys := rb.pw.pipe, rb.ctx, rb.keys
	pipe.Del(ctx, key)
	pipe.HSet(ctx, key, fields...)
	col := func(name string) string { return r.vals[t.index[name]] }
	switch t.name {
	case "partners":
		pipe.SAdd(ctx, keys.Partners(), r.id)
		pipe.HSet(ctx, keys.Index(), r.id, r.id)
		if bin := col("bin"); bin != "" {
			pipe.HSet(ctx, keys.BINs(), bin, r.id)
		}
	case "programs":
		rb.restoreProgram(r, col("bin_ranges"))
	case "partner_balances":
		pipe.HSet(ctx, keys.Index(), r.id, r.partner)
		rb.restorePartnerBalanceByCurrency(r, col("type"), col("currency"))
	case "customers":
		pipe.HSet(ctx, keys.Index(), r.id, r.partner)
	case "user_balances":
		pipe.HSet(ctx, keys.Index(), r.id, r.partner)
		if c := col("customer_id"); c != "" {
			pipe.SAdd(ctx, keys.CustomerBalances(r.partner, c), r.id)
		}
	case "cards":
		pipe.HSet(ctx, keys.Index(), r.id, r.partner)
		if b := col("balance_id"); b != "" {
			pipe.SAdd(ctx, keys.BalanceCards(r.partner, b), r.id)
		}
		// A copy shares its original's PAN, and the lookup keeps naming
		// the original (as create_card.lua does): only originals write
		// it. Removed cards keep theirs, so they decline as removed
		// rather than unknown.
		if h := col("pan_hash"); h != "" && col("copy_of") == "" {
			rb.rep.PANs++
			pipe.Set(ctx, keys.PAN(r.partner, h), r.id, 0)
		}
	case "holds":
		rb.restoreHold(t, r, key, col)
	}
	return rb.pw.maybeFlush()
}

// restorePartnerBalanceByCurrency writes the lookup of a partner's balance
// of a type and currency; the first one found keeps it.
func (rb *rebuilder) restorePartnerBalanceByCurrency(r storedRow, typ, cur string) {
	if typ == "" || cur == "" {
		return
	}
	k := rb.keys.PartnerBalanceByCurrency(r.partner, typ, cur)
	if prev, dup := rb.pbalcur[k]; dup {
		rb.rep.Notes = append(rb.rep.Notes, fmt.Sprintf("partner %s has several %s %s balances (%s, %s); %s kept",
			r.partner, typ, cur, prev, r.id, prev))
		return
	}
	rb.pbalcur[k] = r.id
	rb.pw.pipe.Set(rb.ctx, k, r.id, 0)
}

// restoreHold writes what finds a hold: the open holds' index, its
// idempotency record, its RRN reference (collected, the newest wins) and
// its share of the velocity counter. Holds are not in the id index
// (docs/ledger.md): they are found by their idempotency key. A closed one
// keeps the lifetime the scripts gave it.
func (rb *rebuilder) restoreHold(t *table, r storedRow, key string, col func(string) string) {
	pipe, ctx, keys, cfg := rb.pw.pipe, rb.ctx, rb.keys, rb.cfg
	if at := holdRetiredAt(t, r.vals, cfg); !at.IsZero() {
		pipe.PExpireAt(ctx, key, at)
	}
	created, _ := strconv.ParseInt(col("created_ms"), 10, 64)
	if col("state") == "OPEN" {
		pipe.ZAdd(ctx, keys.OpenHolds(r.partner), redis.Z{Score: float64(created), Member: r.id})
		rb.rep.OpenHolds++
	}
	if sp := col("spend"); sp != "" {
		left := atoi64(col("approved")) - atoi64(col("released"))
		rb.spend.add(r.partner, col("card_id"), sp, left, cfg.now())
	}
	if cfg.velWindow > 0 && col("card_id") != "" && col("origin") != "force_post" &&
		created/cfg.velWindow.Milliseconds() == rb.velIndex {
		rb.velocity[[2]string{r.partner, col("card_id")}]++
	}
	expires := time.UnixMilli(created).Add(cfg.idemTTL)
	if cfg.idemTTL > 0 && !expires.After(cfg.now()) {
		return // the ledger would have forgotten its keys by now
	}
	// The reversal fallback (RRN + card id), with the lifetime the scripts
	// give it: the idempotency TTL. Several holds can share one (an advice
	// without DE90 repeating the RRN): the scripts leave the newest.
	if ref := col("reference"); ref != "" {
		k := keys.Reference(r.partner, ref)
		if cur, ok := rb.refs[k]; !ok || created > cur.created || created == cur.created && r.id > cur.hold {
			rb.refs[k] = refTarget{hold: r.id, created: created, expires: expires}
		}
	}
	if ik := col("idem_key"); ik != "" {
		k := keys.Idem(r.partner, ik)
		pipe.HSet(ctx, k, storedAnswer(r.id, col)...)
		if cfg.idemTTL > 0 {
			pipe.PExpireAt(ctx, k, expires)
		}
		rb.rep.IdemKeys++
	}
}

// restoreSequences raises every partner's journal sequence to the highest
// the store holds.
func (rb *rebuilder) restoreSequences(db *DB) error {
	rows, err := db.Query(rb.ctx, `SELECT partner_id, max(seq) FROM journal GROUP BY partner_id`)
	if err != nil {
		return fmt.Errorf("reading journal sequences: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			p   string
			seq int64
		)
		if err := rows.Scan(&p, &seq); err != nil {
			return fmt.Errorf("reading journal sequences: %w", err)
		}
		setIfGreater.Eval(rb.ctx, rb.pw.pipe, []string{rb.keys.Seq(p)}, seq)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading journal sequences: %w", err)
	}
	return nil
}

// restoreReferences writes the RRN references collected from the holds.
func (rb *rebuilder) restoreReferences() {
	for k, t := range rb.refs {
		rb.pw.pipe.Set(rb.ctx, k, t.hold, 0)
		if rb.cfg.idemTTL > 0 {
			rb.pw.pipe.PExpireAt(rb.ctx, k, t.expires)
		}
		rb.rep.References++
	}
}

// restoreProgram writes a program's index entries and its BIN ranges
// routing.
func (rb *rebuilder) restoreProgram(r storedRow, binRanges string) {
	pipe, ctx, keys := rb.pw.pipe, rb.ctx, rb.keys
	pipe.HSet(ctx, keys.Index(), r.id, r.partner)
	pipe.SAdd(ctx, keys.Programs(r.partner), r.id)
	var ranges []struct{ From, To string }
	if binRanges != "" {
		if err := json.Unmarshal([]byte(binRanges), &ranges); err != nil {
			rb.rep.Notes = append(rb.rep.Notes, fmt.Sprintf("program %s: bin_ranges unreadable, not routed: %v", r.id, err))
		}
	}
	for _, rg := range ranges {
		pipe.HSet(ctx, keys.Ranges(), rg.From+"-"+rg.To, r.partner+"/"+r.id)
	}
}

// restoreSpendWindows writes the spend-control windows that have not
// ended, as the reservation script charges them.
func (rb *rebuilder) restoreSpendWindows() {
	for k, w := range rb.spend {
		key := rb.keys.Spend(k.partner, k.card, k.window)
		rb.pw.pipe.HSet(rb.ctx, key, "amount", w.amount, "count", w.count)
		if w.end > 0 {
			rb.pw.pipe.PExpire(rb.ctx, key, time.UnixMilli(w.end).Sub(rb.cfg.now())+24*time.Hour)
		}
		rb.rep.SpendWindows++
	}
}

type spendKey struct{ partner, card, window string }

type spendWindow struct{ amount, count, end int64 }

// spendWindows sums what holds charged to spend-control windows that have
// not ended: their amount less what was released, and one each.
type spendWindows map[spendKey]*spendWindow

func (s spendWindows) add(partner, card, spec string, amount int64, now time.Time) {
	for _, part := range strings.Split(spec, ",") {
		_, rest, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		id, end, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		e := atoi64(end)
		if e > 0 && e <= now.UnixMilli() {
			continue
		}
		k := spendKey{partner, card, id}
		w := s[k]
		if w == nil {
			w = &spendWindow{end: e}
			s[k] = w
		}
		w.amount += max(0, amount)
		w.count++
	}
}

func atoi64(s string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n
}

// restoreVelocity writes the counters of the current velocity window, as
// velocity.lua keeps them: the window's count, for two windows.
func (rb *rebuilder) restoreVelocity() {
	for pc, n := range rb.velocity {
		k := rb.keys.Velocity(pc[0], pc[1], rb.velIndex)
		rb.pw.pipe.Set(rb.ctx, k, n, 2*rb.cfg.velWindow)
		rb.rep.Velocity++
	}
}

// storedAnswer is the idempotency record the script that made a hold wrote
// (reserve.lua, force_post.lua, refund.lua), rebuilt from the hold's row.
// Rows written before migration 0003 lack origin, requested and
// available_after: their record gets the approved amount as the request
// and no balance.
func storedAnswer(holdID string, col func(string) string) []any {
	// approved is what the script approved; amount may have grown since
	// (a capture with extra). Rows from before migration 0003 have only
	// amount.
	amount, requested, origin := col("approved"), col("requested"), col("origin")
	if amount == "" || amount == "0" {
		amount = col("amount")
	}
	if requested == "" || requested == "0" {
		requested = amount
	}
	if origin == "" {
		origin = "reserve"
		if col("state") == "REFUNDED" {
			origin = "refund"
		}
	}
	reason := "APPROVED"
	switch {
	case origin == "force_post":
		reason = "ADVICE_ACCEPTED"
	case origin == "reserve" && requested != amount:
		reason = "APPROVED_PARTIAL"
	}
	out := []any{"hold", holdID, "amount", requested, "approved", amount, "reason", reason,
		"approval", col("approval_code"), "kind", origin}
	if col("origin") != "" {
		out = append(out, "available", col("available_after"))
	}
	return out
}

// rebuildPartners lists every partner the store or Redis knows.
func rebuildPartners(ctx context.Context, rdb redis.UniversalClient, keys ledger.Keys, db *DB) ([]string, error) {
	set := map[string]bool{}
	rows, err := db.Query(ctx, `SELECT id FROM partners UNION SELECT DISTINCT partner_id FROM journal`)
	if err != nil {
		return nil, fmt.Errorf("listing partners: %w", err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing partners: %w", err)
		}
		set[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing partners: %w", err)
	}
	inRedis, err := partnerIDs(ctx, rdb, keys)
	if err != nil {
		return nil, err
	}
	for _, id := range inRedis {
		set[id] = true
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

// pipeWriter sends a pipeline every thousand or so commands, so a rebuild
// of millions of rows takes few round trips and bounded memory.
type pipeWriter struct {
	ctx  context.Context
	pipe redis.Pipeliner
}

func (pw *pipeWriter) maybeFlush() error {
	if pw.pipe.Len() < 2000 {
		return nil
	}
	return pw.flush()
}

func (pw *pipeWriter) flush() error {
	cmds, err := pw.pipe.Exec(pw.ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		for _, c := range cmds {
			if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
				return fmt.Errorf("writing to redis: %s: %w", c.Name(), e)
			}
		}
	}
	return nil
}

// storedRow is one row read from the durable store, every value as text.
type storedRow struct {
	partner, id, v string
	vals           []string // t.cols order
}

// eachRow streams every row of t.
func eachRow(ctx context.Context, db *DB, t *table, fn func(storedRow) error) error {
	rows, err := db.Query(ctx, t.selectSQL)
	if err != nil {
		return fmt.Errorf("querying %s: %w", t.name, err)
	}
	defer rows.Close()
	dst := make([]any, 3+len(t.cols))
	for rows.Next() {
		r := storedRow{vals: make([]string, len(t.cols))}
		dst[0], dst[1], dst[2] = &r.id, &r.partner, &r.v
		for i := range t.cols {
			dst[3+i] = &r.vals[i]
		}
		if err := rows.Scan(dst...); err != nil {
			return fmt.Errorf("reading %s: %w", t.name, err)
		}
		// Values the journal had to encode come back as Redis holds them.
		r.id = DecodeText(r.id)
		for i := range r.vals {
			r.vals[i] = DecodeText(r.vals[i])
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", t.name, err)
	}
	return nil
}
