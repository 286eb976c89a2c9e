package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Outbox keeps the webhook state in the durable store (migration 0011): the
// endpoints, a cursor per partner over its journal, the events made from
// it and one delivery per event and subscribed endpoint. Events come from
// committed journal entries, never from the request that made them, so an
// event whose effect is in the journal is delivered even when the switch
// that answered died right after (at least once). Several switches may run
// the dispatcher: cursors and deliveries are claimed with row locks.
type Outbox struct {
	db *DB
}

// NewOutbox keeps the state in db.
func NewOutbox(db *DB) *Outbox { return &Outbox{db: db} }

// Sentinel errors of the outbox.
var (
	ErrEndpointNotFound  = errors.New("webhook endpoint not found")
	ErrDeliveryNotFound  = errors.New("webhook delivery not found")
	ErrTooManyEndpoints  = errors.New("too many webhook endpoints")
	errNoCursorForUpdate = errors.New("cursor held by another dispatcher")
)

// Endpoint is a partner's webhook endpoint.
type Endpoint struct {
	ID           string
	PartnerID    string
	URL          string
	Events       []string
	Secret       string
	FailingSince *time.Time
	CreatedAt    time.Time
	// DisabledAt is set while the endpoint is disabled (migration 0015):
	// no delivery is made for it then, and its pending ones wait.
	DisabledAt *time.Time
}

const endpointColumns = `id, partner_id, url, events, secret, failing_since, created_at, disabled_at`

func scanEndpoint(r Row) (Endpoint, error) {
	var e Endpoint
	err := r.Scan(&e.ID, &e.PartnerID, &e.URL, &e.Events, &e.Secret, &e.FailingSince, &e.CreatedAt, &e.DisabledAt)
	return e, err
}

