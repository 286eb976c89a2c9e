package pgstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestParseEntry(t *testing.T) {
	ok := func(ch string) map[string]any {
		return map[string]any{"seq": "7", "type": "reserve", "reason": "APPROVED", "ts": "1780000000000", "ch": ch}
	}
	tests := []struct {
		name    string
		fields  map[string]any
		want    []Change
		wantErr string
	}{
		{
			name:   "documented format",
			fields: ok(`[{"t":"user_balances","id":"ub1","v":"4","set":{"state":"ACTIVE"},"add":{"available":"-1200","held":"1200"}}]`),
			want: []Change{{Table: "user_balances", ID: "ub1", V: 4, Set: map[string]string{"state": "ACTIVE"},
				Add: map[string]int64{"available": -1200, "held": 1200}}},
		},
		{
			name:   "numbers instead of strings",
			fields: ok(`[{"t":"holds","id":"h1","v":2,"set":{"amount":1200,"created_ms":1.78e+12},"add":{}}]`),
			want:   []Change{{Table: "holds", ID: "h1", V: 2, Set: map[string]string{"amount": "1200", "created_ms": "1780000000000"}}},
		},
		{name: "cjson empty array", fields: ok(`{}`)},
		{name: "no ch field", fields: map[string]any{"seq": "1", "type": "decline"}},
		{
			name:   "identity echoed in set",
			fields: ok(`[{"t":"customers","id":"c1","v":"1","set":{"id":"c1","partner_id":"p1","first_name":"Ada"}}]`),
			want:   []Change{{Table: "customers", ID: "c1", V: 1, Set: map[string]string{"first_name": "Ada"}}},
		},
		{name: "unknown table", fields: ok(`[{"t":"cardz","id":"c1","v":"1"}]`), wantErr: `unknown table "cardz"`},
		{name: "unknown column", fields: ok(`[{"t":"cards","id":"c1","v":"1","set":{"pan":"4111"}}]`), wantErr: `table "cards" has no column "pan"`},
		{name: "add to text column", fields: ok(`[{"t":"cards","id":"c1","v":"1","add":{"status":"1"}}]`), wantErr: `cannot add to text column "status"`},
		{name: "bad numeric set", fields: ok(`[{"t":"holds","id":"h1","v":"1","set":{"amount":"12.5"}}]`), wantErr: `amount="12.5" is not an integer`},
		{name: "bad add", fields: ok(`[{"t":"holds","id":"h1","v":"1","add":{"amount":"x"}}]`), wantErr: `add amount="x" is not an integer`},
		{name: "set and add one column", fields: ok(`[{"t":"holds","id":"h1","v":"1","set":{"amount":"1"},"add":{"amount":"1"}}]`), wantErr: `both set and added`},
		{name: "missing version", fields: ok(`[{"t":"holds","id":"h1"}]`), wantErr: `version "" is not a positive integer`},
		{name: "foreign partner echoed", fields: ok(`[{"t":"customers","id":"c1","v":"1","set":{"partner_id":"p2"}}]`), wantErr: `disagrees`},
		{name: "missing seq", fields: map[string]any{"type": "x"}, wantErr: `seq "" is not a positive integer`},
		{name: "missing type", fields: map[string]any{"seq": "3"}, wantErr: "no type"},
		{name: "malformed json", fields: ok(`[{"t":`), wantErr: "decoding ch"},
		{
			name:   "NUL in a value is encoded, not refused",
			fields: ok(`[{"t":"customers","id":"c1","v":"1","set":{"first_name":"A\u0000da"}}]`),
			want:   []Change{{Table: "customers", ID: "c1", V: 1, Set: map[string]string{"first_name": TextEscape + "QQBkYQ=="}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := ParseEntry("p1", "1780000000000-0", tt.fields)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseEntry error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEntry: %v", err)
			}
			if len(ev.Changes) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(ev.Changes, tt.want) {
				t.Fatalf("changes = %+v, want %+v", ev.Changes, tt.want)
			}
		})
	}
}

