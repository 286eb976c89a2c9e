package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sink stores journal events durably. The write-behind writes through this
// one interface so that an embedded journal (SQLite, for `antaca demo`)
// stays a small step; PGSink is the Postgres one.
type Sink interface {
	// Apply stores events in one transaction and returns how many were new.
	// Events already stored (same partner and seq) change nothing, so a
	// caller may apply the same events again after any failure.
	Apply(ctx context.Context, events []Event) (applied int, err error)
}

// Quarantiner keeps journal entries a Sink refused, so that the others move
// on. PGSink implements it with the journal_quarantine table.
type Quarantiner interface {
	Quarantine(ctx context.Context, q QuarantinedEntry) error
}

// QuarantinedEntry is a refused journal entry with its error.
type QuarantinedEntry struct {
	PartnerID, StreamID string
	Seq                 int64
	Fields              map[string]any // as in the stream
	Err                 string
}

// errInvalidEvent marks an event the sink refuses for its content before
// asking Postgres (an unknown column ...): retrying cannot help.
var errInvalidEvent = errors.New("invalid event")

// refused reports whether err means the batch's content was refused (retry
// cannot help; find the entry at fault and quarantine it), as opposed to a
// failure of the connection or the server that a retry may cure.
func refused(err error) bool {
	if errors.Is(err, errInvalidEvent) {
		return true
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", // data exception: bad encoding, out of range, NUL in text
		"23", // integrity constraint violation
		"42", // syntax error or access rule violation: a column the code does not know
		"54": // program limit exceeded: a value too large
		return true
	}
	return false
}

// PGSink applies events to the journal and row tables of a Postgres database
// migrated by Migrate.
type PGSink struct {
	pool *pgxpool.Pool
}

// NewPGSink returns a Sink writing to pool.
func NewPGSink(pool *pgxpool.Pool) *PGSink { return &PGSink{pool: pool} }

// Ping checks that Postgres answers.
func (s *PGSink) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Quarantine implements Quarantiner. The entry's fields are stored as
// base64 of their bytes, whatever they hold; storing the same entry twice
// keeps the first.
func (s *PGSink) Quarantine(ctx context.Context, q QuarantinedEntry) error {
	return insertQuarantined(ctx, Postgres(s.pool), q)
}

