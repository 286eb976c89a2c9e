package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The SQLite store of `antaca demo` must behave as Postgres does: the
// same events give the same rows, journal and references; the transaction
// history and the webhook outbox answer alike.

// bothStores applies evs to a Postgres and a SQLite store in the same
// batches, in the same order, and returns the fixtures.
func bothStores(t *testing.T, batches [][]Event) (pg, lite *fixture) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	pg, lite = newFixture(t), newEmbeddedFixture(t)
	for _, fx := range []*fixture{pg, lite} {
		sink := fx.db.Sink()
		for _, b := range batches {
			if _, err := sink.Apply(ctx, b); err != nil {
				t.Fatalf("%s Apply: %v", fx.db.Engine(), err)
			}
		}
	}
	return pg, lite
}

// versions reads every row's per-column versions (cv, ca) as text, arrays
// written alike.
func (fx *fixture) versions(tb testing.TB) map[string]string {
	tb.Helper()
	ctx := ctxT(tb, 10*time.Second)
	out := map[string]string{}
	for _, t := range tableOrder {
		rows, err := fx.db.Query(ctx, `SELECT id, CAST(cv AS text), CAST(ca AS text) FROM "`+t.name+`"`)
		must(tb, err)
		for rows.Next() {
			var id string
			var cv, ca *string
			must(tb, rows.Scan(&id, &cv, &ca))
			norm := func(s *string) string {
				if s == nil {
					return "null"
				}
				return strings.NewReplacer("{", "[", "}", "]", " ", "").Replace(*s)
			}
			out[t.name+"/"+id] = norm(cv) + " " + norm(ca)
		}
		must(tb, rows.Err())
	}
	return out
}

// journalDump reads the journal and its references.
func (fx *fixture) journalDump(tb testing.TB) []string {
	tb.Helper()
	ctx := ctxT(tb, 10*time.Second)
	var out []string
	rows, err := fx.db.Query(ctx, `SELECT partner_id, seq, type, reason, ts_ms, changes, meta FROM journal ORDER BY partner_id, seq`)
	must(tb, err)
	es, err := collectEntries(rows)
	must(tb, err)
	for _, e := range es {
		out = append(out, fmt.Sprintf("journal %s/%d %s %s %d %+v %s", e.PartnerID, e.Seq, e.Type, e.Reason, e.TsMs, e.Changes, normJSON(e.Meta)))
	}
	rows, err = fx.db.Query(ctx, `SELECT ref_id, partner_id, seq, type, ts_ms FROM journal_refs ORDER BY ref_id, partner_id, seq`)
	must(tb, err)
	refs, err := collect(rows, func(r Row) (string, error) {
		var ref, p, typ string
		var seq, ts int64
		err := r.Scan(&ref, &p, &seq, &typ, &ts)
		return fmt.Sprintf("ref %s %s/%d %s %d", ref, p, seq, typ, ts), err
	})
	must(tb, err)
	return append(out, refs...)
}

// normJSON writes a JSON object with sorted keys (jsonb reorders them).
func normJSON(b []byte) string {
	if len(b) == 0 {
		return "null"
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return string(b)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s=%v;", k, m[k])
	}
	return sb.String()
}

func compareStores(t *testing.T, pg, lite *fixture) {
	t.Helper()
	if d := diffDumps(lite.dumpPG(t), pg.dumpPG(t)); len(d) > 0 {
		t.Fatalf("SQLite rows differ from Postgres (%d):\n%s", len(d), strings.Join(d, "\n"))
	}
	pv, lv := pg.versions(t), lite.versions(t)
	for k, want := range pv {
		if got := lv[k]; got != want {
			t.Errorf("per-column versions of %s: sqlite %s, postgres %s", k, got, want)
		}
	}
	if pj, lj := pg.journalDump(t), lite.journalDump(t); !slices.Equal(pj, lj) {
		t.Fatalf("journals differ:\npostgres %s\nsqlite   %s", strings.Join(pj, "\n         "), strings.Join(lj, "\n         "))
	}
}