// applySequential is the rule of docs/ledger.md applied literally, one
// statement at a time: the oracle PGSink's set-based version must match.
func applySequential(ctx context.Context, conn *pgx.Conn, events []Event) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, ev := range events {
		js := changesJSON(ev.Changes)
		tag, err := tx.Exec(ctx, `INSERT INTO journal (partner_id, seq, type, reason, ts_ms, changes)
			VALUES ($1, $2, $3, $4, $5, $6::text::jsonb) ON CONFLICT DO NOTHING`,
			ev.PartnerID, ev.Seq, ev.Type, ev.Reason, ev.TsMs, string(js))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			continue
		}
		for _, c := range ev.Changes {
			q := quote(c.Table)
			if _, err := tx.Exec(ctx, "INSERT INTO "+q+" (id, partner_id) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING", c.ID, ev.PartnerID); err != nil {
				return err
			}
			for col, d := range c.Add {
				if _, err := tx.Exec(ctx, "UPDATE "+q+" SET "+quote(col)+" = "+quote(col)+" + $1 WHERE id = $2", d, c.ID); err != nil {
					return err
				}
			}
			sets, args := []string{"v = $1"}, []any{c.V, c.ID}
			for col, val := range c.Set {
				args = append(args, val)
				sets = append(sets, fmt.Sprintf("%s = $%d::text::%s", quote(col), len(args), tables[c.Table].pgType(tables[c.Table].index[col])))
			}
			if _, err := tx.Exec(ctx, "UPDATE "+q+" SET "+strings.Join(sets, ", ")+" WHERE id = $2 AND v < $1", args...); err != nil {
				return err
			}
		}
	}
	return tx.Commit(ctx)
}

// assertSequentialRule applies evs one at a time with the literal rule
// to a fresh database and wants got's tables to equal it.
func assertSequentialRule(t *testing.T, ctx context.Context, got *fixture, evs []Event) {
	t.Helper()
	want := newFixture(t)
	conn, err := pgx.Connect(ctx, want.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := applySequential(ctx, conn, evs); err != nil {
		t.Fatalf("sequential apply: %v", err)
	}
	if d := diffDumps(got.dumpPG(t), want.dumpPG(t)); len(d) > 0 {
		t.Fatalf("PGSink differs from the sequential rule (%d):\n%s", len(d), strings.Join(d, "\n"))
	}
}

// randomEvents makes events over a few rows the way scripts do: each change
// carries the row's next version, sets some columns and adds to numeric
// ones; sometimes an event touches one row twice.
func randomEvents(rng *rand.Rand, n int) []Event {
	type rowRef struct{ table, id string }
	refs := []rowRef{{"user_balances", "ub1"}, {"user_balances", "ub2"}, {"holds", "h1"}, {"holds", "h2"}, {"cards", "c1"}}
	versions := map[rowRef]int64{}
	evs := make([]Event, 0, n)
	for seq := int64(1); seq <= int64(n); seq++ {
		ev := Event{PartnerID: "p1", Seq: seq, Type: "t" + strconv.Itoa(rng.IntN(5))}
		for range 1 + rng.IntN(3) {
			ref := refs[rng.IntN(len(refs))]
			if rng.IntN(4) > 0 || versions[ref] == 0 { // else: same row again in this event, same version
				versions[ref]++
			}
			t := tables[ref.table]
			c := Change{Table: ref.table, ID: ref.id, V: versions[ref], Set: map[string]string{}, Add: map[string]int64{}}
			for i, col := range t.cols {
				switch r := rng.IntN(6); {
				case r == 0:
					if t.numeric[i] {
						c.Set[col] = strconv.Itoa(rng.IntN(1000))
					} else {
						c.Set[col] = fmt.Sprintf("%s-%d", col, rng.IntN(100))
					}
				case r == 1 && t.numeric[i]:
					c.Add[col] = int64(rng.IntN(200) - 100)
				}
			}
			ev.Changes = append(ev.Changes, c)
		}
		evs = append(evs, ev)
	}
	return evs
}

// TestSinkMatchesSequentialRule applies random event streams with PGSink,
// in random batches and with replays, and one event at a time with the
// literal rule, and wants identical tables.
func TestSinkMatchesSequentialRule(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 99))
			evs := randomEvents(rng, 150)
			ctx := ctxT(t, 30*time.Second)

			got := newFixture(t)
			sink := NewPGSink(got.pool)
			applied := 0
			for i := 0; i < len(evs); {
				n := 1 + rng.IntN(40)
				batch := evs[i:min(i+n, len(evs))]
				if i > 0 && rng.IntN(3) == 0 { // replay some already applied events in the same batch
					batch = append(append([]Event(nil), evs[max(0, i-5):i]...), batch...)
				}
				a, err := sink.Apply(ctx, batch)
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				applied += a
				i += n
			}
			if applied != len(evs) {
				t.Fatalf("applied %d events, want %d (replays must count as nothing)", applied, len(evs))
			}

			assertSequentialRule(t, ctx, got, evs)
		})
	}
}

