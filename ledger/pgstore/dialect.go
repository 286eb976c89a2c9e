package pgstore

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// dialect is everything the two stores say differently: PostgreSQL in
// production, SQLite (one file, `antaca demo`). Every statement of the
// package is written once in the SQL both accept; the pieces below are
// spliced into them, and the few operations whose shape differs (a
// statement Postgres runs as one CTE) have one implementation per dialect
// here. The schemas are migrations/ (Postgres) and sqlite.sql.
type dialect struct {
	name string

	// in is the condition "col is one of the list parameter param".
	in func(col, param string) string
	// ilike matches a LIKE pattern ignoring case, backslash escaping.
	ilike func(expr, param string) string
	// forUpdate locks a row read to be changed in the same transaction;
	// skipLocked does so skipping rows another transaction holds. SQLite
	// needs neither: a transaction holds the whole database (BEGIN
	// IMMEDIATE).
	forUpdate, skipLocked string
	// now is the current time as the store keeps timestamps.
	now string
	// plusMicros is now plus the microseconds of parameter param.
	plusMicros func(param string) string
	// secondsSince is the seconds from timestamp expression expr to now,
	// as a float.
	secondsSince func(expr string) string
	// endpointLock serialises webhook endpoint creation of one partner
	// ($1); "" when transactions are serial anyway.
	endpointLock string
	// missingSeqs lists (up to 10) sequence numbers of partner $1 from 1
	// to $2 that are neither in the journal nor in its quarantine.
	missingSeqs string

	// Row tables (schema.go builds their statements with these): element
	// i (from 0) of a per-column version array, an array of elements, the
	// greater of two values, a cast of an array parameter's element to the
	// column's array type.
	elem      func(array string, i int) string
	array     func(elems []string) string
	greatest  func(a, b string) string
	castArray func(expr string) string
	// batchRows is the FROM item that turns batch parameters (one list per
	// column, of types types) into rows with columns aliases, named as.
	batchRows func(types, aliases []string, as string) string
	// batchFilter is added to the WHERE of an UPDATE joined with a batch
	// keyed by $1 (a hint for Postgres's planner).
	batchFilter string
	// insertSelect separates INSERT ... SELECT from ON CONFLICT (SQLite
	// needs a WHERE there to parse it).
	insertSelect string

	// Journal statements of the SQLite sink (PGSink has its own, tuned).
	insertJournal, findConflicts string

	// insertEvents stores webhook events and their deliveries; claim
	// leases due deliveries. See Outbox.
	insertEvents func(ctx context.Context, tx Tx, partnerID string, evs []NewEvent, ds []deliveryRow, retryFor time.Duration) error
	claim        func(ctx context.Context, db *DB, n, perKey int, lease time.Duration) ([]Delivery, error)
}

var postgresDialect = &dialect{
	name:         "postgres",
	in:           func(col, param string) string { return col + " = ANY(" + param + ")" },
	ilike:        func(e, p string) string { return e + " ILIKE " + p },
	forUpdate:    " FOR UPDATE",
	skipLocked:   " FOR UPDATE SKIP LOCKED",
	now:          "now()",
	plusMicros:   func(p string) string { return "now() + " + p + " * interval '1 microsecond'" },
	secondsSince: func(e string) string { return "coalesce(extract(epoch FROM now() - " + e + "), 0)::float8" },
	endpointLock: `SELECT pg_advisory_xact_lock(hashtext('webhook_endpoints:' || $1))`,
	missingSeqs: `SELECT s FROM generate_series(1, $2::bigint) s
WHERE NOT EXISTS (SELECT 1 FROM journal j WHERE j.partner_id = $1 AND j.seq = s)
  AND NOT EXISTS (SELECT 1 FROM journal_quarantine q WHERE q.partner_id = $1 AND q.seq = s)
ORDER BY s LIMIT 10`,

	elem:      func(a string, i int) string { return fmt.Sprintf("%s[%d]", a, i+1) },
	array:     func(e []string) string { return "ARRAY[" + strings.Join(e, ", ") + "]::bigint[]" },
	greatest:  func(a, b string) string { return "GREATEST(" + a + ", " + b + ")" },
	castArray: func(e string) string { return e + "::bigint[]" },
	batchRows: func(types, aliases []string, as string) string {
		params := make([]string, len(types))
		for i, t := range types {
			params[i] = fmt.Sprintf("$%d::%s[]", i+1, t)
		}
		return "unnest(" + strings.Join(params, ", ") + ") AS " + as + "(" + strings.Join(aliases, ", ") + ")"
	},
	batchFilter:  " AND r.id = ANY($1::text[])",
	insertSelect: "",

	insertEvents: pgInsertEvents,
	claim:        pgClaim,
}

