package pgstore

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/antaca/antaca/ledger/ledgertest"
)

// snapshot renders every key under the fixture's prefix except the journal
// streams (compared separately) and the ready key's value. Row hashes are
// normalized to every column, since the scripts may never write a default.
func (fx *fixture) snapshot(tb testing.TB) map[string]string {
	tb.Helper()
	ctx := ctxT(tb, 10*time.Second)
	out := map[string]string{}
	keys, err := fx.rdb.Keys(ctx, fx.keys.Prefix+":*").Result()
	must(tb, err)
	for _, k := range keys {
		switch typ := fx.rdb.Type(ctx, k).Val(); typ {
		case "stream":
			continue
		case "string":
			if k == fx.keys.Ready() {
				out[k] = "(set)"
			} else {
				out[k] = fx.rdb.Get(ctx, k).Val()
			}
		case "hash":
			h := fx.rdb.HGetAll(ctx, k).Val()
			rest := strings.TrimPrefix(k, fx.keys.Prefix+":{p:")
			partner, rest, _ := strings.Cut(rest, "}:")
			tname, id, _ := strings.Cut(rest, ":")
			if t := tables[tname]; t != nil {
				h = normalizeRow(t, h, partner, id)
			}
			out[k] = fmt.Sprint(sortedPairs(h))
		case "set":
			m := fx.rdb.SMembers(ctx, k).Val()
			slices.Sort(m)
			out[k] = fmt.Sprint(m)
		case "zset":
			out[k] = fmt.Sprint(fx.rdb.ZRangeWithScores(ctx, k, 0, -1).Val())
		default:
			out[k] = "type " + typ
		}
	}
	return out
}

func sortedPairs(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

func diffSnapshots(got, want map[string]string) []string {
	var d []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			d = append(d, k+": missing")
		} else if g != want[k] {
			d = append(d, fmt.Sprintf("%s:\n    got  %s\n    want %s", k, g, want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			d = append(d, k+": unexpected "+got[k])
		}
	}
	return d
}

// TestRebuild loses every Redis key after a flush and wants Rebuild to
// restore identical rows and auxiliary keys, an audit without findings, and
// a write-behind that carries on.
func TestRebuild(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 30*time.Second)
	fx.seedProgram(t, "pa", "DEPOSIT", "400001")
	fx.seedProgram(t, "pb", "CREDIT", "400002")
	// A hold closed longer ago than the idempotency TTL: the ledger has
	// forgotten its answer and the scripts would have retired its row from
	// Redis, so the rebuild brings back neither (Postgres keeps the row).
	old := strconv.FormatInt(time.Now().Add(-8*24*time.Hour).UnixMilli(), 10)
	fx.emit(t, "pa", "force_post", chg{T: "holds", ID: "pa-old", Set: map[string]string{"balance_id": "pa-ub", "state": "CAPTURED",
		"idem_key": "idem-pa-old", "created_ms": old, "closed_ms": old}})
	must(t, fx.rdb.Set(ctx, fx.keys.Ready(), "1", 0).Err())
	w, _ := fx.worker(t, "w1")
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	before := fx.snapshot(t)
	oldHold := fx.keys.Row("pa", "holds", "pa-old")
	if _, ok := before[oldHold]; !ok {
		t.Fatal("the old closed hold is not in redis before the rebuild")
	}
	delete(before, oldHold) // a live Redis would have let it go by now

	rep, err := Rebuild(ctx, fx.rdb, fx.keys, fx.db)
	if err != nil || !rep.Skipped {
		t.Fatalf("Rebuild with ready set = %+v, %v; want skipped", rep, err)
	}

	ledgertest.DeleteKeys(t, ctx, fx.rdb, fx.keys.Pattern())
	rep, err = Rebuild(ctx, fx.rdb, fx.keys, fx.db)
	if err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	wantRows := map[string]int{"partners": 2, "partner_balances": 2, "customers": 2, "user_balances": 2, "cards": 4, "holds": 6, "funding": 2}
	for table, n := range wantRows {
		if rep.Rows[table] != n {
			t.Errorf("report: %s rows = %d, want %d", table, rep.Rows[table], n)
		}
	}
	if rep.Partners != 2 || rep.OpenHolds != 2 || rep.IdemKeys != 6 || rep.PANs != 2 || rep.RetiredHolds != 1 {
		t.Errorf("report = %s; want 2 partners, 2 open holds, 6 idempotency records, 2 PANs, 1 retired hold", rep)
	}
	// Closed holds keep the lifetime the scripts give them; open ones none.
	if ttl := fx.rdb.PTTL(ctx, fx.keys.Row("pa", "holds", "pa-h2")).Val(); ttl <= 6*24*time.Hour || ttl > DefaultIdempotencyTTL {
		t.Errorf("TTL of a restored closed hold = %s, want about %s from its closing", ttl, DefaultIdempotencyTTL)
	}
	if ttl := fx.rdb.PTTL(ctx, fx.keys.Row("pa", "holds", "pa-h1")).Val(); ttl != -1 {
		t.Errorf("TTL of a restored open hold = %s, want none", ttl)
	}
	if d := diffSnapshots(fx.snapshot(t), before); len(d) > 0 {
		t.Fatalf("rebuilt redis differs (%d):\n%s", len(d), strings.Join(d, "\n"))
	}
	ttl := fx.rdb.PTTL(ctx, fx.keys.Idem("pa", "idem-pa-1")).Val()
	if ttl <= 6*24*time.Hour || ttl > DefaultIdempotencyTTL {
		t.Errorf("TTL of a restored idempotency record = %s, want about %s from the hold's creation", ttl, DefaultIdempotencyTTL)
	}

	for _, p := range []string{"pa", "pb"} {
		if n, err := fx.rdb.XLen(ctx, fx.keys.Journal(p)).Result(); err != nil || n != 0 {
			t.Fatalf("journal stream of %s after rebuild holds %d entries (%v); want none", p, n, err)
		}
	}
	if a, err := Audit(ctx, fx.rdb, fx.keys, fx.db); err != nil || !a.OK() {
		t.Fatalf("Audit after rebuild: %v\n%s", err, a)
	} else if a.RetiredHolds != 1 {
		t.Errorf("audit counted %d retired holds, want 1 (pa-old)", a.RetiredHolds)
	}

	// The next event continues the sequence and reaches Postgres.
	seq := fx.emit(t, "pa", "card_unlock", chg{T: "cards", ID: "pa-card", Set: map[string]string{"status": "ACTIVE", "lock_reason": "0"}})
	if seq != seedEvents+2 {
		t.Fatalf("first seq after rebuild = %d, want %d", seq, seedEvents+2)
	}
	w2, _ := fx.worker(t, "w2")
	if err := w2.Flush(ctx); err != nil {
		t.Fatalf("Flush after rebuild: %v", err)
	}
	fx.assertMirrors(t, "holds/pa-old")
	fx.assertJournal(t, "pa", seedEvents+2)
}