// CreateEndpoint stores ep (at most max endpoints per partner) and starts
// the partner's cursor at its newest journal entry when it has none: the
// endpoint receives what happens from now on.
func (o *Outbox) CreateEndpoint(ctx context.Context, ep Endpoint, max int) (Endpoint, error) {
	tx, err := o.db.Begin(ctx)
	if err != nil {
		return Endpoint{}, fmt.Errorf("creating webhook endpoint: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// One creation per partner at a time, so the limit holds.
	if lock := o.db.d.endpointLock; lock != "" {
		if _, err := tx.Exec(ctx, lock, ep.PartnerID); err != nil {
			return Endpoint{}, fmt.Errorf("creating webhook endpoint: %w", err)
		}
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM webhook_endpoints WHERE partner_id = $1`, ep.PartnerID).Scan(&n); err != nil {
		return Endpoint{}, fmt.Errorf("creating webhook endpoint: %w", err)
	}
	if n >= max {
		return Endpoint{}, ErrTooManyEndpoints
	}
	out, err := scanEndpoint(tx.QueryRow(ctx, `INSERT INTO webhook_endpoints (id, partner_id, url, events, secret)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+endpointColumns, ep.ID, ep.PartnerID, ep.URL, ep.Events, ep.Secret))
	if err != nil {
		return Endpoint{}, fmt.Errorf("creating webhook endpoint: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO webhook_cursors (partner_id, seq)
		SELECT $1, coalesce((SELECT max(seq) FROM journal WHERE partner_id = $1), 0) WHERE true
		ON CONFLICT (partner_id) DO NOTHING`, ep.PartnerID); err != nil {
		return Endpoint{}, fmt.Errorf("starting the webhook cursor: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Endpoint{}, fmt.Errorf("creating webhook endpoint: %w", err)
	}
	return out, nil
}

// Endpoints lists a partner's endpoints, oldest first.
func (o *Outbox) Endpoints(ctx context.Context, partnerID string) ([]Endpoint, error) {
	rows, err := o.db.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE partner_id = $1 ORDER BY created_at, id`, partnerID)
	if err != nil {
		return nil, fmt.Errorf("listing webhook endpoints: %w", err)
	}
	out, err := collect(rows, scanEndpoint)
	if err != nil {
		return nil, fmt.Errorf("listing webhook endpoints: %w", err)
	}
	return out, nil
}

// Endpoint reads one endpoint of a partner.
func (o *Outbox) Endpoint(ctx context.Context, partnerID, id string) (Endpoint, error) {
	e, err := scanEndpoint(o.db.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = $1 AND partner_id = $2`, id, partnerID))
	if errors.Is(err, sql.ErrNoRows) {
		return Endpoint{}, ErrEndpointNotFound
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("reading webhook endpoint: %w", err)
	}
	return e, nil
}

// DeleteEndpoint removes an endpoint and its deliveries.
func (o *Outbox) DeleteEndpoint(ctx context.Context, partnerID, id string) error {
	return o.deleteEndpoint(ctx, partnerID, id, true)
}

// deleteEndpoint deletes the endpoint and then its deliveries, in one
// transaction: an insert of deliveries locks the endpoints it writes to,
// so none is left behind (migration 0034 dropped the foreign key that
// cascaded).
func (o *Outbox) deleteEndpoint(ctx context.Context, partnerID, id string, mustExist bool) error {
	tx, err := o.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("deleting webhook endpoint: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	n, err := tx.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1 AND partner_id = $2`, id, partnerID)
	if err != nil {
		return fmt.Errorf("deleting webhook endpoint: %w", err)
	}
	if n == 0 {
		if mustExist {
			return ErrEndpointNotFound
		}
		return nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM webhook_deliveries WHERE endpoint_id = $1`, id); err != nil {
		return fmt.Errorf("deleting webhook deliveries: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("deleting webhook endpoint: %w", err)
	}
	return nil
}

// RotateSecret replaces an endpoint's secret; deliveries from now on are
// signed with the new one.
func (o *Outbox) RotateSecret(ctx context.Context, partnerID, id, secret string) (Endpoint, error) {
	e, err := scanEndpoint(o.db.QueryRow(ctx, `UPDATE webhook_endpoints SET secret = $3 WHERE id = $1 AND partner_id = $2
		RETURNING `+endpointColumns, id, partnerID, secret))
	if errors.Is(err, sql.ErrNoRows) {
		return Endpoint{}, ErrEndpointNotFound
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("rotating webhook secret: %w", err)
	}
	return e, nil
}

// SetDisabled disables an endpoint (keeping the time it was first
// disabled) or enables it again; enabling makes its waiting deliveries
// due at once.
func (o *Outbox) SetDisabled(ctx context.Context, partnerID, id string, disabled bool) (Endpoint, error) {
	tx, err := o.db.Begin(ctx)
	if err != nil {
		return Endpoint{}, fmt.Errorf("disabling or enabling webhook endpoint: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	e, err := scanEndpoint(tx.QueryRow(ctx, `UPDATE webhook_endpoints
		SET disabled_at = CASE WHEN $3 THEN coalesce(disabled_at, `+o.db.d.now+`) END
		WHERE id = $1 AND partner_id = $2 RETURNING `+endpointColumns, id, partnerID, disabled))
	if errors.Is(err, sql.ErrNoRows) {
		return Endpoint{}, ErrEndpointNotFound
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("disabling or enabling webhook endpoint: %w", err)
	}
	if !disabled {
		if _, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET next_at = `+o.db.d.now+`
			WHERE endpoint_id = $1 AND state = 'PENDING' AND next_at > `+o.db.d.now, id); err != nil {
			return Endpoint{}, fmt.Errorf("enabling webhook endpoint: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Endpoint{}, fmt.Errorf("disabling or enabling webhook endpoint: %w", err)
	}
	return e, nil
}

// OperatorPartner is the partner id of the operator's endpoints: they
// receive the events of every partner they subscribe to, and are set by
// configuration, not over the API.
const OperatorPartner = "*"

// SetOperatorEndpoint makes id an operator endpoint for events at url,
// signed with secret (unsigned when empty), or removes it (and its
// deliveries) when url is empty.
func (o *Outbox) SetOperatorEndpoint(ctx context.Context, id, url, secret string, events []string) error {
	if url == "" {
		return o.deleteEndpoint(ctx, OperatorPartner, id, false)
	}
	_, err := o.db.Exec(ctx, `INSERT INTO webhook_endpoints (id, partner_id, url, events, secret) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, events = EXCLUDED.events, secret = EXCLUDED.secret
		WHERE webhook_endpoints.partner_id = EXCLUDED.partner_id`, id, OperatorPartner, url, events, secret)
	if err != nil {
		return fmt.Errorf("setting operator webhook endpoint: %w", err)
	}
	return nil
}

// NewEvent is an event to deliver to the endpoints subscribed to its type.
type NewEvent struct {
	ID       string
	Type     string
	OrderKey string // deliveries of one key go out in order
	Body     []byte
}

// Partners lists the partners whose journal the dispatcher follows.
func (o *Outbox) Partners(ctx context.Context) ([]string, error) {
	rows, err := o.db.Query(ctx, `SELECT partner_id FROM webhook_cursors ORDER BY partner_id`)
	if err != nil {
		return nil, fmt.Errorf("listing webhook cursors: %w", err)
	}
	out, err := collect(rows, scanString)
	if err != nil {
		return nil, fmt.Errorf("listing webhook cursors: %w", err)
	}
	return out, nil
}

// AdvanceOptions bound one step of a partner's cursor.
type AdvanceOptions struct {
	Batch      int           // journal entries read at most
	GapTimeout time.Duration // how long a missing entry is waited for
	RetryFor   time.Duration // how long the new deliveries are tried
	// Build turns committed journal entries, in sequence order, into events.
	Build func(ctx context.Context, entries []JournalRow) ([]NewEvent, error)
	// Skipped is told of every entry given up on after GapTimeout.
	Skipped func(partnerID string, seq int64)
	// Recent, when set, holds entries this process just committed: those
	// are taken from it instead of read back.
	Recent *RecentJournal

	// Send, when set, makes the first attempt of the new deliveries to
	// endpoints with nothing pending before they are stored, and returns
	// an outcome per delivery (in the order given): each is then stored
	// with its outcome, one insert, instead of stored pending, claimed and
	// updated (Claim, Record). Deliveries to an endpoint with deliveries
	// pending are stored pending, behind them. Sent is told of the
	// outcomes once they are stored, with the deliveries given up.
	Send func(ctx context.Context, ds []Delivery) []Outcome
	Sent func(outs []Outcome, gaveUp []Delivery)
	// Lease is how long the cursor is held while its events are built and
	// sent (default 5 minutes): another dispatcher takes it over after.
	Lease time.Duration
}

// Advance turns the partner's next committed journal entries into events
// and deliveries, and moves its cursor past them. It moves only over
// consecutive sequence numbers: an entry still on its way (two switches
// may commit a partner's entries out of order) is waited for, one in the
// quarantine is passed, and one missing for longer than GapTimeout is
// given up (Skipped). It returns the entries done; 0 also when another
// dispatcher holds the cursor.
//
// The cursor is leased while the events are built (and, with Send,
// sent); the deliveries and the cursor's move are stored in one
// transaction after. A dispatcher that stops in between leaves the
// cursor where it was: its successor makes the same events (same ids) and
// sends them again, so delivery is at least once.
func (o *Outbox) Advance(ctx context.Context, partnerID string, opt AdvanceOptions) (int, error) {
	n, err := o.advance(ctx, partnerID, opt)
	if errors.Is(err, errNoCursorForUpdate) {
		return 0, nil
	}
	return n, err
}

func (o *Outbox) advance(ctx context.Context, partnerID string, opt AdvanceOptions) (int, error) {
	var cursor int64
	var gapSince *time.Time
	err := o.db.QueryRow(ctx, `SELECT seq, gap_since FROM webhook_cursors WHERE partner_id = $1`, partnerID).Scan(&cursor, &gapSince)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errNoCursorForUpdate
	}
	if err != nil {
		return 0, fmt.Errorf("reading webhook cursor: %w", err)
	}
	take, gapNow, err := o.nextEntries(ctx, partnerID, cursor, gapSince, opt)
	if err != nil {
		return 0, err
	}
	if len(take) == 0 {
		if gapNow && gapSince == nil { // a gap seen for the first time
			if _, err := o.db.Exec(ctx, `UPDATE webhook_cursors SET gap_since = `+o.db.d.now+`
				WHERE partner_id = $1 AND seq = $2 AND gap_since IS NULL`, partnerID, cursor); err != nil {
				return 0, fmt.Errorf("moving webhook cursor: %w", err)
			}
		}
		return 0, nil
	}
	// Lease the cursor: the entries read are ours to turn into events.
	lease := opt.Lease
	if lease <= 0 {
		lease = 5 * time.Minute
	}
	n, err := o.db.Exec(ctx, `UPDATE webhook_cursors SET lease_until = `+o.db.d.plusMicros("$3")+`
		WHERE partner_id = $1 AND seq = $2 AND (lease_until IS NULL OR lease_until < `+o.db.d.now+`)`,
		partnerID, cursor, lease.Microseconds())
	if err != nil {
		return 0, fmt.Errorf("leasing webhook cursor: %w", err)
	}
	if n == 0 {
		return 0, errNoCursorForUpdate
	}
	moved := false
	defer func() {
		if !moved {
			_, _ = o.db.Exec(context.WithoutCancel(ctx), `UPDATE webhook_cursors SET lease_until = NULL WHERE partner_id = $1 AND seq = $2`,
				partnerID, cursor)
		}
	}()
	evs, err := opt.Build(ctx, take)
	if err != nil {
		return 0, err
	}
	ds, err := planDeliveries(ctx, o.db, partnerID, evs, opt.Send != nil)
	if err != nil {
		return 0, err
	}
	// The first attempts, in the order of ds; their outcomes go back into
	// ds for storing.
	var direct []int
	var sent []Outcome
	for i, d := range ds {
		if d.direct {
			direct = append(direct, i)
		}
	}
	if len(direct) > 0 {
		try := make([]Delivery, len(direct))
		for j, i := range direct {
			try[j] = ds[i].Delivery
		}
		sent = opt.Send(ctx, try)
		for j, i := range direct {
			ds[i].Outcome = sent[j]
		}
	}
	tx, err := o.db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("advancing webhook cursor: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	n, err = tx.Exec(ctx, `UPDATE webhook_cursors SET seq = $3, gap_since = CASE WHEN $4 THEN `+o.db.d.now+` ELSE NULL END, lease_until = NULL
		WHERE partner_id = $1 AND seq = $2`, partnerID, cursor, take[len(take)-1].Seq, gapNow)
	if err != nil {
		return 0, fmt.Errorf("moving webhook cursor: %w", err)
	}
	if n == 0 { // the lease ran out and another dispatcher moved it
		return 0, errNoCursorForUpdate
	}
	gaveUp, err := storeDeliveries(ctx, tx, o.db.d, partnerID, evs, ds, opt.RetryFor)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("advancing webhook cursor: %w", err)
	}
	moved = true
	if opt.Sent != nil && len(sent) > 0 {
		opt.Sent(sent, gaveUp)
	}
	return len(take), nil
}

// newDelivery is a delivery about to be stored: pending, or (direct) with
// the outcome of the attempt made before storing it.
type newDelivery struct {
	Outcome
	direct bool
}

// plan lists the deliveries of evs, in order of evs and then of endpoint
// id: one per enabled endpoint of the partner, and per enabled operator
// endpoint, subscribed to the event's type. With direct, those to an
// endpoint with no delivery pending are marked to be attempted before
// they are stored.
func planDeliveries(ctx context.Context, q Querier, partnerID string, evs []NewEvent, direct bool) ([]newDelivery, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT ep.id, ep.partner_id, ep.url, ep.events, ep.secret,
			EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = ep.id AND d.state = 'PENDING')
		FROM webhook_endpoints ep WHERE ep.partner_id IN ($1, '`+OperatorPartner+`') AND ep.disabled_at IS NULL ORDER BY ep.id`, partnerID)
	if err != nil {
		return nil, fmt.Errorf("reading webhook endpoints: %w", err)
	}
	type target struct {
		Endpoint
		busy bool
	}
	ts, err := collect(rows, func(r Row) (target, error) {
		var t target
		err := r.Scan(&t.ID, &t.PartnerID, &t.URL, &t.Events, &t.Secret, &t.busy)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading webhook endpoints: %w", err)
	}
	var out []newDelivery
	for _, ev := range evs {
		for _, t := range ts {
			if !slices.Contains(t.Events, ev.Type) {
				continue
			}
			out = append(out, newDelivery{direct: direct && !t.busy, Outcome: Outcome{Delivery: Delivery{
				EndpointID: t.ID, PartnerID: t.PartnerID, URL: t.URL, Secret: t.Secret,
				EventID: ev.ID, EventType: ev.Type, OrderKey: ev.OrderKey, Body: ev.Body, State: "PENDING", Attempts: 1,
			}}})
		}
	}
	return out, nil
}

// store inserts the events and their deliveries, in order (delivery ids
// order a key's deliveries): a delivery not attempted is pending, one
// attempted is stored with its outcome, as Record would store it. It
// returns the deliveries given up (failed past RetryFor).
func storeDeliveries(ctx context.Context, tx Tx, d *dialect, partnerID string, evs []NewEvent, ds []newDelivery, retryFor time.Duration) ([]Delivery, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	rows := make([]deliveryRow, len(ds))
	var delivered, failing []string
	var gaveUp []Delivery
	for i, nd := range ds {
		r := deliveryRow{endpoint: nd.Delivery.EndpointID, event: nd.Delivery.EventID, key: nd.Delivery.OrderKey, state: "PENDING"}
		switch {
		case !nd.direct || !nd.Tried:
		case nd.Err == "":
			r.state, r.attempts, r.status = "DELIVERED", 1, int64(nd.Status)
			delivered = append(delivered, r.endpoint)
		default:
			r.attempts, r.status, r.err, r.wait = 1, int64(nd.Status), safeText(nd.Err), nd.Wait.Microseconds()
			if nd.Wait > retryFor {
				r.state = "FAILED"
				gaveUp = append(gaveUp, nd.Delivery)
				failing = append(failing, r.endpoint)
			}
		}
		rows[i] = r
	}
	if err := d.insertEvents(ctx, tx, partnerID, evs, rows, retryFor); err != nil {
		return nil, err
	}
	if err := markEndpoints(ctx, tx, d, delivered, failing); err != nil {
		return nil, err
	}
	return gaveUp, nil
}

// deliveryRow is a webhook_deliveries row as store inserts it: next_at
// is now plus wait (µs); an attempted one (attempts 1) was attempted now.
type deliveryRow struct {
	endpoint, event, key, state, err string
	attempts, status, wait           int64
}

// markEndpoints clears the failing mark of endpoints delivered to and sets
// it on those that gave a delivery up.
func markEndpoints(ctx context.Context, tx Tx, d *dialect, delivered, failing []string) error {
	if len(delivered) > 0 {
		slices.Sort(delivered)
		if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET failing_since = NULL
			WHERE `+d.in("id", "$1")+` AND failing_since IS NOT NULL`, slices.Compact(delivered)); err != nil {
			return fmt.Errorf("recording webhook deliveries: %w", err)
		}
	}
	if len(failing) > 0 {
		slices.Sort(failing)
		if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET failing_since = `+d.now+`
			WHERE `+d.in("id", "$1")+` AND failing_since IS NULL`, slices.Compact(failing)); err != nil {
			return fmt.Errorf("marking webhook endpoint failing: %w", err)
		}
	}
	return nil
}

// nextEntries reads the partner's committed journal entries after cursor
// that the cursor may move over: consecutive sequence numbers only. Gaps
// are quarantined entries (passed), entries on their way (waited for:
// gapNow) or entries lost, given up after GapTimeout (Skipped).
func (o *Outbox) nextEntries(ctx context.Context, partnerID string, cursor int64, gapSince *time.Time, opt AdvanceOptions) (take []JournalRow, gapNow bool, err error) {
	// The entries this process just committed, when it holds the next
	// ones: consecutive, so the gap handling below has nothing to do.
	if entries := opt.Recent.after(partnerID, cursor, opt.Batch); len(entries) > 0 {
		return entries, false, nil
	}
	rows, err := o.db.Query(ctx, `SELECT partner_id, seq, type, reason, ts_ms, changes, meta FROM journal
		WHERE partner_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, partnerID, cursor, opt.Batch)
	if err != nil {
		return nil, false, fmt.Errorf("reading the journal: %w", err)
	}
	entries, err := collectEntries(rows)
	if err != nil || len(entries) == 0 {
		return nil, false, err
	}
	next := cursor + 1
	var quarantined []int64
	if entries[len(entries)-1].Seq != cursor+int64(len(entries)) {
		rows, err := o.db.Query(ctx, `SELECT seq FROM journal_quarantine WHERE partner_id = $1 AND seq > $2 AND seq < $3`,
			partnerID, cursor, entries[len(entries)-1].Seq)
		if err != nil {
			return nil, false, fmt.Errorf("reading the quarantine: %w", err)
		}
		if quarantined, err = collect(rows, scanInt64); err != nil {
			return nil, false, fmt.Errorf("reading the quarantine: %w", err)
		}
	}
	for _, e := range entries {
		for next < e.Seq && slices.Contains(quarantined, next) {
			next++
		}
		if next < e.Seq {
			// A missing entry: wait for it, or give it up.
			if gapSince == nil || time.Since(*gapSince) < opt.GapTimeout {
				return take, true, nil
			}
			for ; next < e.Seq; next++ {
				if opt.Skipped != nil {
					opt.Skipped(partnerID, next)
				}
			}
		}
		take = append(take, e)
		next = e.Seq + 1
	}
	return take, false, nil
}

// Enqueue stores events that do not come from the journal (a partner
// balance crossing its threshold) for the subscribed endpoints.
func (o *Outbox) Enqueue(ctx context.Context, partnerID string, evs []NewEvent, retryFor time.Duration) error {
	ds, err := planDeliveries(ctx, o.db, partnerID, evs, false)
	if err != nil {
		return err
	}
	tx, err := o.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("storing webhook events: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := storeDeliveries(ctx, tx, o.db.d, partnerID, evs, ds, retryFor); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Delivery is one event for one endpoint.
type Delivery struct {
	ID            int64
	EndpointID    string
	PartnerID     string
	URL           string
	Secret        string
	EventID       string
	EventType     string
	OrderKey      string // the card (or balance) whose events go out in order
	Body          []byte
	State         string // PENDING, DELIVERED, FAILED
	Attempts      int
	LastStatus    int
	LastError     string
	CreatedAt     time.Time
	NextAt        time.Time
	RetryUntil    time.Time
	LastAttemptAt *time.Time
	DeliveredAt   *time.Time
}

// Claim leases up to n deliveries that are due, oldest first, for lease:
// per endpoint and order key, up to perKey of its pending deliveries in
// order, stopping before the first one that is not due or is leased, so
// a key's events go out one after the other; none of a disabled endpoint.
// A claimed delivery's Attempts is the number of the attempt about to be
// made; Record counts it.
func (o *Outbox) Claim(ctx context.Context, n, perKey int, lease time.Duration) ([]Delivery, error) {
	out, err := o.db.d.claim(ctx, o.db, n, max(perKey, 1), lease)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Delivery) int { return int(a.ID - b.ID) })
	for i := range out {
		out[i].Attempts++
	}
	return out, nil
}

func collectDeliveries(rows Rows) ([]Delivery, error) {
	out, err := collect(rows, scanDelivery)
	if err != nil {
		return nil, fmt.Errorf("reading webhook deliveries: %w", err)
	}
	return out, nil
}

func scanDelivery(r Row) (Delivery, error) {
	var d Delivery
	var body string
	err := r.Scan(&d.ID, &d.EndpointID, &d.PartnerID, &d.URL, &d.Secret, &d.EventID, &d.EventType, &d.OrderKey, &body, &d.State, &d.Attempts,
		&d.LastStatus, &d.LastError, &d.CreatedAt, &d.NextAt, &d.RetryUntil, &d.LastAttemptAt, &d.DeliveredAt)
	d.Body = []byte(body)
	return d, err
}

// Outcome is what became of one claimed delivery.
type Outcome struct {
	Delivery Delivery
	// Tried is false for a delivery given back without an attempt (a
	// delivery before it of the same key failed): its lease is released.
	Tried  bool
	Status int    // the HTTP status answered, 0 when none
	Err    string // why the attempt failed; "" when it was delivered
	Wait   time.Duration
}

// Record stores the outcomes of claimed deliveries in one transaction: a
// delivered one is done and its endpoint no longer failing; a failed one
// is tried again after its Wait or, past its retry time, given up
// (FAILED) and its endpoint marked failing; one not tried is released.
// It returns the deliveries given up.
func (o *Outbox) Record(ctx context.Context, outs []Outcome) (gaveUp []Delivery, err error) {
	if len(outs) == 0 {
		return nil, nil
	}
	tx, err := o.db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("recording webhook attempts: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	delivered := map[int][]int64{} // by status
	var released []int64
	var endpoints, failing []string
	now, next := o.db.d.now, o.db.d.plusMicros("$4")
	for _, oc := range outs {
		d := oc.Delivery
		switch {
		case !oc.Tried:
			released = append(released, d.ID)
		case oc.Err == "":
			delivered[oc.Status] = append(delivered[oc.Status], d.ID)
			endpoints = append(endpoints, d.EndpointID)
		default:
			var given bool
			err := tx.QueryRow(ctx, `UPDATE webhook_deliveries SET last_status = $2, last_error = $3, lease_until = NULL,
					attempts = attempts + 1, last_attempt_at = `+now+`, next_at = `+next+`,
					state = CASE WHEN `+next+` > retry_until THEN 'FAILED' ELSE 'PENDING' END
				WHERE id = $1 RETURNING state = 'FAILED'`, d.ID, oc.Status, safeText(oc.Err), oc.Wait.Microseconds()).Scan(&given)
			if err != nil {
				return nil, fmt.Errorf("recording webhook attempt: %w", err)
			}
			if given {
				gaveUp = append(gaveUp, d)
				failing = append(failing, d.EndpointID)
			}
		}
	}
	for status, ids := range delivered {
		if _, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET state = 'DELIVERED', last_status = $2, last_error = '',
				attempts = attempts + 1, last_attempt_at = `+now+`, delivered_at = `+now+`, lease_until = NULL
			WHERE `+o.db.In("id", "$1"), ids, status); err != nil {
			return nil, fmt.Errorf("recording webhook deliveries: %w", err)
		}
	}
	if err := markEndpoints(ctx, tx, o.db.d, endpoints, failing); err != nil {
		return nil, err
	}
	if len(released) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET lease_until = NULL WHERE `+o.db.In("id", "$1"), released); err != nil {
			return nil, fmt.Errorf("releasing webhook deliveries: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("recording webhook attempts: %w", err)
	}
	return gaveUp, nil
}

// Delivered records a successful attempt (Record of one outcome).
func (o *Outbox) Delivered(ctx context.Context, d Delivery, status int) error {
	_, err := o.Record(ctx, []Outcome{{Delivery: d, Tried: true, Status: status}})
	return err
}

// AttemptFailed records a failed attempt (Record of one outcome): the
// delivery is tried again after wait or, past its retry time, given up;
// gaveUp tells which.
func (o *Outbox) AttemptFailed(ctx context.Context, d Delivery, status int, msg string, wait time.Duration) (gaveUp bool, err error) {
	if msg == "" {
		msg = "failed"
	}
	given, err := o.Record(ctx, []Outcome{{Delivery: d, Tried: true, Status: status, Err: msg, Wait: wait}})
	return len(given) > 0, err
}

// Deliveries lists an endpoint's deliveries, newest first, those older
// than beforeID when it is not 0.
func (o *Outbox) Deliveries(ctx context.Context, endpointID string, limit int, beforeID int64) ([]Delivery, bool, error) {
	if beforeID <= 0 {
		beforeID = 1<<63 - 1
	}
	rows, err := o.db.Query(ctx, `SELECT d.id, d.endpoint_id, ep.partner_id, ep.url, '', d.event_id, ev.type, d.order_key, ev.body, d.state, d.attempts,
			d.last_status, d.last_error, d.created_at, d.next_at, d.retry_until, d.last_attempt_at, d.delivered_at
		FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id JOIN webhook_endpoints ep ON ep.id = d.endpoint_id
		WHERE d.endpoint_id = $1 AND d.id < $2 ORDER BY d.id DESC LIMIT $3`, endpointID, beforeID, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("listing webhook deliveries: %w", err)
	}
	out, err := collect(rows, scanDelivery)
	if err != nil {
		return nil, false, fmt.Errorf("listing webhook deliveries: %w", err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

// Redeliver sends a delivery again as soon as possible, with a fresh
// retry period, whatever its state.
func (o *Outbox) Redeliver(ctx context.Context, endpointID string, id int64, retryFor time.Duration) error {
	n, err := o.db.Exec(ctx, `UPDATE webhook_deliveries SET state = 'PENDING', next_at = `+o.db.d.now+`, lease_until = NULL,
		retry_until = `+o.db.d.plusMicros("$3")+` WHERE id = $1 AND endpoint_id = $2`, id, endpointID, retryFor.Microseconds())
	if err != nil {
		return fmt.Errorf("redelivering: %w", err)
	}
	if n == 0 {
		return ErrDeliveryNotFound
	}
	return nil
}

// Backlog is the state of one endpoint's deliveries.
type Backlog struct {
	PartnerID, EndpointID string
	Pending               int64
	OldestPending         time.Duration // age of the oldest pending delivery
	Failing               bool
}

// Backlogs reports every enabled endpoint's pending deliveries (a disabled
// one's wait on purpose).
func (o *Outbox) Backlogs(ctx context.Context) ([]Backlog, error) {
	rows, err := o.db.Query(ctx, `SELECT ep.partner_id, ep.id, count(d.id),
			`+o.db.d.secondsSince("min(d.created_at)")+`, ep.failing_since IS NOT NULL
		FROM webhook_endpoints ep LEFT JOIN webhook_deliveries d ON d.endpoint_id = ep.id AND d.state = 'PENDING'
		WHERE ep.disabled_at IS NULL
		GROUP BY ep.partner_id, ep.id, ep.failing_since`)
	if err != nil {
		return nil, fmt.Errorf("reading webhook backlog: %w", err)
	}
	return collect(rows, func(r Row) (Backlog, error) {
		var b Backlog
		var age float64
		err := r.Scan(&b.PartnerID, &b.EndpointID, &b.Pending, &age, &b.Failing)
		b.OldestPending = time.Duration(age * float64(time.Second))
		return b, err
	})
}
