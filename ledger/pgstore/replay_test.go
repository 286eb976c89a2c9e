package pgstore

import (
	"bufio"
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
)

// TestReplayRecordedJournal replays new controls over a recorded journal
// (testdata/replay-journal.jsonl: approvals, declines by controls and by
// funds, a reversal, a card with controls of its own, a card of another
// program) with known expected counts, twice: the same answer, and nothing
// written.
func TestReplayRecordedJournal(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 30*time.Second)
	for _, q := range []string{
		`INSERT INTO programs (id, partner_id, v, name, currency, bin_ranges) VALUES ('prg_rp', 'rp', 1, 'RP', 'EUR', '[]')`,
		`INSERT INTO cards (id, partner_id, v, program_id) VALUES ('c1', 'rp', 1, ''), ('c2', 'rp', 1, 'prg_rp'),
			('other', 'rp', 1, 'prg_gold')`,
		`INSERT INTO cards (id, partner_id, v, program_id, controls) VALUES ('c3', 'rp', 1, '', '{"per_transaction_max":1}')`,
	} {
		if _, err := fx.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	f, err := os.Open("testdata/replay-journal.jsonl")
	must(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Seq     int64           `json:"seq"`
			Type    string          `json:"type"`
			Reason  string          `json:"reason"`
			TsMs    int64           `json:"ts_ms"`
			Changes json.RawMessage `json:"changes"`
			Meta    json.RawMessage `json:"meta"`
		}
		must(t, json.Unmarshal(sc.Bytes(), &e))
		if _, err := fx.pool.Exec(ctx, `INSERT INTO journal (partner_id, seq, type, reason, ts_ms, changes, meta) VALUES ('rp', $1, $2, $3, $4, $5, $6)`,
			e.Seq, e.Type, e.Reason, e.TsMs, string(e.Changes), string(e.Meta)); err != nil {
			t.Fatal(err)
		}
	}
	controls := authz.Controls{Limits: []authz.Limit{{Interval: authz.IntervalDay, Amount: 5000}}, MCCBlock: []string{"7995"},
		CountriesBlock: []string{"KP"}, ChannelsBlock: []string{"atm"}}
	since := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	until := time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)
	var journalBefore int
	must(t, fx.pool.QueryRow(ctx, `SELECT count(*) FROM journal`).Scan(&journalBefore))
	rep, err := ReplayProgram(ctx, fx.pool, "", "prg_rp", controls, since, until, 10)
	must(t, err)

	want := authz.ReplayReport{
		Since: since, Until: until,
		Evaluated:     authz.ReplayCount{Count: 7, Amount: 13400},
		NewlyDeclined: authz.ReplayCount{Count: 3, Amount: 4000},
		ByReason: map[authz.Reason]authz.ReplayCount{
			authz.ReasonControlMCC: {Count: 1, Amount: 2500}, authz.ReasonControlCountry: {Count: 1, Amount: 1000},
			authz.ReasonControlChannel: {Count: 1, Amount: 500},
		},
		NewlyApproved: authz.ReplayCount{Count: 1, Amount: 400},
		TopCards:      []authz.ReplayTop{{Key: "c1", Count: 2, Amount: 3000}, {Key: "c2", Count: 2, Amount: 1400}},
		TopMCCs: []authz.ReplayTop{{Key: "7995", Count: 1, Amount: 2500}, {Key: "5411", Count: 1, Amount: 1000},
			{Key: "6011", Count: 1, Amount: 500}, {Key: "5813", Count: 1, Amount: 400}},
		TopCountries: []authz.ReplayTop{{Key: "PL", Count: 3, Amount: 3400}, {Key: "KP", Count: 1, Amount: 1000}},
		SkippedCards: 1,
	}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("replay:\n got %+v\nwant %+v", rep, want)
	}
	// The reversal gave the day back: without it the 4000 after it would
	// be declined by the day's 5000.
	again, err := ReplayProgram(ctx, fx.pool, "rp", "prg_rp", controls, since, until, 10)
	must(t, err)
	if !reflect.DeepEqual(again, rep) {
		t.Fatalf("second replay differs:\n%+v\n%+v", again, rep)
	}
	var journalAfter int
	must(t, fx.pool.QueryRow(ctx, `SELECT count(*) FROM journal`).Scan(&journalAfter))
	if journalAfter != journalBefore {
		t.Fatalf("the replay wrote to the journal: %d -> %d", journalBefore, journalAfter)
	}
	// Tighter window, a top of one, another partner's id: unknown.
	one, err := ReplayProgram(ctx, fx.pool, "", "prg_rp", controls, since, until, 1)
	must(t, err)
	if len(one.TopCards) != 1 || len(one.TopMCCs) != 1 || one.TopCards[0].Key != "c1" {
		t.Errorf("top 1: %+v", one)
	}
	if _, err := ReplayProgram(ctx, fx.pool, "someone", "prg_rp", controls, since, until, 10); err == nil {
		t.Error("another partner's program replayed")
	}
}