// TestSQLiteSinkMatchesPostgres: random event streams, in random batches
// with replays, and script-like ones in shuffled batches (as two switches
// commit them), leave the same rows and per-column versions on both.
func TestSQLiteSinkMatchesPostgres(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprintf("random/seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 99))
			evs := randomEvents(rng, 150)
			var batches [][]Event
			for i := 0; i < len(evs); {
				n := 1 + rng.IntN(40)
				b := evs[i:min(i+n, len(evs))]
				if i > 0 && rng.IntN(3) == 0 {
					b = append(append([]Event(nil), evs[max(0, i-5):i]...), b...)
				}
				batches = append(batches, b)
				i += n
			}
			pg, lite := bothStores(t, batches)
			compareStores(t, pg, lite)
		})
		t.Run(fmt.Sprintf("out-of-order/seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 42))
			evs := scriptLikeEvents(rng, 120)
			var batches [][]Event
			for i := 0; i < len(evs); {
				n := 1 + rng.IntN(6)
				batches = append(batches, evs[i:min(i+n, len(evs))])
				i += n
			}
			rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
			pg, lite := bothStores(t, batches)
			compareStores(t, pg, lite)
		})
	}
}

// historyEvents is a card's life as the scripts journal it: creation, a
// reload, an authorization and its capture, a decline, a lock.
func historyEvents() []Event {
	ts := int64(1_780_000_000_000)
	hold := func(id string, v int64, set map[string]string, add map[string]int64) Change {
		return Change{Table: "holds", ID: id, V: v, Set: set, Add: add}
	}
	return []Event{
		{PartnerID: "p1", Seq: 1, Type: "card_create", TsMs: ts, Changes: []Change{{Table: "cards", ID: "c1", V: 1,
			Set: map[string]string{"balance_id": "ub1", "status": "ACTIVE", "type": "VIRTUAL"}}}},
		{PartnerID: "p1", Seq: 2, Type: "user_balance_reload", TsMs: ts + 1, Changes: []Change{{Table: "user_balances", ID: "ub1", V: 1,
			Set: map[string]string{"currency": "EUR", "state": "ACTIVE"}, Add: map[string]int64{"available": 5000}}}},
		{PartnerID: "p1", Seq: 3, Type: "reserve", Reason: "APPROVED", TsMs: ts + 2, Meta: `{"card":"c1","mti":"0100","amount":1200}`,
			Changes: []Change{
				hold("h1", 1, map[string]string{"balance_id": "ub1", "card_id": "c1", "currency": "EUR", "state": "OPEN", "amount": "1200",
					"created_ms": fmt.Sprint(ts + 2), "origin": "reserve", "requested": "1200", "approved": "1200"}, nil),
				{Table: "user_balances", ID: "ub1", V: 2, Add: map[string]int64{"available": -1200, "held": 1200}},
			}},
		{PartnerID: "p1", Seq: 4, Type: "capture", TsMs: ts + 3, Changes: []Change{
			hold("h1", 2, map[string]string{"state": "CAPTURED"}, map[string]int64{"captured": 1000, "released": 200}),
			{Table: "user_balances", ID: "ub1", V: 3, Add: map[string]int64{"available": 200, "held": -1200, "posted": 1000}},
		}},
		{PartnerID: "p1", Seq: 5, Type: "decline", Reason: "INSUFFICIENT_USER_FUNDS", TsMs: ts + 4, Meta: `{"card":"c1","mti":"0100","amount":90000}`},
		{PartnerID: "p1", Seq: 6, Type: "card_lock", TsMs: ts + 5, Changes: []Change{{Table: "cards", ID: "c1", V: 2,
			Set: map[string]string{"lock_reason": "2", "lock_source": "ADMIN"}}}},
	}
}