// liteNow is SQLite's now() in liteTimeLayout.
const liteNow = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

func liteIn(col, param string) string {
	return col + " IN (SELECT value FROM json_each(" + param + "))"
}

func litePlusMicros(p string) string {
	return "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('%.6f seconds', " + p + " / 1000000.0))"
}

var sqliteDialect = &dialect{
	name: "sqlite",
	in:   liteIn,
	// SQLite's LIKE ignores the case of ASCII letters; it has no default
	// escape character.
	ilike:      func(e, p string) string { return e + ` LIKE ` + p + ` ESCAPE '\'` },
	forUpdate:  "",
	skipLocked: "",
	now:        liteNow,
	plusMicros: litePlusMicros,
	secondsSince: func(e string) string {
		return "coalesce((julianday('now') - julianday(" + e + ")) * 86400.0, 0)"
	},
	endpointLock: "",
	missingSeqs: `WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $2)
SELECT n FROM s
WHERE NOT EXISTS (SELECT 1 FROM journal j WHERE j.partner_id = $1 AND j.seq = n)
  AND NOT EXISTS (SELECT 1 FROM journal_quarantine q WHERE q.partner_id = $1 AND q.seq = n)
ORDER BY n LIMIT 10`,

	elem:      func(a string, i int) string { return fmt.Sprintf("(%s ->> %d)", a, i) },
	array:     func(e []string) string { return "json_array(" + strings.Join(e, ", ") + ")" },
	greatest:  func(a, b string) string { return "max(" + a + ", " + b + ")" },
	castArray: func(e string) string { return e },
	// The batch is one parameter, $1: a JSON array of rows, each an array
	// of the row's values (liteBatch).
	batchRows: func(_, aliases []string, as string) string {
		cols := make([]string, len(aliases))
		for i, a := range aliases {
			cols[i] = fmt.Sprintf("value ->> %d AS %s", i, a)
		}
		return "(SELECT " + strings.Join(cols, ", ") + " FROM json_each($1)) AS " + as
	},
	batchFilter:  "",
	insertSelect: " WHERE true",

	insertEvents: liteInsertEvents,
	claim:        liteClaim,
}

func init() {
	journalCols := []string{"p", "s", "t", "r", "ts", "c", "m"}
	src := sqliteDialect.batchRows(nil, journalCols, "u")
	sqliteDialect.insertJournal = `INSERT INTO journal (partner_id, seq, type, reason, ts_ms, changes, meta)
SELECT u.p, u.s, u.t, u.r, u.ts, u.c, NULLIF(u.m, '') FROM ` + src + ` WHERE true
ON CONFLICT (partner_id, seq) DO NOTHING
RETURNING partner_id, seq`
	// Changes are stored in their canonical text (changesJSON) and meta as
	// encodeMeta left it, so equal events have equal text.
	sqliteDialect.findConflicts = `SELECT u.p, u.s FROM ` + src + `
JOIN journal j ON j.partner_id = u.p AND j.seq = u.s
WHERE (j.type, j.reason, j.ts_ms, j.changes, j.meta) IS NOT (u.t, u.r, u.ts, u.c, NULLIF(u.m, ''))`
}

