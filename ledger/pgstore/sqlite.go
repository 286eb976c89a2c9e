package pgstore

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed sqlite.sql
var sqliteSchema string

// sqliteRowIndexes are the row tables' indexes the listings need (the
// Postgres ones of migrations 0001 and 0010).
var sqliteRowIndexes = []string{
	`CREATE INDEX IF NOT EXISTS holds_card_created_idx ON holds (card_id, created_ms DESC, id DESC)`,
	`CREATE INDEX IF NOT EXISTS holds_balance_created_idx ON holds (balance_id, created_ms DESC, id DESC)`,
	`CREATE INDEX IF NOT EXISTS cards_customer_idx ON cards (customer_id)`,
	`CREATE INDEX IF NOT EXISTS user_balances_customer_idx ON user_balances (customer_id)`,
}

// OpenSQLite opens (creating it when missing) the SQLite file at path as a
// durable store, with the schema of sqlite.sql and the row tables of
// ledger.Columns (columns added to the ledger since the file was made are
// added to it). It runs in WAL mode and fsyncs every commit, so that what
// the write-behind committed survives a crash of the process or the
// machine. Pure Go (modernc.org/sqlite): no C compiler, no server.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	lite, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	// Readers run beside the one writer (WAL); writers wait for each
	// other (busy_timeout).
	lite.SetMaxOpenConns(8)
	db := &DB{lite: lite, d: sqliteDialect, path: path}
	if err := db.createSchema(ctx); err != nil {
		_ = lite.Close()
		return nil, fmt.Errorf("preparing %s: %w", path, err)
	}
	return db, nil
}

func (db *DB) createSchema(ctx context.Context) error {
	if _, err := db.lite.ExecContext(ctx, sqliteSchema); err != nil {
		return err
	}
	for _, t := range tableOrder {
		defs := []string{"id text PRIMARY KEY", "partner_id text NOT NULL", "v integer NOT NULL DEFAULT 0", "cv text", "ca text"}
		for i, c := range t.cols {
			defs = append(defs, liteColumnDef(t, i, c))
		}
		if _, err := db.lite.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+quote(t.name)+" ("+strings.Join(defs, ", ")+")"); err != nil {
			return fmt.Errorf("creating %s: %w", t.name, err)
		}
		have, err := db.liteColumns(ctx, t.name)
		if err != nil {
			return err
		}
		for i, c := range t.cols {
			if have[c] {
				continue
			}
			if _, err := db.lite.ExecContext(ctx, "ALTER TABLE "+quote(t.name)+" ADD COLUMN "+liteColumnDef(t, i, c)); err != nil {
				return fmt.Errorf("adding %s.%s: %w", t.name, c, err)
			}
		}
	}
	// Columns sqlite.sql gained after files were made with it.
	for _, c := range sqliteAddedColumns {
		have, err := db.liteColumns(ctx, c.table)
		if err != nil {
			return err
		}
		if !have[c.column] {
			if _, err := db.lite.ExecContext(ctx, "ALTER TABLE "+quote(c.table)+" ADD COLUMN "+quote(c.column)+" "+c.def); err != nil {
				return fmt.Errorf("adding %s.%s: %w", c.table, c.column, err)
			}
		}
	}
	for _, s := range sqliteRowIndexes {
		if _, err := db.lite.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// sqliteAddedColumns are the columns of sqlite.sql's tables added after
// its first release, which CREATE TABLE IF NOT EXISTS does not add to an
// existing file.
var sqliteAddedColumns = []struct{ table, column, def string }{
	{"webhook_cursors", "lease_until", "text"}, // Outbox.Advance's lease
}

// liteColumns are the names of the columns of a table.
func (db *DB) liteColumns(ctx context.Context, table string) (map[string]bool, error) {
	have := map[string]bool{}
	rows, err := db.lite.QueryContext(ctx, "SELECT name FROM pragma_table_info('"+table+"')")
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			_ = rows.Close()
			return nil, err
		}
		have[n] = true
	}
	return have, rows.Close()
}

func liteColumnDef(t *table, i int, c string) string {
	if t.numeric[i] {
		return quote(c) + " integer NOT NULL DEFAULT 0"
	}
	return quote(c) + " text NOT NULL DEFAULT ''"
}

// liteSink is the Sink of a SQLite DB: the rule of PGSink (docs/ledger.md,
// "Order"), with the statements schema.go builds for SQLite. SQLite has
// one writer at a time, so a batch is one short transaction.
type liteSink struct{ db *DB }

var (
	_ Sink        = (*liteSink)(nil)
	_ Quarantiner = (*liteSink)(nil)
)

func (s *liteSink) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// Quarantine implements Quarantiner as PGSink does.
func (s *liteSink) Quarantine(ctx context.Context, q QuarantinedEntry) error {
	return insertQuarantined(ctx, s.db, q)
}