// TestSinkFreshRowThatExists: a batch whose rows of a table all start at
// version 1 takes a plain INSERT for that table; when such a row exists
// after all (its versions started again, e.g. a row Redis lost and made
// anew), the batch falls back to the careful path and ends as the literal
// rule says: the stale sets lose, the adds count.
func TestSinkFreshRowThatExists(t *testing.T) {
	ctx := ctxT(t, 20*time.Second)
	evs := []Event{
		{PartnerID: "p1", Seq: 1, Type: "reserve", Changes: []Change{{Table: "holds", ID: "h1", V: 1,
			Set: map[string]string{"state": "OPEN", "amount": "100"}, Add: map[string]int64{}}}},
		{PartnerID: "p1", Seq: 2, Type: "capture", Changes: []Change{{Table: "holds", ID: "h1", V: 2,
			Set: map[string]string{"state": "CAPTURED"}, Add: map[string]int64{"captured": 60}}}},
		// h1 at version 1 again, and a new h2.
		{PartnerID: "p1", Seq: 3, Type: "reserve", Changes: []Change{
			{Table: "holds", ID: "h1", V: 1, Set: map[string]string{"state": "OPEN"}, Add: map[string]int64{"captured": 5}},
			{Table: "holds", ID: "h2", V: 1, Set: map[string]string{"state": "OPEN", "amount": "7"}, Add: map[string]int64{}}}},
	}
	got := newFixture(t)
	sink := NewPGSink(got.pool)
	for _, b := range [][]Event{evs[:1], evs[1:2], evs[2:]} {
		if n, err := sink.Apply(ctx, b); err != nil || n != len(b) {
			t.Fatalf("Apply = %d, %v", n, err)
		}
	}
	assertSequentialRule(t, ctx, got, evs)
	var status string
	var captured int64
	if err := got.pool.QueryRow(ctx, `SELECT state, captured FROM holds WHERE id = 'h1'`).Scan(&status, &captured); err != nil ||
		status != "CAPTURED" || captured != 65 {
		t.Fatalf("h1 = %s, captured %d, %v; want CAPTURED, 65", status, captured, err)
	}
}

// TestSinkReplayChangesNothing applies the same events twice.
func TestSinkReplayChangesNothing(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 20*time.Second)
	evs := randomEvents(rand.New(rand.NewPCG(7, 7)), 60)
	sink := NewPGSink(fx.pool)
	if n, err := sink.Apply(ctx, evs); err != nil || n != len(evs) {
		t.Fatalf("first Apply = %d, %v; want %d, nil", n, err, len(evs))
	}
	before := fx.dumpPG(t)
	if n, err := sink.Apply(ctx, evs); err != nil || n != 0 {
		t.Fatalf("replayed Apply = %d, %v; want 0, nil", n, err)
	}
	if d := diffDumps(fx.dumpPG(t), before); len(d) > 0 {
		t.Fatalf("replay changed rows:\n%s", strings.Join(d, "\n"))
	}
}