// pgInsertEvents stores the events and their deliveries in one
// statement, keeping the order of ds: delivery ids order a key's
// deliveries.
func pgInsertEvents(ctx context.Context, tx Tx, partnerID string, evs []NewEvent, ds []deliveryRow, retryFor time.Duration) error {
	ids, types, bodies := make([]string, len(evs)), make([]string, len(evs)), make([]string, len(evs))
	for i, e := range evs {
		ids[i], types[i], bodies[i] = e.ID, e.Type, string(e.Body)
	}
	n := len(ds)
	eps, evIDs, keys, states, errs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attempts, statuses, waits := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, d := range ds {
		eps[i], evIDs[i], keys[i], states[i], errs[i] = d.endpoint, d.event, d.key, d.state, d.err
		attempts[i], statuses[i], waits[i] = d.attempts, d.status, d.wait
	}
	// The endpoints written to are locked (FOR KEY SHARE) against their
	// deletion, and deliveries of one deleted meanwhile are dropped: no
	// foreign key does either (migration 0034).
	if _, err := tx.Exec(ctx, `WITH ins AS (
			INSERT INTO webhook_events (id, partner_id, type, body)
			SELECT id, $1, type, body FROM unnest($2::text[], $3::text[], $4::text[]) AS u(id, type, body)
			ON CONFLICT (id) DO NOTHING
		), eps AS (
			SELECT id FROM webhook_endpoints WHERE id = ANY($6::text[]) FOR KEY SHARE
		)
		INSERT INTO webhook_deliveries (endpoint_id, event_id, order_key, state, attempts, last_status, last_error,
			next_at, retry_until, last_attempt_at, delivered_at)
		SELECT e, v, k, st, a, ls, le, now() + w * interval '1 microsecond', now() + $5 * interval '1 microsecond',
			CASE WHEN a > 0 THEN now() END, CASE WHEN st = 'DELIVERED' THEN now() END
		FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::text[], $13::bigint[])
			WITH ORDINALITY AS u(e, v, k, st, a, ls, le, w, n)
		WHERE e IN (SELECT id FROM eps)
		ORDER BY n
		ON CONFLICT (endpoint_id, event_id) DO NOTHING`,
		partnerID, ids, types, bodies, retryFor.Microseconds(), eps, evIDs, keys, states, attempts, statuses, errs, waits); err != nil {
		return fmt.Errorf("storing webhook events: %w", err)
	}
	return nil
}

// liteInsertEvents does what pgInsertEvents does, a row at a time, in
// order (SQLite has no data-modifying CTE).
func liteInsertEvents(ctx context.Context, tx Tx, partnerID string, evs []NewEvent, ds []deliveryRow, retryFor time.Duration) error {
	for _, e := range evs {
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_events (id, partner_id, type, body) VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO NOTHING`, e.ID, partnerID, e.Type, string(e.Body)); err != nil {
			return fmt.Errorf("storing webhook events: %w", err)
		}
	}
	for _, d := range ds {
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (endpoint_id, event_id, order_key, state, attempts, last_status, last_error,
				next_at, retry_until, last_attempt_at, delivered_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, `+litePlusMicros("$8")+`, `+litePlusMicros("$9")+`,
				CASE WHEN $5 > 0 THEN `+liteNow+` END, CASE WHEN $4 = 'DELIVERED' THEN `+liteNow+` END)
			ON CONFLICT (endpoint_id, event_id) DO NOTHING`,
			d.endpoint, d.event, d.key, d.state, d.attempts, d.status, d.err, d.wait, retryFor.Microseconds()); err != nil {
			return fmt.Errorf("storing webhook deliveries: %w", err)
		}
	}
	return nil
}

// deliveryColumns are what scanDelivery reads, d the delivery, ev its
// event and ep its endpoint.
const deliveryColumns = `d.id, d.endpoint_id, ep.partner_id, ep.url, ep.secret, d.event_id, ev.type, d.order_key, ev.body, d.state, d.attempts,
	d.last_status, d.last_error, d.created_at, d.next_at, d.retry_until, d.last_attempt_at, d.delivered_at`