// Apply implements Sink: the journal rows of a batch in one statement,
// then per table one UPDATE of the rows that exist and one INSERT of the
// others, with the changes of every new event aggregated per row, as
// PGSink does.
func (s *liteSink) Apply(ctx context.Context, events []Event) (int, error) {
	evs, chs, err := distinctEvents(events)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	n, err := s.apply(ctx, evs, chs)
	if err != nil {
		return 0, liteRefusal(err)
	}
	return n, nil
}

func (s *liteSink) apply(ctx context.Context, evs []Event, chs []string) (int, error) {
	journal := make([][]any, len(evs))
	for i, ev := range evs {
		journal[i] = []any{ev.PartnerID, ev.Seq, ev.Type, ev.Reason, ev.TsMs, chs[i], ev.Meta}
	}
	batch, err := json.Marshal(journal)
	if err != nil {
		return 0, fmt.Errorf("%w: encoding the batch: %w", errInvalidEvent, err)
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	rows, err := tx.Query(ctx, sqliteDialect.insertJournal, string(batch))
	if err != nil {
		return 0, fmt.Errorf("inserting journal: %w", err)
	}
	ids, err := collect(rows, func(r Row) (eventKey, error) {
		var k eventKey
		err := r.Scan(&k.partner, &k.seq)
		return k, err
	})
	if err != nil {
		return 0, fmt.Errorf("inserting journal: %w", err)
	}
	inserted := make(map[eventKey]bool, len(ids))
	for _, k := range ids {
		inserted[k] = true
	}
	if len(inserted) < len(evs) {
		// Some were stored before: a replay must be the same event.
		rows, err := tx.Query(ctx, sqliteDialect.findConflicts, string(batch))
		if err != nil {
			return 0, fmt.Errorf("comparing replayed events: %w", err)
		}
		conflicts, err := collect(rows, func(r Row) (EventID, error) {
			var id EventID
			err := r.Scan(&id.PartnerID, &id.Seq)
			return id, err
		})
		if err != nil {
			return 0, fmt.Errorf("comparing replayed events: %w", err)
		}
		if len(conflicts) > 0 {
			return 0, &ConflictError{Events: conflicts}
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
	for _, t := range tableOrder {
		ta := agg.tables[t.name]
		if ta == nil || len(ta.rows) == 0 {
			continue
		}
		if _, err := tx.Exec(ctx, t.lite.updateSQL, liteBatch(ta.updateArgs())); err != nil {
			return 0, fmt.Errorf("applying row changes to %s: %w", t.name, err)
		}
		// cv and ca (arguments 3 and 4) are Postgres array literals.
		if _, err := tx.Exec(ctx, t.lite.insertSQL, liteBatch(ta.insertArgs(), 3, 4)); err != nil {
			return 0, fmt.Errorf("inserting rows of %s: %w", t.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("committing: %w", err)
	}
	return applied, nil
}

// liteBatch turns batch arguments in Postgres's form (one list per column,
// for unnest) into SQLite's: one JSON array of rows, each the row's values
// in column order. The arguments at arrayArgs hold Postgres array
// literals of integers ({1,2}), which become JSON arrays.
func liteBatch(args []any, arrayArgs ...int) string {
	n := 0
	switch a := args[0].(type) {
	case []string:
		n = len(a)
	case []int64:
		n = len(a)
	}
	isArray := make([]bool, len(args))
	for _, i := range arrayArgs {
		isArray[i] = true
	}
	b := make([]byte, 0, 64*n*len(args))
	b = append(b, '[')
	for r := range n {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for i, a := range args {
			if i > 0 {
				b = append(b, ',')
			}
			switch col := a.(type) {
			case []int64:
				b = strconv.AppendInt(b, col[r], 10)
			case []string:
				if isArray[i] {
					b = append(b, '[')
					b = append(b, strings.TrimSuffix(strings.TrimPrefix(col[r], "{"), "}")...)
					b = append(b, ']')
				} else {
					b = appendJSONString(b, col[r])
				}
			default:
				panic(fmt.Sprintf("pgstore: batch argument %d is %T", i, a))
			}
		}
		b = append(b, ']')
	}
	return string(append(b, ']'))
}

// liteRefusal marks what SQLite refuses for the batch's content (malformed
// text, a constraint, a value too large) as refused, so that the
// write-behind isolates the entry at fault instead of retrying forever.
func liteRefusal(err error) error {
	var le *sqlite.Error
	if !errors.As(err, &le) {
		return err
	}
	switch le.Code() & 0xff {
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG:
		return fmt.Errorf("%w: %w", errInvalidEvent, err)
	case sqlite3.SQLITE_ERROR:
		if strings.Contains(le.Error(), "malformed JSON") {
			return fmt.Errorf("%w: %w", errInvalidEvent, err)
		}
	}
	return err
}
