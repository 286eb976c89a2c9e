package pgstore

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestAudit tampers with one side (or both) of a flushed deployment and
// wants the audit to name each finding, and only those.
func TestAudit(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, fx *fixture, ctx context.Context)
		want   []string // substrings of the report, each must appear
		kinds  []DiffKind
		secret string // must not appear in the report
	}{
		{
			name:   "clean",
			tamper: func(*testing.T, *fixture, context.Context) {},
		},
		{
			name: "balance tampered in redis",
			tamper: func(t *testing.T, fx *fixture, ctx context.Context) {
				must(t, fx.rdb.HIncrBy(ctx, fx.keys.Row("pa", "user_balances", "pa-ub"), "available", 100).Err())
			},
			want: []string{
				`user_balances/pa-ub available: redis="47400" postgres="47300"`,
				"money_identity (redis): partner pa EUR: funding.total_in 1050500 != partner balances 1000000 + user balances 50600 (off by -100)",
			},
			kinds: []DiffKind{DiffValue, DiffMoney},
		},
		{
			name: "reserved tampered in postgres",
			tamper: func(t *testing.T, fx *fixture, ctx context.Context) {
				_, err := fx.pool.Exec(ctx, `UPDATE partner_balances SET reserved = reserved + 5 WHERE id = 'pa-pb'`)
				must(t, err)
			},
			want: []string{
				`partner_balances/pa-pb reserved: redis="1200" postgres="1205"`,
				"money_identity (postgres): partner pa EUR",
				"reserved (postgres) partner_balances/pa-pb: reserved 1205 != open holds 1200",
			},
			kinds: []DiffKind{DiffValue, DiffMoney, DiffReserved},
		},
		{
			name: "money identity broken on both sides alike",
			tamper: func(t *testing.T, fx *fixture, ctx context.Context) {
				must(t, fx.rdb.HIncrBy(ctx, fx.keys.Row("pb", "funding", "pb:EUR"), "total_in", 7).Err())
				_, err := fx.pool.Exec(ctx, `UPDATE funding SET total_in = total_in + 7 WHERE id = 'pb:EUR'`)
				must(t, err)
			},
			want: []string{
				"money_identity (redis): partner pb EUR: funding.total_in 1000507 != partner balances 950000 + user balances 50500 (off by 7)",
				"money_identity (postgres): partner pb EUR: funding.total_in 1000507",
			},
			kinds: []DiffKind{DiffMoney, DiffMoney},
		},
		{
			name: "held disagrees with open holds on both sides",
			tamper: func(t *testing.T, fx *fixture, ctx context.Context) {
				must(t, fx.rdb.HSet(ctx, fx.keys.Row("pb", "holds", "pb-h1"), "amount", "1500").Err())
				_, err := fx.pool.Exec(ctx, `UPDATE holds SET amount = 1500 WHERE id = 'pb-h1'`)
				must(t, err)
			},
			want: []string{
				"held (redis) user_balances/pb-ub: held 1200 != open holds 1500",
				"held (postgres) user_balances/pb-ub: held 1200 != open holds 1500",
			},
			kinds: []DiffKind{DiffHeld, DiffHeld},
		},
		{
			name: "card secret differs",
			tamper: func(t *testing.T, fx *fixture, ctx context.Context) {
				must(t, fx.rdb.HSet(ctx, fx.keys.Row("pa", "cards", "pa-card"), "pan_enc", "gcm:other-secret").Err())
			},
			want:   []string{"cards/pa-card pan_enc: differs (value withheld)"},
			kinds:  []DiffKind{DiffValue},
			secret: "secret",
		},
		{
			name: "rows on one side only and an unknown field",
			tamper: func(t *testing.T, fx *fixture, ctx context.Context) {
				must(t, fx.rdb.HSet(ctx, fx.keys.Row("pa", "customers", "ghost"), "id", "ghost", "partner_id", "pa", "v", "1").Err())
				_, err := fx.pool.Exec(ctx, `INSERT INTO customers (id, partner_id, v) VALUES ('only-pg', 'pb', 1)`)
				must(t, err)
				must(t, fx.rdb.HSet(ctx, fx.keys.Row("pb", "customers", "pb-cus"), "nickname", "x").Err())
			},
			want: []string{
				"customers/ghost: row only in redis",
				"customers/only-pg: row only in postgres",
				`customers/pb-cus: redis field "nickname" is not a column`,
			},
			kinds: []DiffKind{DiffOnlyInRedis, DiffOnlyInPostgres, DiffUnknownField},
		},
		{
			name: "unflushed event",
			tamper: func(t *testing.T, fx *fixture, ctx context.Context) {
				fx.emit(t, "pa", "rename", chg{T: "customers", ID: "pa-cus", Set: map[string]string{"first_name": "Grace"}})
			},
			want: []string{
				"write-behind lag: 1 entries",
				`customers/pa-cus first_name: redis="Grace" postgres="Ada"`,
				`customers/pa-cus v: redis="2" postgres="1"`,
			},
			kinds: []DiffKind{DiffValue, DiffValue},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			ctx := ctxT(t, 30*time.Second)
			fx.seedProgram(t, "pa", "DEPOSIT", "400001")
			fx.seedProgram(t, "pb", "CREDIT", "400002")
			w, _ := fx.worker(t, "w1")
			if err := w.Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			tt.tamper(t, fx, ctx)

			rep, err := Audit(ctx, fx.rdb, fx.keys, fx.db)
			if err != nil {
				t.Fatalf("Audit: %v", err)
			}
			text := rep.String()
			if wantOK := len(tt.want) == 0; rep.OK() != wantOK {
				t.Fatalf("OK() = %v, want %v; report:\n%s", rep.OK(), wantOK, text)
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("report lacks %q; report:\n%s", w, text)
				}
			}
			var kinds []DiffKind
			for _, d := range rep.Differences {
				kinds = append(kinds, d.Kind)
			}
			if strings.Join(kindStrings(kinds), ",") != strings.Join(kindStrings(tt.kinds), ",") {
				t.Errorf("finding kinds = %v, want %v; report:\n%s", kinds, tt.kinds, text)
			}
			if tt.secret != "" {
				if strings.Contains(text, tt.secret) {
					t.Errorf("report prints a card secret:\n%s", text)
				}
				for _, d := range rep.Differences {
					if strings.Contains(d.Redis+d.Postgres, tt.secret) {
						t.Errorf("finding carries a card secret: %+v", d)
					}
				}
			}
			if rep.RowsRedis["cards"] != 4 || rep.RowsPostgres["holds"] != 6 {
				t.Errorf("rows counted: redis cards %d, postgres holds %d; want 4, 6", rep.RowsRedis["cards"], rep.RowsPostgres["holds"])
			}
		})
	}
}