// TestChangesJSONRoundTrip: the hand-written journal encoding decodes back
// to the same changes, awkward characters included.
func TestChangesJSONRoundTrip(t *testing.T) {
	evs := randomEvents(rand.New(rand.NewPCG(5, 5)), 40)
	evs = append(evs, Event{Changes: []Change{{Table: "customers", ID: `c"1\`, V: 3,
		Set: map[string]string{"first_name": "Zoë \"Z\" \\ \n\t\u0001 €", "email": ""}, Add: map[string]int64{}}}})
	for i, ev := range evs {
		js := changesJSON(ev.Changes)
		got, err := decodeChanges("p1", string(js))
		if err != nil {
			t.Fatalf("event %d: decoding %s: %v", i, js, err)
		}
		want := make([]Change, len(ev.Changes))
		for j, c := range ev.Changes {
			if len(c.Set) == 0 {
				c.Set = nil
			}
			if len(c.Add) == 0 {
				c.Add = nil
			}
			want[j] = c
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d: round trip of %s\ngot  %+v\nwant %+v", i, js, got, want)
		}
	}
}

// additive are the numeric columns scripts add to after the set that
// created the row; every other column is only ever set.
var additive = map[string]bool{
	"user_balances.available": true, "user_balances.held": true, "user_balances.posted": true,
	"partner_balances.available": true, "partner_balances.reserved": true, "partner_balances.settled": true,
	"holds.amount": true, "holds.captured": true, "holds.released": true, "funding.total_in": true,
}

// scriptLikeEvents makes events as the scripts make them: one change per
// row per event carrying the row's next version; a row's first change sets
// every column; later ones set text and set-only numeric columns or add to
// additive ones.
func scriptLikeEvents(rng *rand.Rand, n int) []Event {
	type rowRef struct{ table, id string }
	refs := []rowRef{{"user_balances", "ub1"}, {"partner_balances", "pb1"}, {"holds", "h1"}, {"holds", "h2"}, {"cards", "c1"}, {"funding", "f1"}}
	versions := map[rowRef]int64{}
	evs := make([]Event, 0, n)
	for seq := int64(1); seq <= int64(n); seq++ {
		ev := Event{PartnerID: "p1", Seq: seq, Type: "t"}
		picked := map[rowRef]bool{}
		for range 1 + rng.IntN(3) {
			ref := refs[rng.IntN(len(refs))]
			if picked[ref] {
				continue
			}
			picked[ref] = true
			versions[ref]++
			t := tables[ref.table]
			c := Change{Table: ref.table, ID: ref.id, V: versions[ref], Set: map[string]string{}, Add: map[string]int64{}}
			for i, col := range t.cols {
				switch {
				case versions[ref] == 1 && t.numeric[i]:
					c.Set[col] = strconv.Itoa(rng.IntN(1000))
				case versions[ref] == 1:
					c.Set[col] = fmt.Sprintf("%s-%d", col, rng.IntN(100))
				case additive[ref.table+"."+col]:
					if rng.IntN(2) == 0 {
						c.Add[col] = int64(rng.IntN(200) - 100)
					}
				case rng.IntN(4) != 0:
				case t.numeric[i]:
					c.Set[col] = strconv.Itoa(rng.IntN(1000))
				default:
					c.Set[col] = fmt.Sprintf("%s-%d", col, rng.IntN(100))
				}
			}
			ev.Changes = append(ev.Changes, c)
		}
		evs = append(evs, ev)
	}
	return evs
}

// TestSinkOrderIndependent applies script-like events in batches committed
// in a random order — as two switches, or a switch and the sweep, may
// commit them — and wants the same rows as applying them in order.
func TestSinkOrderIndependent(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 42))
			evs := scriptLikeEvents(rng, 120)
			ctx := ctxT(t, 60*time.Second)

			want := newFixture(t)
			if _, err := NewPGSink(want.pool).Apply(ctx, evs); err != nil {
				t.Fatal(err)
			}
			var batches [][]Event
			for i := 0; i < len(evs); {
				n := 1 + rng.IntN(6)
				batches = append(batches, evs[i:min(i+n, len(evs))])
				i += n
			}
			rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
			got := newFixture(t)
			sink := NewPGSink(got.pool)
			for _, b := range batches {
				if _, err := sink.Apply(ctx, b); err != nil {
					t.Fatalf("Apply: %v", err)
				}
			}
			if d := diffDumps(got.dumpPG(t), want.dumpPG(t)); len(d) > 0 {
				t.Fatalf("out-of-order batches differ from in-order (%d):\n%s", len(d), strings.Join(d, "\n"))
			}
		})
	}
}
