package pgstore

import (
	"fmt"
	"testing"
	"time"
)

// TestObserveBalance: a notice once per crossing, by version order; the
// first observation sets the state without a notice unless it is a
// reported crossing; the notice makes one event, its deliveries (partner
// and operator endpoints) and one e-mail when addresses are set.
func TestObserveBalance(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 30*time.Second)
	n, o := NewNotices(fx.pool), NewOutbox(fx.db)
	if _, err := o.CreateEndpoint(ctx, Endpoint{ID: "whe_p", PartnerID: "p1", URL: "https://p1.example/h", Events: []string{"partner_balance.low"}, Secret: "s"}, 16); err != nil {
		t.Fatal(err)
	}
	if err := o.SetOperatorEndpoint(ctx, "whe_op", "http://10.0.0.1/low", "", []string{"partner_balance.low"}); err != nil {
		t.Fatal(err)
	}
	if err := n.SetAddresses(ctx, "p1", []string{"ops@p1.example"}); err != nil {
		t.Fatal(err)
	}
	made := 0
	notice := func() (LowNotice, error) {
		made++
		id := fmt.Sprintf("evt_%d", made)
		return LowNotice{Event: NewEvent{ID: id, Type: "partner_balance.low", OrderKey: "pb1", Body: []byte(`{"id":"` + id + `"}`)},
			Subject: "low", Body: "body", WebhookRetryFor: time.Hour, EmailRetryFor: time.Hour}, nil
	}
	obs := func(avail, v int64, crossing bool) LowResult {
		t.Helper()
		r, err := n.ObserveBalance(ctx, BalanceObservation{PartnerID: "p1", BalanceID: "pb1", Available: avail, Threshold: 1000, Version: v, Crossing: crossing}, notice)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	steps := []struct {
		name          string
		avail, v      int64
		crossing      bool
		notified, rec bool
	}{
		{"first, below, no crossing: silent", 500, 1, false, false, false},
		{"still below", 400, 2, false, false, false},
		{"above again", 1500, 3, false, false, true},
		{"crossing", 900, 4, true, true, false},
		{"crossing seen again (same version)", 900, 4, true, false, false},
		{"late, older state above: ignored", 1200, 3, false, false, false},
		{"below, newer", 800, 5, false, false, false},
		{"exactly the threshold is not below", 1000, 6, false, false, true},
		{"below by the periodic look", 999, 7, false, true, false},
	}
	for _, st := range steps {
		r := obs(st.avail, st.v, st.crossing)
		if r.Notified != st.notified || r.Recovered != st.rec {
			t.Errorf("%s: notified %v recovered %v, want %v %v", st.name, r.Notified, r.Recovered, st.notified, st.rec)
		}
	}
	a, ok, err := n.Alert(ctx, "pb1")
	if err != nil || !ok || !a.Low || a.Crossings != 2 || a.Version != 7 || a.Available != 999 {
		t.Errorf("state = %+v (%v, %v)", a, ok, err)
	}
	var events, deliveries, emails int
	if err := fx.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM webhook_deliveries),
		(SELECT count(*) FROM notice_emails)`).Scan(&events, &deliveries, &emails); err != nil {
		t.Fatal(err)
	}
	if events != 2 || deliveries != 4 || emails != 2 {
		t.Errorf("%d events, %d deliveries, %d e-mails; want 2, 4 (partner and operator endpoint each), 2", events, deliveries, emails)
	}
	// A first observation that is a reported crossing notifies.
	r, err := n.ObserveBalance(ctx, BalanceObservation{PartnerID: "p1", BalanceID: "pb2", Available: 10, Threshold: 1000, Version: 9, Crossing: true}, notice)
	if err != nil || !r.Notified || len(r.Recipients) != 1 {
		t.Errorf("first observation of a crossing: %+v, %v", r, err)
	}
	// No threshold: never low.
	r, err = n.ObserveBalance(ctx, BalanceObservation{PartnerID: "p1", BalanceID: "pb3", Available: -5, Threshold: 0, Version: 1, Crossing: true}, notice)
	if err != nil || r.Notified {
		t.Errorf("balance without a threshold: %+v, %v", r, err)
	}
	// Without addresses: the event, no e-mail.
	if err := n.SetAddresses(ctx, "p1", nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := n.Addresses(ctx, "p1"); len(got) != 0 {
		t.Errorf("addresses after removal: %v", got)
	}
	r, err = n.ObserveBalance(ctx, BalanceObservation{PartnerID: "p1", BalanceID: "pb4", Available: 10, Threshold: 1000, Version: 2, Crossing: true}, notice)
	if err != nil || !r.Notified || r.Recipients != nil {
		t.Errorf("without addresses: %+v, %v", r, err)
	}
}

// TestPrune: finished deliveries, unreferenced events and finished e-mails
// older than the cut are removed, in batches; pending ones and newer ones
// stay.
func TestPrune(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 30*time.Second)
	o := NewOutbox(fx.db)
	if _, err := o.CreateEndpoint(ctx, Endpoint{ID: "whe_a", PartnerID: "p1", URL: "https://p1.example/h", Events: []string{"card.created"}, Secret: "s"}, 16); err != nil {
		t.Fatal(err)
	}
	var evs []NewEvent
	for i := range 12 {
		evs = append(evs, NewEvent{ID: fmt.Sprintf("evt_%02d", i), Type: "card.created", OrderKey: "k", Body: []byte("{}")})
	}
	// Two events nobody subscribed to.
	evs = append(evs, NewEvent{ID: "evt_orphan_old", Type: "card.locked", OrderKey: "k", Body: []byte("{}")},
		NewEvent{ID: "evt_orphan_new", Type: "card.locked", OrderKey: "k", Body: []byte("{}")})
	if err := o.Enqueue(ctx, "p1", evs, time.Hour); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := fx.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-40 * 24 * time.Hour)
	// evt_00..07: delivered (00..05) or failed (06, 07) long ago; 08:
	// delivered long ago but redelivered lately; 09: pending, old; 10, 11: new.
	exec(`UPDATE webhook_events SET created_at = $1 WHERE id <= 'evt_09' OR id = 'evt_orphan_old'`, old)
	exec(`UPDATE webhook_deliveries SET created_at = $1, last_attempt_at = $1, state = 'DELIVERED' WHERE event_id <= 'evt_05'`, old)
	exec(`UPDATE webhook_deliveries SET created_at = $1, last_attempt_at = $1, state = 'FAILED' WHERE event_id IN ('evt_06', 'evt_07')`, old)
	exec(`UPDATE webhook_deliveries SET created_at = $1, last_attempt_at = now(), state = 'DELIVERED' WHERE event_id = 'evt_08'`, old)
	exec(`UPDATE webhook_deliveries SET created_at = $1 WHERE event_id = 'evt_09'`, old)
	exec(`UPDATE webhook_deliveries SET state = 'DELIVERED', last_attempt_at = now() WHERE event_id IN ('evt_10', 'evt_11')`)
	for i, st := range []string{"SENT", "FAILED", "PENDING", "SENT"} {
		exec(`INSERT INTO notice_emails (partner_id, event_id, recipients, subject, body, state, retry_until, created_at)
			VALUES ('p1', $1, '{a@b.c}', 's', 'b', $2, now() + interval '1 hour', $3)`, fmt.Sprintf("evt_mail_%d", i), st,
			map[bool]time.Time{true: old, false: time.Now()}[i < 3])
	}
	res, err := o.Prune(ctx, time.Now().Add(-30*24*time.Hour), 3)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deliveries != 8 || res.Events != 9 || res.Emails != 2 {
		t.Errorf("pruned %+v, want 8 deliveries, 9 events (8 delivered or failed, the old orphan), 2 e-mails", res)
	}
	rows, err := fx.pool.Query(ctx, `SELECT id FROM webhook_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		left = append(left, id)
	}
	if fmt.Sprint(left) != "[evt_08 evt_09 evt_10 evt_11 evt_orphan_new]" {
		t.Errorf("events left: %v", left)
	}
	var mails int
	if err := fx.pool.QueryRow(ctx, `SELECT count(*) FROM notice_emails`).Scan(&mails); err != nil || mails != 2 {
		t.Errorf("e-mails left: %d (%v), want the pending one and the new one", mails, err)
	}
	// Again: nothing more.
	if res, err := o.Prune(ctx, time.Now().Add(-30*24*time.Hour), 3); err != nil || res != (PruneResult{}) {
		t.Errorf("second prune: %+v, %v", res, err)
	}
}