func kindStrings(ks []DiffKind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	return out
}

// TestAuditFindsJournalGaps: Redis and Postgres may agree row for row and
// still have lost entries on the way (a Redis that lost its data with its
// sequence counter would hide them; these it can see): a sequence number
// Postgres neither holds nor quarantined, a Redis sequence ahead of
// Postgres with nothing in flight, and quarantined entries.
func TestAuditFindsJournalGaps(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 20*time.Second)
	fx.seedProgram(t, "pa", "DEPOSIT", "400001")
	w, _ := fx.worker(t, "w1")
	must(t, w.Flush(ctx))
	if a, err := Audit(ctx, fx.rdb, fx.keys, fx.db); err != nil || !a.OK() {
		t.Fatalf("audit before: %v\n%s", err, a)
	}
	kinds := func() []string {
		a, err := Audit(ctx, fx.rdb, fx.keys, fx.db)
		must(t, err)
		var out []string
		for _, d := range a.Differences {
			if d.Table == "journal" {
				out = append(out, string(d.Kind)+"/"+d.Side)
			}
		}
		return out
	}
	// An entry lost on its way: its number was issued, it never arrived.
	lost := fx.rdb.Incr(ctx, fx.keys.Seq("pa")).Val()
	fx.emit(t, "pa", "rename", chg{T: "customers", ID: "pa-cus", Set: map[string]string{"email": "x@y"}})
	must(t, w.Flush(ctx))
	if got := kinds(); len(got) != 1 || got[0] != "journal_gap/postgres" {
		t.Fatalf("after losing seq %d: %v, want one postgres journal gap", lost, got)
	}
	_, err := fx.pool.Exec(ctx, `INSERT INTO journal_quarantine (partner_id, stream_id, seq, fields, error) VALUES ('pa', '1-0', $1, '{}', 'x')`, lost)
	must(t, err)
	if got := kinds(); len(got) != 1 || got[0] != "quarantined/postgres" {
		t.Fatalf("with seq %d quarantined: %v, want it listed as quarantined only", lost, got)
	}
	must(t, fx.rdb.IncrBy(ctx, fx.keys.Seq("pa"), 2).Err())
	if got := kinds(); len(got) != 2 || got[1] != "journal_gap/redis" {
		t.Fatalf("with redis's sequence 2 ahead: %v, want the redis gap too", got)
	}
}