// insertQuarantined stores q in journal_quarantine, on either store.
func insertQuarantined(ctx context.Context, db *DB, q QuarantinedEntry) error {
	fields, err := quarantineFields(q)
	if err != nil {
		return err
	}
	_, err = db.Exec(ctx, `INSERT INTO journal_quarantine (partner_id, stream_id, seq, fields, error)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
		safeText(q.PartnerID), safeText(q.StreamID), q.Seq, fields, safeText(q.Err))
	if err != nil {
		return fmt.Errorf("storing quarantined entry: %w", err)
	}
	return nil
}

// quarantineFields is how a quarantined entry's fields are stored: a JSON
// object of field name -> base64 of the raw bytes.
func quarantineFields(q QuarantinedEntry) (string, error) {
	raw := make(map[string][]byte, len(q.Fields))
	for k, v := range q.Fields {
		switch t := v.(type) {
		case string:
			raw[k] = []byte(t)
		default:
			raw[k] = fmt.Append(nil, t)
		}
	}
	fields, err := json.Marshal(raw)
	if err != nil {
		return "", fmt.Errorf("encoding quarantined entry: %w", err)
	}
	return string(fields), nil
}

// safeText makes s storable as Postgres text, for messages: invalid bytes
// become U+FFFD and NUL becomes the four characters \x00.
func safeText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", `\x00`)
}

const insertJournalSQL = `INSERT INTO journal (partner_id, seq, type, reason, ts_ms, changes, meta)
SELECT p, s, t, r, ts, c::jsonb, NULLIF(m, '')::jsonb
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[]) AS u(p, s, t, r, ts, c, m)
ON CONFLICT (partner_id, seq) DO NOTHING
RETURNING partner_id, seq`

// insertNewJournalSQL is insertJournalSQL for a batch of new events: an
// event already stored fails it (unique violation).
const insertNewJournalSQL = `INSERT INTO journal (partner_id, seq, type, reason, ts_ms, changes, meta)
SELECT p, s, t, r, ts, c::jsonb, NULLIF(m, '')::jsonb
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[]) AS u(p, s, t, r, ts, c, m)`

// findConflictsSQL returns the events of a batch whose id is already in the
// journal with other content.
const findConflictsSQL = `SELECT u.p, u.s
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[]) AS u(p, s, t, r, ts, c, m)
JOIN journal j ON j.partner_id = u.p AND j.seq = u.s
WHERE (j.type, j.reason, j.ts_ms, j.changes, j.meta) IS DISTINCT FROM (u.t, u.r, u.ts, u.c::jsonb, NULLIF(u.m, '')::jsonb)`

type eventKey struct {
	partner string
	seq     int64
}

// EventID names an event: its partner and journal sequence number.
type EventID struct {
	PartnerID string
	Seq       int64
}

// ConflictError reports events whose id is already stored with different
// content. An event replayed after a crash is identical; a different one
// means the partner's sequence was reused — typically Redis failed over to a
// replica that had not received the last events, which Postgres already
// holds. Applying it would drop it silently (ON CONFLICT DO NOTHING), so the
// sink refuses and an operator reconciles (see Audit).
type ConflictError struct {
	Events []EventID
}

func (e *ConflictError) Error() string {
	ids := make([]string, len(e.Events))
	for i, id := range e.Events {
		ids[i] = fmt.Sprintf("%s/%d", id.PartnerID, id.Seq)
	}
	return fmt.Sprintf("events %s are already stored with other content: the journal sequence was reused (redis lost events?)",
		strings.Join(ids, ", "))
}

// Apply implements Sink with the rule of docs/ledger.md: an event's journal
// row is inserted with ON CONFLICT DO NOTHING and only an event whose row was
// inserted has its changes applied — insert the row when new, add every add,
// set columns only where the row's v is older than the change's version.
//
// The common batch holds only new events, and takes one round trip: the
// journal insert (without ON CONFLICT) and, per table touched, an UPDATE and
// an INSERT of the changes of all events aggregated per row (see
// aggregate), sent as one pipeline that Postgres runs as one implicit
// transaction. Should any statement fail — an event already stored is a
// unique violation, and what Postgres refuses fails here first — nothing of
// it stays, and the batch is applied the careful way (applyChecked): BEGIN,
// the journal insert that returns which events are new, their changes,
// COMMIT. BenchmarkSink measures the literal rule, one statement at a time.
//
// Events found already stored are compared with what is stored (one more
// round trip, only then): a replay is identical; anything else is a reused
// sequence and fails the batch with a *ConflictError.
func (s *PGSink) Apply(ctx context.Context, events []Event) (int, error) {
	evs, chs, err := distinctEvents(events)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	cols := newJournalColumns(evs, chs)
	if n, err, done := s.applyAllNew(ctx, evs, cols); done {
		return n, err
	}
	return s.applyChecked(ctx, evs, cols)
}

// journalColumns are a batch's events as the arrays the journal statements
// take.
type journalColumns struct {
	partners, types, reasons, chs, metas []string
	seqs, tss                            []int64
}

func newJournalColumns(evs []Event, chs []string) journalColumns {
	c := journalColumns{
		partners: make([]string, len(evs)), seqs: make([]int64, len(evs)), types: make([]string, len(evs)),
		reasons: make([]string, len(evs)), tss: make([]int64, len(evs)), chs: make([]string, len(evs)),
		metas: make([]string, len(evs)),
	}
	for i, ev := range evs {
		c.partners[i], c.seqs[i], c.types[i], c.reasons[i], c.tss[i] = ev.PartnerID, ev.Seq, ev.Type, ev.Reason, ev.TsMs
		c.chs[i] = chs[i]
		c.metas[i] = ev.Meta
	}
	return c
}

func (c journalColumns) args() []any {
	return []any{c.partners, c.seqs, c.types, c.reasons, c.tss, c.chs, c.metas}
}

// applyAllNew applies a batch of events none of which is stored yet, in one
// round trip. done is false when the batch must be applied the careful way
// instead: an event could not be aggregated, or Postgres refused a
// statement (most often: an event already stored). A failure of the
// connection is returned as it is (done true): the careful way would meet
// it too.
func (s *PGSink) applyAllNew(ctx context.Context, evs []Event, cols journalColumns) (n int, err error, done bool) {
	agg := newAggregate()
	for _, ev := range evs {
		for _, c := range ev.Changes {
			if err := agg.add(ev.PartnerID, c); err != nil {
				return 0, nil, false
			}
		}
	}
	batch := &pgx.Batch{}
	batch.Queue(changeSettingsSQL)
	batch.Queue(insertNewJournalSQL, cols.args()...)
	agg.queue(batch, true)
	if err := sendBatch(ctx, s.pool, batch); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return 0, nil, false
		}
		return 0, err, true
	}
	return len(evs), nil, true
}

// sendBatch sends batch and reads every result. Sent through the pool, a
// batch with no transaction statements is one implicit transaction.
func sendBatch(ctx context.Context, q interface {
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}, batch *pgx.Batch) error {
	br := q.SendBatch(ctx, batch)
	for i := 0; i < batch.Len(); i++ {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return err
		}
	}
	return br.Close()
}

// applyChecked applies a batch that may hold events already stored: only
// the new ones have their changes applied, and the stored ones must be the
// same events.
func (s *PGSink) applyChecked(ctx context.Context, evs []Event, cols journalColumns) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	rows, err := tx.Query(ctx, insertJournalSQL, cols.args()...)
	if err != nil {
		return 0, fmt.Errorf("inserting journal: %w", err)
	}
	inserted := make(map[eventKey]bool, len(evs))
	for rows.Next() {
		var k eventKey
		if err := rows.Scan(&k.partner, &k.seq); err != nil {
			rows.Close()
			return 0, fmt.Errorf("reading inserted journal ids: %w", err)
		}
		inserted[k] = true
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("inserting journal: %w", err)
	}
	if len(inserted) < len(evs) {
		// Some were stored before: a replay must be the same event.
		if err := findConflicts(ctx, tx, cols.args()...); err != nil {
			return 0, err
		}
	}

	agg := newAggregate()
	applied := 0
	for _, ev := range evs {
		if !inserted[eventKey{ev.PartnerID, ev.Seq}] {
			continue
		}
		applied++
		for _, c := range ev.Changes {
			if err := agg.add(ev.PartnerID, c); err != nil {
				return 0, fmt.Errorf("event %s/%d: %w: %w", ev.PartnerID, ev.Seq, errInvalidEvent, err)
			}
		}
	}

	batch := &pgx.Batch{}
	batch.Queue(changeSettingsSQL)
	agg.queue(batch, false)
	if batch.Len() > 1 {
		if err := sendBatch(ctx, tx, batch); err != nil {
			return 0, fmt.Errorf("applying row changes: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("committing: %w", err)
	}
	return applied, nil
}

// changeSettingsSQL sets, for the rest of the transaction, what the
// statements of aggregate.queue need: // the UPDATEs join a batch's few hundred ids with tables that grow by
// every authorization (holds): probing the primary key is always right,
// but until the table is large the planner prefers hashing all of it,
// hence enable_seqscan off.
const changeSettingsSQL = `SELECT set_config('enable_seqscan', 'off', true)`

// queue adds the aggregated changes to batch: an UPDATE and an INSERT per
// table touched, to run after changeSettingsSQL in the same transaction.
//
// With fresh, a table whose rows all start at version 1 in this batch
// (rows the scripts have just created: a new hold, most often) takes only
// a plain INSERT: the UPDATE would find none of them. Should one exist
// after all, the INSERT fails on its primary key, the batch rolls back and
// is applied the careful way (without fresh).
func (a *aggregate) queue(batch *pgx.Batch, fresh bool) {
	for _, t := range tableOrder {
		ta := a.tables[t.name]
		if ta == nil || len(ta.rows) == 0 {
			continue
		}
		if fresh && ta.fresh() {
			batch.Queue(t.insertNewSQL, ta.insertArgs()...)
			continue
		}
		batch.Queue(t.updateSQL, ta.updateArgs()...)
		batch.Queue(t.insertSQL, ta.insertArgs()...)
	}
}

// fresh reports whether every row's first change in the batch is its
// first version.
func (ta *tableAgg) fresh() bool {
	for _, r := range ta.rows {
		if r.first != 1 {
			return false
		}
	}
	return true
}

// distinctEvents puts events in journal order (partner, seq) and keeps one
// event per id, with its changes in their canonical text (changesJSON);
// the same id twice with other content is a *ConflictError.
func distinctEvents(events []Event) ([]Event, []string, error) {
	sorted := append([]Event(nil), events...)
	sortEvents(sorted)
	evs := sorted[:0]
	chs := make([]string, 0, len(sorted))
	var conflicts []EventID
	for _, ev := range sorted {
		ch := string(changesJSON(ev.Changes))
		// Sorted, the same ids are neighbours.
		if n := len(evs); n > 0 && evs[n-1].PartnerID == ev.PartnerID && evs[n-1].Seq == ev.Seq {
			p := evs[n-1]
			if p.Type != ev.Type || p.Reason != ev.Reason || p.TsMs != ev.TsMs || chs[n-1] != ch || p.Meta != ev.Meta {
				conflicts = append(conflicts, EventID{ev.PartnerID, ev.Seq})
			}
			continue
		}
		evs = append(evs, ev)
		chs = append(chs, ch)
	}
	if len(conflicts) > 0 {
		return nil, nil, &ConflictError{Events: conflicts}
	}
	return evs, chs, nil
}

// aggregate folds the changes of a batch into one pending write per row, so
// a table takes two set-based statements instead of one per change.
//
// Applying changes one by one (the documented rule) gives, for a row whose
// version in Postgres is v0 and a column c:
//   - a change's sets apply when its version exceeds the row's version at
//     that moment, max(v0, versions of the earlier changes in the batch);
//     call a change "effective" when its version exceeds every earlier one in
//     the batch — only effective changes can ever set anything;
//   - so c ends as the value of the last effective change setting c if that
//     change's version exceeds v0 (effective versions only grow, so no earlier
//     one could apply otherwise), plus for a numeric c the adds made after it;
//   - otherwise c ends as its old value plus every add.
//
// The UPDATE evaluates exactly that per column with v0 = r.v; rows that did
// not exist get the same result with v0 = 0, computed here.
type aggregate struct {
	tables map[string]*tableAgg
}

type tableAgg struct {
	t    *table
	rows []*rowAgg
	byID map[string]*rowAgg
}

type rowAgg struct {
	id, partner string
	first       int64 // version of the row's first change in the batch
	v           int64 // highest version seen, also the running maximum
	ver         []int64
	sval        []string
	nval        []int64
	after       []int64
	all         []int64
}

func newAggregate() *aggregate { return &aggregate{tables: map[string]*tableAgg{}} }

func (a *aggregate) add(partner string, c Change) error {
	t, err := lookupTable(c.Table)
	if err != nil {
		return err
	}
	ta := a.tables[t.name]
	if ta == nil {
		ta = &tableAgg{t: t, byID: map[string]*rowAgg{}}
		a.tables[t.name] = ta
	}
	r := ta.byID[c.ID]
	if r == nil {
		n := len(t.cols)
		r = &rowAgg{id: c.ID, partner: partner, first: c.V, ver: make([]int64, n), sval: make([]string, n),
			nval: make([]int64, n), after: make([]int64, n), all: make([]int64, n)}
		ta.byID[c.ID] = r
		ta.rows = append(ta.rows, r)
	}
	effective := c.V > r.v
	if effective {
		r.v = c.V
		for col, val := range c.Set {
			i, ok := t.index[col]
			if !ok {
				return fmt.Errorf("table %q has no column %q", t.name, col)
			}
			r.ver[i] = c.V
			r.after[i] = 0
			if t.numeric[i] {
				n, err := strconv.ParseInt(val, 10, 64)
				if err != nil {
					return fmt.Errorf("%s %s: %s=%q is not an integer", t.name, c.ID, col, val)
				}
				r.nval[i] = n
			} else {
				r.sval[i] = val
			}
		}
	}
	for col, d := range c.Add {
		i, ok := t.index[col]
		if !ok || !t.numeric[i] {
			return fmt.Errorf("table %q has no numeric column %q", t.name, col)
		}
		r.after[i] += d
		r.all[i] += d
	}
	return nil
}

func (ta *tableAgg) updateArgs() []any {
	n := len(ta.rows)
	ids, vs := make([]string, n), make([]int64, n)
	for j, r := range ta.rows {
		ids[j], vs[j] = r.id, r.v
	}
	args := []any{ids, vs}
	for i := range ta.t.cols {
		ver := make([]int64, n)
		for j, r := range ta.rows {
			ver[j] = r.ver[i]
		}
		args = append(args, ver)
		if ta.t.numeric[i] {
			val, after, all := make([]int64, n), make([]int64, n), make([]int64, n)
			for j, r := range ta.rows {
				val[j], after[j], all[j] = r.nval[i], r.after[i], r.all[i]
			}
			args = append(args, val, after, all)
		} else {
			val := make([]string, n)
			for j, r := range ta.rows {
				val[j] = r.sval[i]
			}
			args = append(args, val)
		}
	}
	return args
}

func (ta *tableAgg) insertArgs() []any {
	n := len(ta.rows)
	ids, partners, vs := make([]string, n), make([]string, n), make([]int64, n)
	cvs, cas := make([]string, n), make([]string, n)
	for j, r := range ta.rows {
		ids[j], partners[j], vs[j] = r.id, r.partner, r.v
		cv, ca := make([]byte, 0, 8*len(ta.t.cols)), make([]byte, 0, 4*len(ta.t.cols))
		cv, ca = append(cv, '{'), append(ca, '{')
		for i := range ta.t.cols {
			if i > 0 {
				cv, ca = append(cv, ','), append(ca, ',')
			}
			cv = strconv.AppendInt(cv, r.ver[i], 10)
			since := int64(0)
			if ta.t.numeric[i] {
				since = r.all[i]
				if r.ver[i] > 0 {
					since = r.after[i]
				}
			}
			ca = strconv.AppendInt(ca, since, 10)
		}
		cvs[j], cas[j] = string(append(cv, '}')), string(append(ca, '}'))
	}
	args := []any{ids, partners, vs, cvs, cas}
	for i := range ta.t.cols {
		if ta.t.numeric[i] {
			col := make([]int64, n)
			for j, r := range ta.rows {
				if r.ver[i] > 0 {
					col[j] = r.nval[i] + r.after[i]
				} else {
					col[j] = r.all[i]
				}
			}
			args = append(args, col)
		} else {
			col := make([]string, n)
			for j, r := range ta.rows {
				col[j] = r.sval[i] // "" when not set: the column default
			}
			args = append(args, col)
		}
	}
	return args
}

func findConflicts(ctx context.Context, tx pgx.Tx, args ...any) error {
	rows, err := tx.Query(ctx, findConflictsSQL, args...)
	if err != nil {
		return fmt.Errorf("comparing replayed events: %w", err)
	}
	var conflicts []EventID
	for rows.Next() {
		var id EventID
		if err := rows.Scan(&id.PartnerID, &id.Seq); err != nil {
			rows.Close()
			return fmt.Errorf("comparing replayed events: %w", err)
		}
		conflicts = append(conflicts, id)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("comparing replayed events: %w", err)
	}
	if len(conflicts) > 0 {
		return &ConflictError{Events: conflicts}
	}
	return nil
}