// TestRebuildRefusesUnflushed: with entries Postgres lacks, rebuilding
// would overwrite newer state.
func TestRebuildRefusesUnflushed(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 20*time.Second)
	fx.seedProgram(t, "pa", "DEPOSIT", "400001")
	_, err := Rebuild(ctx, fx.rdb, fx.keys, fx.db)
	if !errors.Is(err, ErrUnflushed) {
		t.Fatalf("Rebuild with an unflushed journal: err = %v, want ErrUnflushed", err)
	}
	if fx.rdb.Exists(ctx, fx.keys.Ready()).Val() != 0 {
		t.Fatal("ready was set by a refused rebuild")
	}
}

// TestRebuildNeverLowersSeq: a sequence counter Redis kept stays.
func TestRebuildNeverLowersSeq(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 20*time.Second)
	fx.seedProgram(t, "pa", "DEPOSIT", "400001")
	w, _ := fx.worker(t, "w1")
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		start string
		want  string
	}{
		{name: "lost", start: "", want: fmt.Sprint(seedEvents)},
		{name: "behind", start: "3", want: fmt.Sprint(seedEvents)},
		{name: "ahead", start: "500", want: "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			must(t, fx.rdb.Del(ctx, fx.keys.Ready(), fx.keys.Seq("pa")).Err())
			if tt.start != "" {
				must(t, fx.rdb.Set(ctx, fx.keys.Seq("pa"), tt.start, 0).Err())
			}
			if _, err := Rebuild(ctx, fx.rdb, fx.keys, fx.db); err != nil {
				t.Fatal(err)
			}
			if got := fx.rdb.Get(ctx, fx.keys.Seq("pa")).Val(); got != tt.want {
				t.Fatalf("seq = %q, want %q", got, tt.want)
			}
		})
	}
}