// TestSQLiteTransactionsMatchPostgres: the journal references (a trigger
// on each store) and the transaction history read from them are the same.
func TestSQLiteTransactionsMatchPostgres(t *testing.T) {
	pg, lite := bothStores(t, [][]Event{historyEvents()})
	compareStores(t, pg, lite)
	ctx := ctxT(t, 10*time.Second)
	list := func(fx *fixture, q TxnQuery) string {
		txns, more, err := NewTransactions(fx.db).List(ctx, q)
		if err != nil {
			t.Fatalf("%s List: %v", fx.db.Engine(), err)
		}
		var b strings.Builder
		for _, x := range txns {
			if x.Hold != nil {
				fmt.Fprintf(&b, "hold %+v history", *x.Hold)
				for _, h := range x.History {
					fmt.Fprintf(&b, " %d:%s", h.Seq, h.Type)
				}
			} else {
				fmt.Fprintf(&b, "entry %d %s %s %s", x.Entry.Seq, x.Entry.Type, x.Entry.Reason, normJSON(x.Entry.Meta))
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "more=%v", more)
		return b.String()
	}
	for _, q := range []TxnQuery{
		{PartnerID: "p1", CardID: "c1", Limit: 10},
		{PartnerID: "p1", CardID: "c1", Limit: 1},
		{PartnerID: "p1", BalanceID: "ub1", CardIDs: []string{"c1"}, Limit: 10},
		{PartnerID: "p1", CardID: "c1", Limit: 10, After: &TxnRef{PartnerID: "p1", Seq: 5}},
	} {
		want, got := list(pg, q), list(lite, q)
		if got != want {
			t.Errorf("listing %+v:\nsqlite\n%s\npostgres\n%s", q, got, want)
		}
		if !strings.Contains(want, "hold") && q.Limit > 1 {
			t.Errorf("listing %+v lists no hold:\n%s", q, want)
		}
	}
	_, err := NewTransactions(lite.db).cursorKey(ctx, TxnQuery{PartnerID: "p1", CardID: "c1", After: &TxnRef{HoldID: "nope"}})
	if !errors.Is(err, ErrForeignCursor) {
		t.Errorf("unknown hold cursor on sqlite: %v, want ErrForeignCursor", err)
	}
}

// TestSQLiteSinkRefusesReusedSeq: an event id stored with other content is
// a *ConflictError, as on Postgres.
func TestSQLiteSinkRefusesReusedSeq(t *testing.T) {
	fx := newEmbeddedFixture(t)
	ctx := ctxT(t, 10*time.Second)
	evs := historyEvents()
	if n, err := fx.db.Sink().Apply(ctx, evs); err != nil || n != len(evs) {
		t.Fatalf("Apply = %d, %v", n, err)
	}
	if n, err := fx.db.Sink().Apply(ctx, evs); err != nil || n != 0 {
		t.Fatalf("replayed Apply = %d, %v; want 0, nil", n, err)
	}
	other := evs[2]
	other.Reason = "APPROVED_PARTIAL"
	_, err := fx.db.Sink().Apply(ctx, []Event{other})
	var ce *ConflictError
	if !errors.As(err, &ce) || len(ce.Events) != 1 || ce.Events[0] != (EventID{"p1", 3}) {
		t.Fatalf("reused seq: %v, want a ConflictError naming p1/3", err)
	}
	if _, err := fx.db.Exec(ctx, `DELETE FROM journal`); err == nil {
		t.Fatal("the journal accepted a DELETE")
	}
}

// TestOutboxOnBothStores runs the webhook outbox's life on each store: an
// endpoint, the journal turned into events and deliveries, a claim, a
// failed attempt, a success, a redelivery, the backlog.
func TestOutboxOnBothStores(t *testing.T) {
	pg, lite := bothStores(t, [][]Event{historyEvents()})
	for _, fx := range []*fixture{pg, lite} {
		t.Run(fx.db.Engine(), func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			o := NewOutbox(fx.db)
			ep, err := o.CreateEndpoint(ctx, Endpoint{ID: "ep1", PartnerID: "p1", URL: "https://example.test/h",
				Events: []string{"card.locked", "transaction.declined"}, Secret: "s"}, 2)
			if err != nil {
				t.Fatalf("CreateEndpoint: %v", err)
			}
			if !slices.Equal(ep.Events, []string{"card.locked", "transaction.declined"}) || ep.CreatedAt.IsZero() || ep.FailingSince != nil {
				t.Fatalf("endpoint = %+v", ep)
			}
			if _, err := o.CreateEndpoint(ctx, Endpoint{ID: "ep2", PartnerID: "p1", URL: "https://example.test/2", Events: []string{"x"}, Secret: "s"}, 1); !errors.Is(err, ErrTooManyEndpoints) {
				t.Fatalf("second endpoint over the limit: %v", err)
			}
			// The cursor starts at the newest entry: move it back so the
			// history becomes events.
			if _, err := fx.db.Exec(ctx, `UPDATE webhook_cursors SET seq = 0`); err != nil {
				t.Fatal(err)
			}
			n, err := o.Advance(ctx, "p1", AdvanceOptions{Batch: 100, GapTimeout: time.Minute, RetryFor: time.Hour,
				Build: func(_ context.Context, es []JournalRow) ([]NewEvent, error) {
					var out []NewEvent
					for _, e := range es {
						typ := map[string]string{"card_lock": "card.locked", "decline": "transaction.declined"}[e.Type]
						if typ != "" {
							out = append(out, NewEvent{ID: fmt.Sprintf("ev%d", e.Seq), Type: typ, OrderKey: "c1", Body: []byte(`{"seq":` + fmt.Sprint(e.Seq) + `}`)})
						}
					}
					return out, nil
				}})
			if err != nil || n != 6 {
				t.Fatalf("Advance = %d, %v; want 6 entries", n, err)
			}
			// A key's deliveries in order, as many as asked per key.
			claimed, err := o.Claim(ctx, 10, 16, time.Minute)
			if err != nil || len(claimed) != 2 || claimed[0].EventID != "ev5" || claimed[1].EventID != "ev6" || claimed[0].OrderKey != "c1" {
				t.Fatalf("Claim of 16 per key = %+v, %v; want ev5 then ev6", claimed, err)
			}
			// Given back untried (ev5 failed): both may be claimed again,
			// and no attempt of ev6 is counted.
			if _, err := o.Record(ctx, []Outcome{{Delivery: claimed[0]}, {Delivery: claimed[1]}}); err != nil {
				t.Fatalf("Record of untried deliveries: %v", err)
			}
			claimed, err = o.Claim(ctx, 10, 1, time.Minute)
			if err != nil || len(claimed) != 1 || claimed[0].EventID != "ev5" || claimed[0].Attempts != 1 || claimed[0].Secret != "s" {
				t.Fatalf("Claim = %+v, %v; want ev5 alone (ev6 waits behind it, same key)", claimed, err)
			}
			if again, err := o.Claim(ctx, 10, 16, time.Minute); err != nil || len(again) != 0 {
				t.Fatalf("Claim while leased = %+v, %v; want none (ev6 waits behind the leased ev5)", again, err)
			}
			gaveUp, err := o.AttemptFailed(ctx, claimed[0], 500, "boom", 0)
			if err != nil || gaveUp {
				t.Fatalf("AttemptFailed = %v, %v", gaveUp, err)
			}
			claimed, err = o.Claim(ctx, 10, 1, time.Minute)
			if err != nil || len(claimed) != 1 || claimed[0].Attempts != 2 || claimed[0].LastError != "boom" {
				t.Fatalf("Claim after a failure = %+v, %v", claimed, err)
			}
			if err := o.Delivered(ctx, claimed[0], 200); err != nil {
				t.Fatal(err)
			}
			claimed, err = o.Claim(ctx, 10, 16, time.Minute)
			if err != nil || len(claimed) != 1 || claimed[0].EventID != "ev6" || claimed[0].Attempts != 1 {
				t.Fatalf("Claim after delivery = %+v, %v; want ev6, first attempt", claimed, err)
			}
			backlog, err := o.Backlogs(ctx)
			if err != nil || len(backlog) != 1 || backlog[0].Pending != 1 || backlog[0].OldestPending < 0 || backlog[0].OldestPending > time.Minute {
				t.Fatalf("Backlogs = %+v, %v", backlog, err)
			}
			ds, more, err := o.Deliveries(ctx, "ep1", 10, 0)
			if err != nil || more || len(ds) != 2 || ds[1].State != "DELIVERED" || ds[1].DeliveredAt == nil || ds[1].Attempts != 2 || ds[0].Attempts != 0 {
				t.Fatalf("Deliveries = %+v, %v, %v", ds, more, err)
			}
			if err := o.Redeliver(ctx, "ep1", ds[1].ID, time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := o.Redeliver(ctx, "ep1", 999999, time.Hour); !errors.Is(err, ErrDeliveryNotFound) {
				t.Fatalf("Redeliver unknown: %v", err)
			}
			if err := o.DeleteEndpoint(ctx, "p1", "ep1"); err != nil {
				t.Fatal(err)
			}
			if _, err := o.Endpoint(ctx, "p1", "ep1"); !errors.Is(err, ErrEndpointNotFound) {
				t.Fatalf("deleted endpoint: %v", err)
			}
		})
	}
}

// TestIsUniqueViolation: a duplicate key reads the same on both stores.
func TestIsUniqueViolation(t *testing.T) {
	for _, fx := range []*fixture{newFixture(t), newEmbeddedFixture(t)} {
		ctx := ctxT(t, 10*time.Second)
		insert := func() error {
			_, err := fx.db.Exec(ctx, `INSERT INTO admins (username, password_hash, role) VALUES ($1, $2, $3)`, "ada", "h", "Admin")
			return err
		}
		if err := insert(); err != nil {
			t.Fatalf("%s: %v", fx.db.Engine(), err)
		}
		if err := insert(); !IsUniqueViolation(err) {
			t.Errorf("%s: second insert: %v, want a unique violation", fx.db.Engine(), err)
		}
		if _, err := fx.db.Exec(ctx, `INSERT INTO admins (username, password_hash, role) VALUES ($1, $2, $3)`, "bob", "h", "King"); err == nil || IsUniqueViolation(err) {
			t.Errorf("%s: bad role: %v, want another constraint", fx.db.Engine(), err)
		}
	}
}

// TestOutboxFirstAttempts: with Send, Advance attempts the new deliveries
// to endpoints with nothing pending before storing them, and stores each
// with its outcome; an endpoint with deliveries pending gets the new ones
// pending behind them. A leased cursor is left alone; entries made events
// again (a dispatcher that died before storing) store nothing twice.
// Deleting an endpoint deletes its deliveries.
func TestOutboxFirstAttempts(t *testing.T) {
	pg, lite := bothStores(t, [][]Event{historyEvents()})
	for _, fx := range []*fixture{pg, lite} {
		t.Run(fx.db.Engine(), func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			o := NewOutbox(fx.db)
			for _, id := range []string{"ep1", "ep2"} {
				if _, err := o.CreateEndpoint(ctx, Endpoint{ID: id, PartnerID: "p1", URL: "https://example.test/" + id,
					Events: []string{"card.locked", "transaction.declined", "balance.low"}, Secret: "s"}, 2); err != nil {
					t.Fatal(err)
				}
			}
			// ep2 has a delivery pending.
			if err := o.Enqueue(ctx, "p1", []NewEvent{{ID: "evlow", Type: "balance.low", OrderKey: "b1", Body: []byte(`{}`)}}, time.Hour); err != nil {
				t.Fatal(err)
			}
			if _, err := fx.db.Exec(ctx, `DELETE FROM webhook_deliveries WHERE endpoint_id = 'ep1'`); err != nil {
				t.Fatal(err)
			}
			if _, err := fx.db.Exec(ctx, `UPDATE webhook_cursors SET seq = 0`); err != nil {
				t.Fatal(err)
			}
			var sent []string
			var noted []Outcome
			builds := 0
			opt := AdvanceOptions{Batch: 100, GapTimeout: time.Minute, RetryFor: time.Hour,
				Build: func(_ context.Context, es []JournalRow) ([]NewEvent, error) {
					builds++
					var out []NewEvent
					for _, e := range es {
						typ := map[string]string{"card_lock": "card.locked", "decline": "transaction.declined"}[e.Type]
						if typ != "" {
							out = append(out, NewEvent{ID: fmt.Sprintf("ev%d", e.Seq), Type: typ, OrderKey: "c1", Body: []byte(`{}`)})
						}
					}
					return out, nil
				},
				Send: func(_ context.Context, ds []Delivery) []Outcome {
					outs := make([]Outcome, len(ds))
					for i, d := range ds {
						sent = append(sent, d.EndpointID+"/"+d.EventID)
						outs[i] = Outcome{Delivery: d, Tried: true, Status: 200}
						if d.EventID == "ev6" {
							outs[i].Status, outs[i].Err, outs[i].Wait = 500, "endpoint answered 500", time.Minute
						}
					}
					return outs
				},
				Sent: func(outs []Outcome, _ []Delivery) { noted = append(noted, outs...) },
			}
			if n, err := o.Advance(ctx, "p1", opt); err != nil || n != 6 {
				t.Fatalf("Advance = %d, %v; want 6 entries", n, err)
			}
			if !slices.Equal(sent, []string{"ep1/ev5", "ep1/ev6"}) || len(noted) != 2 {
				t.Fatalf("sent %v, noted %d; want ep1's two (ep2 has one pending)", sent, len(noted))
			}
			ds, _, err := o.Deliveries(ctx, "ep1", 10, 0)
			if err != nil || len(ds) != 2 {
				t.Fatalf("ep1's deliveries = %+v, %v", ds, err)
			}
			if d := ds[1]; d.EventID != "ev5" || d.State != "DELIVERED" || d.Attempts != 1 || d.LastStatus != 200 || d.DeliveredAt == nil || d.LastAttemptAt == nil {
				t.Fatalf("delivered first attempt stored as %+v", d)
			}
			if d := ds[0]; d.EventID != "ev6" || d.State != "PENDING" || d.Attempts != 1 || d.LastStatus != 500 || d.LastError == "" ||
				d.DeliveredAt != nil || d.NextAt.Before(time.Now().Add(30*time.Second)) {
				t.Fatalf("failed first attempt stored as %+v", d)
			}
			ds, _, err = o.Deliveries(ctx, "ep2", 10, 0)
			if err != nil || len(ds) != 3 || ds[0].EventID != "ev6" || ds[1].EventID != "ev5" || ds[0].Attempts != 0 || ds[0].State != "PENDING" {
				t.Fatalf("ep2's deliveries = %+v, %v; want ev5 and ev6 pending behind evlow", ds, err)
			}

			// A leased cursor is not taken.
			if _, err := fx.db.Exec(ctx, `UPDATE webhook_cursors SET seq = 0, lease_until = `+fx.db.d.plusMicros("$1"), time.Minute.Microseconds()); err != nil {
				t.Fatal(err)
			}
			builds = 0
			if n, err := o.Advance(ctx, "p1", opt); err != nil || n != 0 || builds != 0 {
				t.Fatalf("Advance of a leased cursor = %d, %v, %d builds", n, err, builds)
			}
			// Its lease run out, the entries are made events again: sent
			// again (at least once), stored once.
			if _, err := fx.db.Exec(ctx, `UPDATE webhook_cursors SET lease_until = NULL`); err != nil {
				t.Fatal(err)
			}
			if n, err := o.Advance(ctx, "p1", opt); err != nil || n != 6 {
				t.Fatalf("Advance again = %d, %v", n, err)
			}
			var rows int
			if err := fx.db.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries`).Scan(&rows); err != nil || rows != 5 {
				t.Fatalf("%d deliveries stored, %v; want 5", rows, err)
			}
			if err := o.DeleteEndpoint(ctx, "p1", "ep1"); err != nil {
				t.Fatal(err)
			}
			if err := fx.db.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = 'ep1'`).Scan(&rows); err != nil || rows != 0 {
				t.Fatalf("%d deliveries of a deleted endpoint, %v", rows, err)
			}
		})
	}
}