// claimChains picks the deliveries to lease from pending, the pending
// deliveries looked at: per endpoint and order key, the deliveries in
// order, up to $3 of them and up to the first one that is not due or is
// leased (a key's events go out in order), at most $1 in all, oldest
// first. A limit that cuts a chain keeps a prefix of it. now is the time
// function.
func claimChains(pending, now string) string {
	return `SELECT id FROM (
			SELECT d.id, row_number() OVER w AS rn,
				min(CASE WHEN d.next_at <= ` + now + ` AND (d.lease_until IS NULL OR d.lease_until < ` + now + `) THEN 1 ELSE 0 END) OVER w AS ok
			FROM ` + pending + ` d
			WINDOW w AS (PARTITION BY d.endpoint_id, d.order_key ORDER BY d.id)
		) c WHERE ok = 1 AND rn <= $3 ORDER BY id LIMIT $1`
}

// claimWindow is how many of each endpoint's oldest pending deliveries
// pgClaim looks at. They hold a prefix of every key's chain, so the order
// per key holds; the cost of a claim no longer grows with the backlog.
// The price: a key with more than this many deliveries held back behind a
// failing one delays the endpoint's newer keys until it moves.
const claimWindow = 4096

// pgClaim leases due deliveries in one statement, looking at the
// claimWindow oldest pending deliveries of each enabled endpoint
// (webhook_deliveries_pending_idx). The endpoints are locked for the
// statement (SKIP LOCKED, NO KEY so new deliveries may still be inserted
// for them): two dispatchers never take deliveries of one endpoint at
// once, so neither can take a key's later delivery while the other takes
// its earlier one.
func pgClaim(ctx context.Context, db *DB, n, perKey int, lease time.Duration) ([]Delivery, error) {
	rows, err := db.Query(ctx, `WITH eps AS (
			SELECT id FROM webhook_endpoints WHERE disabled_at IS NULL FOR NO KEY UPDATE SKIP LOCKED
		), pending AS (
			SELECT p.* FROM eps CROSS JOIN LATERAL (
				SELECT d.id, d.endpoint_id, d.order_key, d.next_at, d.lease_until FROM webhook_deliveries d
				WHERE d.endpoint_id = eps.id AND d.state = 'PENDING' ORDER BY d.id LIMIT $4) p
		), due AS (`+claimChains("pending", "now()")+`)
		UPDATE webhook_deliveries d SET lease_until = now() + $2 * interval '1 microsecond'
		FROM due, webhook_events ev, webhook_endpoints ep
		WHERE d.id = due.id AND ev.id = d.event_id AND ep.id = d.endpoint_id
		RETURNING `+deliveryColumns, n, lease.Microseconds(), perKey, claimWindow)
	if err != nil {
		return nil, fmt.Errorf("claiming webhook deliveries: %w", err)
	}
	return collectDeliveries(rows)
}

// liteClaim leases due deliveries in a transaction (which holds the whole
// database): SQLite's RETURNING sees only the updated table, so the
// deliveries are read after.
func liteClaim(ctx context.Context, db *DB, n, perKey int, lease time.Duration) ([]Delivery, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("claiming webhook deliveries: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	pending := `(SELECT d.* FROM webhook_deliveries d JOIN webhook_endpoints x ON x.id = d.endpoint_id AND x.disabled_at IS NULL
		WHERE d.state = 'PENDING')`
	rows, err := tx.Query(ctx, `UPDATE webhook_deliveries SET lease_until = `+litePlusMicros("$2")+`
		WHERE id IN (`+claimChains(pending, liteNow)+`)
		RETURNING id`, n, lease.Microseconds(), perKey)
	if err != nil {
		return nil, fmt.Errorf("claiming webhook deliveries: %w", err)
	}
	ids, err := collect(rows, scanInt64)
	if err != nil {
		return nil, fmt.Errorf("claiming webhook deliveries: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err = tx.Query(ctx, `SELECT `+deliveryColumns+`
		FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id JOIN webhook_endpoints ep ON ep.id = d.endpoint_id
		WHERE `+liteIn("d.id", "$1"), ids)
	if err != nil {
		return nil, fmt.Errorf("claiming webhook deliveries: %w", err)
	}
	out, err := collectDeliveries(rows)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("claiming webhook deliveries: %w", err)
	}
	return out, nil
}
