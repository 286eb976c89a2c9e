package pgstore

import (
	"strconv"
	"testing"
	"time"
)

// TestRebuildRestoresSpendWindows: a Redis rebuilt from Postgres gets the
// spend-control windows still running back from the holds that charged
// them, less what was released; ended windows are not restored.
func TestRebuildRestoresSpendWindows(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 30*time.Second)
	now := time.Now()
	running := now.Add(6 * time.Hour).UnixMilli()
	ended := now.Add(-time.Hour).UnixMilli()
	spend := func(end int64) string {
		return "day=dX:" + itoa(end) + ",all_time=a:0"
	}
	for _, q := range []struct {
		id, card, spend    string
		approved, released int64
		state              string
	}{
		{"hs1", "cs1", spend(running), 300, 0, "OPEN"},
		{"hs2", "cs1", spend(running), 200, 50, "CAPTURED"},
		{"hs3", "cs1", "day=dOld:" + itoa(ended), 999, 0, "CAPTURED"},
		{"hs4", "cs2", spend(running), 100, 100, "VOIDED"},
	} {
		if _, err := fx.pool.Exec(ctx, `INSERT INTO holds (id, partner_id, v, card_id, amount, approved, released, state, created_ms, closed_ms, spend)
			VALUES ($1, 'sp', 1, $2, $3, $3, $4, $5, $6, $6, $7)`, q.id, q.card, q.approved, q.released, q.state, now.UnixMilli(), q.spend); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fx.pool.Exec(ctx, `INSERT INTO partners (id, partner_id, v, name) VALUES ('sp', 'sp', 1, 'SP')`); err != nil {
		t.Fatal(err)
	}
	rep, err := Rebuild(ctx, fx.rdb, fx.keys, fx.db)
	must(t, err)
	if rep.SpendWindows != 4 {
		t.Errorf("restored %d spend windows, want 4 (cs1 and cs2, day and all_time)", rep.SpendWindows)
	}
	for key, want := range map[string][2]string{
		fx.keys.Spend("sp", "cs1", "dX"): {"450", "2"},
		fx.keys.Spend("sp", "cs1", "a"):  {"450", "2"},
		fx.keys.Spend("sp", "cs2", "dX"): {"0", "1"},
	} {
		got, err := fx.rdb.HMGet(ctx, key, "amount", "count").Result()
		must(t, err)
		if got[0] != want[0] || got[1] != want[1] {
			t.Errorf("%s = %v, want amount %s count %s", key, got, want[0], want[1])
		}
	}
	if n, _ := fx.rdb.Exists(ctx, fx.keys.Spend("sp", "cs1", "dOld")).Result(); n != 0 {
		t.Error("an ended window was restored")
	}
	if ttl, _ := fx.rdb.PTTL(ctx, fx.keys.Spend("sp", "cs1", "dX")).Result(); ttl < 29*time.Hour || ttl > 31*time.Hour {
		t.Errorf("day window TTL %s, want its end + a day", ttl)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
