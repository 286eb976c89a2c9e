package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// fixture is one test's Redis key space and migrated Postgres database,
// or (newEmbeddedFixture) the stores of `antaca demo`: an in-process Redis
// and a SQLite file.
type fixture struct {
	rdb   *redis.Client
	keys  ledger.Keys
	dbURL string
	pool  *pgxpool.Pool // nil on SQLite
	db    *DB
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	rdb, prefix := ledgertest.MustRedis(tb)
	dbURL := ledgertest.MustDatabase(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Migrate(ctx, dbURL); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	pool, err := OpenPool(ctx, dbURL)
	if err != nil {
		tb.Fatalf("OpenPool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return &fixture{rdb: rdb, keys: ledger.Keys{Prefix: prefix}, dbURL: dbURL, pool: pool, db: Postgres(pool)}
}

// newEmbeddedFixture gives the test the stores of `antaca demo`.
func newEmbeddedFixture(tb testing.TB) *fixture {
	tb.Helper()
	rdb, prefix, _ := ledgertest.MustEmbeddedRedis(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := OpenSQLite(ctx, filepath.Join(tb.TempDir(), "antaca.db"))
	if err != nil {
		tb.Fatalf("OpenSQLite: %v", err)
	}
	tb.Cleanup(db.Close)
	return &fixture{rdb: rdb, keys: ledger.Keys{Prefix: prefix}, db: db}
}

// worker builds a write-behind on the fixture with test-friendly timings.
func (fx *fixture) worker(tb testing.TB, consumer string, mod ...func(*Options)) (*WriteBehind, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	opts := Options{
		Redis: fx.rdb, Keys: fx.keys, Pool: fx.pool,
		SweepInterval: 50 * time.Millisecond, SweepAfter: 30 * time.Second,
		RetryMax: 200 * time.Millisecond, Registerer: reg,
	}
	if fx.pool == nil {
		opts.Sink = fx.db.Sink()
	}
	for _, m := range mod {
		m(&opts)
	}
	w, err := NewWriteBehind(opts)
	if err != nil {
		tb.Fatalf("NewWriteBehind: %v", err)
	}
	return w, reg
}

func ctxT(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// chg is a change as a test script makes it.
type chg struct {
	T, ID string
	Set   map[string]string
	Add   map[string]int64
}

// emitScript plays a ledger script: it applies changes to the row hashes
// (bumping each row's v), takes the next sequence number and appends the
// journal entry with XADD, all atomically, the way docs/ledger.md says the
// real scripts do. Like them it encodes with cjson, so an event without
// changes carries ch={} — which the write-behind must accept.
var emitScript = redis.NewScript(`
local changes = cjson.decode(ARGV[6])
local out = {}
for i, c in ipairs(changes) do
  local key = ARGV[2] .. ':' .. c.t .. ':' .. c.id
  local v = redis.call('HINCRBY', key, 'v', 1)
  redis.call('HSET', key, 'id', c.id, 'partner_id', ARGV[1])
  for col, val in pairs(c.set or {}) do redis.call('HSET', key, col, val) end
  for col, d in pairs(c.add or {}) do redis.call('HINCRBY', key, col, d) end
  out[i] = {t = c.t, id = c.id, v = tostring(v), set = c.set, add = c.add}
end
local seq = redis.call('INCR', KEYS[1])
redis.call('SADD', ARGV[7], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'seq', seq, 'type', ARGV[3], 'reason', ARGV[4], 'ts', ARGV[5], 'ch', cjson.encode(out))
return seq`)

func changesArg(cs []chg) string {
	type wire struct {
		T   string            `json:"t"`
		ID  string            `json:"id"`
		Set map[string]string `json:"set,omitempty"`
		Add map[string]string `json:"add,omitempty"`
	}
	ws := make([]wire, len(cs))
	for i, c := range cs {
		ws[i] = wire{T: c.T, ID: c.ID, Set: c.Set}
		if len(c.Add) > 0 {
			ws[i].Add = map[string]string{}
			for k, v := range c.Add {
				ws[i].Add[k] = strconv.FormatInt(v, 10)
			}
		}
	}
	b, _ := json.Marshal(ws)
	return string(b)
}

// emit runs emitScript for partner and returns the event's seq.
func (fx *fixture) emit(tb testing.TB, partner, typ string, cs ...chg) int64 {
	tb.Helper()
	ctx := ctxT(tb, 5*time.Second)
	arg := changesArg(cs)
	if len(cs) == 0 {
		arg = "[]"
	}
	seq, err := emitScript.Run(ctx, fx.rdb, []string{fx.keys.Seq(partner), fx.keys.Journal(partner)},
		partner, fx.keys.Tag(partner), typ, "", strconv.FormatInt(time.Now().UnixMilli(), 10), arg, fx.keys.Partners()).Int64()
	if err != nil {
		tb.Fatalf("emitting %s for %s: %v", typ, partner, err)
	}
	return seq
}

// must fails the test on a Redis error.
func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// seedEvents is the number of events seedProgram writes per partner.
const seedEvents = 14

// seedProgram plays the life of a partner program: partner, balance, funding,
// a customer with a balance and two cards (one a copy), reloads, an open and
// a partly captured hold, a refund, a card lock and a decline without
// changes. It also
// writes the auxiliary keys the real scripts maintain, so Rebuild can be
// checked against them. model is DEPOSIT or CREDIT.
func (fx *fixture) seedProgram(tb testing.TB, p, model, bin string) {
	tb.Helper()
	ctx := ctxT(tb, 10*time.Second)
	k := fx.keys
	const cur = "EUR"
	pb, fund, cus, ub := p+"-pb", p+":"+cur, p+"-cus", p+"-ub"
	card, card2 := p+"-card", p+"-card2"
	h1, h2 := p+"-h1", p+"-h2"
	panHash := "hmac-" + p

	fx.emit(tb, p, "partner_create", chg{T: "partners", ID: p, Set: map[string]string{
		"name": "Program " + p, "bin": bin, "currency": cur, "funding_model": model, "created_at": "2026-01-02T03:04:05Z"}})
	must(tb, fx.rdb.HSet(ctx, k.BINs(), bin, p).Err())
	must(tb, fx.rdb.SAdd(ctx, k.Partners(), p).Err())
	must(tb, fx.rdb.HSet(ctx, k.Index(), p, p).Err())

	fx.emit(tb, p, "partner_balance_create", chg{T: "partner_balances", ID: pb, Set: map[string]string{
		"type": model, "currency": cur, "state": "ACTIVE", "low_threshold": "1000", "created_at": "2026-01-02T03:04:05Z"}})
	must(tb, fx.rdb.Set(ctx, k.PartnerBalanceByCurrency(p, model, cur), pb, 0).Err())
	must(tb, fx.rdb.HSet(ctx, k.Index(), pb, p).Err())

	fx.emit(tb, p, "reload_partner",
		chg{T: "partner_balances", ID: pb, Add: map[string]int64{"available": 1_000_000}},
		chg{T: "funding", ID: fund, Set: map[string]string{"currency": cur}, Add: map[string]int64{"total_in": 1_000_000}})

	fx.emit(tb, p, "customer_create", chg{T: "customers", ID: cus, Set: map[string]string{
		"external_id": "ext-" + p, "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
		"phone": "+3312345678", "kyc_status": "VERIFIED", "created_at": "2026-01-03T00:00:00Z"}})
	must(tb, fx.rdb.HSet(ctx, k.Index(), cus, p).Err())

	fx.emit(tb, p, "balance_create", chg{T: "user_balances", ID: ub, Set: map[string]string{
		"customer_id": cus, "currency": cur, "state": "ACTIVE", "created_at": "2026-01-03T00:00:00Z"}})
	must(tb, fx.rdb.HSet(ctx, k.Index(), ub, p).Err())
	must(tb, fx.rdb.SAdd(ctx, k.CustomerBalances(p, cus), ub).Err())

	cardSet := map[string]string{"customer_id": cus, "balance_id": ub, "type": "VIRTUAL", "status": "ACTIVE",
		"pan_enc": "gcm:secret-pan-" + p, "pan_hash": panHash, "bin": bin, "last4": "4242", "expiry": "2912",
		"cvv_enc": "gcm:secret-cvv", "pin_verifier": "argon:secret-pin", "pin_tries": "0", "created_at": "2026-01-03T00:00:00Z"}
	fx.emit(tb, p, "card_issue", chg{T: "cards", ID: card, Set: cardSet})
	must(tb, fx.rdb.Set(ctx, k.PAN(p, panHash), card, 0).Err())
	must(tb, fx.rdb.HSet(ctx, k.Index(), card, p).Err())
	copySet := maps.Clone(cardSet)
	copySet["copy_of"], copySet["type"], copySet["delivery"] = card, "PHYSICAL", "POSTED"
	fx.emit(tb, p, "card_copy", chg{T: "cards", ID: card2, Set: copySet})
	must(tb, fx.rdb.HSet(ctx, k.Index(), card2, p).Err())
	must(tb, fx.rdb.SAdd(ctx, k.BalanceCards(p, ub), card, card2).Err())

	// Reload the user: DEPOSIT brings money from outside, CREDIT moves it
	// from the partner's credit line.
	if model == "DEPOSIT" {
		fx.emit(tb, p, "reload_user",
			chg{T: "user_balances", ID: ub, Add: map[string]int64{"available": 50_000}},
			chg{T: "funding", ID: fund, Add: map[string]int64{"total_in": 50_000}})
	} else {
		fx.emit(tb, p, "reload_user",
			chg{T: "partner_balances", ID: pb, Add: map[string]int64{"available": -50_000}},
			chg{T: "user_balances", ID: ub, Add: map[string]int64{"available": 50_000}})
	}

	reserve := func(hold, idem string, amount int64, created int64) {
		hc := chg{T: "holds", ID: hold, Set: map[string]string{"balance_id": ub, "card_id": card, "currency": cur,
			"amount": strconv.FormatInt(amount, 10), "state": "OPEN", "idem_key": idem, "approval_code": "A" + hold[len(hold)-2:],
			"txn_type": "purchase", "created_ms": strconv.FormatInt(created, 10)}}
		cs := []chg{hc, {T: "user_balances", ID: ub, Add: map[string]int64{"available": -amount, "held": amount}}}
		if model == "DEPOSIT" {
			hc.Set["partner_balance_id"] = pb
			cs = append(cs, chg{T: "partner_balances", ID: pb, Add: map[string]int64{"available": -amount, "reserved": amount}})
		}
		fx.emit(tb, p, "reserve", cs...)
		must(tb, fx.rdb.ZAdd(ctx, k.OpenHolds(p), redis.Z{Score: float64(created), Member: hold}).Err())
		must(tb, fx.rdb.HSet(ctx, k.Idem(p, idem), "hold", hold, "amount", amount, "approved", amount, "reason", "APPROVED",
			"approval", "A"+hold[len(hold)-2:], "kind", "reserve").Err())
	}
	recent := time.Now().Add(-time.Hour).UnixMilli()
	reserve(h1, "idem-"+p+"-1", 1200, recent)
	reserve(h2, "idem-"+p+"-2", 3000, recent+1000)

	// Partial capture of h2 that closes it: 2000 posted, 1000 released.
	capture := []chg{
		{T: "holds", ID: h2, Set: map[string]string{"state": "CAPTURED", "captured": "2000", "released": "1000", "closed_ms": strconv.FormatInt(recent+1500, 10)}},
		{T: "user_balances", ID: ub, Add: map[string]int64{"held": -3000, "posted": 2000, "available": 1000}},
	}
	if model == "DEPOSIT" {
		capture = append(capture, chg{T: "partner_balances", ID: pb, Add: map[string]int64{"reserved": -3000, "settled": 2000, "available": 1000}})
	}
	fx.emit(tb, p, "capture", capture...)
	must(tb, fx.rdb.ZRem(ctx, k.OpenHolds(p), h2).Err())

	// A refund: money from outside, kept as a REFUNDED hold row.
	fx.emit(tb, p, "refund",
		chg{T: "user_balances", ID: ub, Add: map[string]int64{"available": 500}},
		chg{T: "funding", ID: fund, Add: map[string]int64{"total_in": 500}},
		chg{T: "holds", ID: p + "-r1", Set: map[string]string{"balance_id": ub, "card_id": card, "partner_balance_id": "",
			"currency": cur, "amount": "500", "captured": "0", "released": "0", "state": "REFUNDED", "idem_key": "idem-" + p + "-r",
			"approval_code": "R00001", "txn_type": "20", "created_ms": strconv.FormatInt(recent+2000, 10), "closed_ms": strconv.FormatInt(recent+2000, 10)}})
	must(tb, fx.rdb.HSet(ctx, k.Idem(p, "idem-"+p+"-r"), "hold", p+"-r1", "amount", "500", "approved", "500", "reason", "APPROVED",
		"approval", "R00001", "kind", "refund").Err())

	fx.emit(tb, p, "card_lock", chg{T: "cards", ID: card, Set: map[string]string{"status": "LOCKED", "lock_reason": "3", "lock_source": "partner"}})
	fx.emit(tb, p, "decline")
}

// rowDump is every row of one side, "table/id" -> column -> value, with
// every column present (defaults for what Redis never wrote).
type rowDump map[string]map[string]string

func normalizeRow(t *table, h map[string]string, partner, id string) map[string]string {
	row := map[string]string{"id": id, "partner_id": partner, "v": "0"}
	if v := h["v"]; v != "" {
		row["v"] = v
	}
	for i, c := range t.cols {
		row[c] = h[c]
		if t.numeric[i] && row[c] == "" {
			row[c] = "0"
		}
	}
	for f, v := range h { // fields no column holds show up as such
		if _, ok := row[f]; !ok {
			row["?"+f] = v
		}
	}
	return row
}

// dumpRedis reads every row hash under the fixture's prefix.
func (fx *fixture) dumpRedis(tb testing.TB) rowDump {
	tb.Helper()
	ctx := ctxT(tb, 10*time.Second)
	out := rowDump{}
	iter := fx.rdb.Scan(ctx, 0, fx.keys.Prefix+":{p:*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		rest := strings.TrimPrefix(key, fx.keys.Prefix+":{p:")
		partner, rest, _ := strings.Cut(rest, "}:")
		tname, id, ok := strings.Cut(rest, ":")
		t := tables[tname]
		if !ok || t == nil || fx.rdb.Type(ctx, key).Val() != "hash" {
			continue
		}
		out[tname+"/"+id] = normalizeRow(t, fx.rdb.HGetAll(ctx, key).Val(), partner, id)
	}
	must(tb, iter.Err())
	return out
}

// dumpPG reads every row of every table with to_jsonb (SELECT * on
// SQLite), independently of the package's own readers.
func (fx *fixture) dumpPG(tb testing.TB) rowDump {
	tb.Helper()
	ctx := ctxT(tb, 10*time.Second)
	if fx.pool == nil {
		return fx.dumpSQLite(tb, ctx)
	}
	out := rowDump{}
	for _, name := range ledger.Tables {
		rows, err := fx.pool.Query(ctx, "SELECT to_jsonb(x)::text FROM "+name+" x")
		must(tb, err)
		for rows.Next() {
			var js string
			must(tb, rows.Scan(&js))
			dec := json.NewDecoder(strings.NewReader(js))
			dec.UseNumber()
			var m map[string]any
			must(tb, dec.Decode(&m))
			row := map[string]string{}
			for k, v := range m {
				if k == "cv" || k == "ca" { // the sink's bookkeeping, not row data
					continue
				}
				row[k] = fmt.Sprint(v)
			}
			out[name+"/"+row["id"]] = row
		}
		must(tb, rows.Err())
	}
	return out
}

func (fx *fixture) dumpSQLite(tb testing.TB, ctx context.Context) rowDump {
	tb.Helper()
	out := rowDump{}
	for _, name := range ledger.Tables {
		rows, err := fx.db.lite.QueryContext(ctx, "SELECT * FROM "+name)
		must(tb, err)
		cols, err := rows.Columns()
		must(tb, err)
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			must(tb, rows.Scan(ptrs...))
			row := map[string]string{}
			for i, c := range cols {
				if c == "cv" || c == "ca" {
					continue
				}
				row[c] = fmt.Sprint(vals[i])
			}
			out[name+"/"+row["id"]] = row
		}
		must(tb, rows.Err())
		must(tb, rows.Close())
	}
	return out
}

// diffDumps lists the differences between two dumps, empty when equal.
func diffDumps(got, want rowDump) []string {
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		if !ok {
			diffs = append(diffs, k+": missing")
			continue
		}
		for _, c := range slices.Sorted(maps.Keys(want[k])) {
			if g[c] != want[k][c] {
				diffs = append(diffs, fmt.Sprintf("%s %s: got %q, want %q", k, c, g[c], want[k][c]))
			}
		}
		for c := range g {
			if _, ok := want[k][c]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s %s: unexpected %q", k, c, g[c]))
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, k+": unexpected row")
		}
	}
	sort.Strings(diffs)
	return diffs
}

// assertMirrors fails unless Postgres holds exactly the Redis rows.
// Rows named in retired ("holds/<id>") are closed holds Redis has let go:
// Postgres must still hold them.
func (fx *fixture) assertMirrors(tb testing.TB, retired ...string) {
	tb.Helper()
	pg := fx.dumpPG(tb)
	for _, k := range retired {
		if _, ok := pg[k]; !ok {
			tb.Fatalf("postgres lacks the retired row %s", k)
		}
		delete(pg, k)
	}
	if d := diffDumps(pg, fx.dumpRedis(tb)); len(d) > 0 {
		tb.Fatalf("postgres differs from redis (%d):\n%s", len(d), strings.Join(d, "\n"))
	}
}

// journalSeqs returns the stored seqs of partner, ascending.
func (fx *fixture) journalSeqs(tb testing.TB, partner string) []int64 {
	tb.Helper()
	rows, err := fx.db.Query(ctxT(tb, 5*time.Second), "SELECT seq FROM journal WHERE partner_id = $1 ORDER BY seq", partner)
	must(tb, err)
	var out []int64
	for rows.Next() {
		var s int64
		must(tb, rows.Scan(&s))
		out = append(out, s)
	}
	must(tb, rows.Err())
	return out
}

// assertJournal fails unless partner's journal holds exactly seqs 1..n:
// no duplicate, no gap.
func (fx *fixture) assertJournal(tb testing.TB, partner string, n int64) {
	tb.Helper()
	got := fx.journalSeqs(tb, partner)
	want := make([]int64, n)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if !slices.Equal(got, want) {
		tb.Fatalf("journal of %s: got seqs %v, want 1..%d", partner, got, n)
	}
}

func counterValue(tb testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	must(tb, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metric
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	tb.Fatalf("metric %s %v not found", name, labels)
	return 0
}

// waitFor polls cond until it holds or d passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lastEntry returns the stream entry of partner with journal sequence seq,
// as a script would have returned it.
func (fx *fixture) lastEntry(tb testing.TB, partner string, seq int64) ledger.JournalEntry {
	tb.Helper()
	ctx := ctxT(tb, 5*time.Second)
	msgs, err := fx.rdb.XRange(ctx, fx.keys.Journal(partner), "-", "+").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		if e := entryFromStream(partner, msgs[i]); e.Seq == seq {
			return e
		}
	}
	tb.Fatalf("no entry with seq %d in the stream of %s", seq, partner)
	return ledger.JournalEntry{}
}

// assertQuarantined wants the entry of partner with seq in the quarantine,
// its error containing want.
func (fx *fixture) assertQuarantined(tb testing.TB, partner string, seq int64, want string) {
	tb.Helper()
	ctx := ctxT(tb, 5*time.Second)
	var msg string
	if err := fx.db.QueryRow(ctx, `SELECT error FROM journal_quarantine WHERE partner_id = $1 AND seq = $2`, partner, seq).Scan(&msg); err != nil {
		tb.Fatalf("quarantined entry %s/%d: %v", partner, seq, err)
	}
	if !strings.Contains(msg, want) {
		tb.Errorf("quarantined entry %s/%d error = %q, want it to contain %q", partner, seq, msg, want)
	}
}
