package pgstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DB is the durable store behind the write-behind, recovery, audit,
// transaction history, webhooks and the admin API: PostgreSQL in
// production, or one SQLite file for `antaca demo` (OpenSQLite). Callers
// write their statements once, in the SQL both accept ($1 placeholders);
// what the two dialects say differently comes from the DB's dialect
// (dialect.go), never from the caller.
//
// Values cross in Go types on both: []string and []int64 parameters (lists
// for In, text[] columns), time.Time and *time.Time. On SQLite lists travel
// as JSON text and times as UTC text, which DB converts on the way in and
// out.
type DB struct {
	pool *pgxpool.Pool // Postgres
	lite *sql.DB       // SQLite
	d    *dialect
	path string // the SQLite file
}

// Postgres wraps a pgx pool. Closing the DB closes the pool.
func Postgres(pool *pgxpool.Pool) *DB { return &DB{pool: pool, d: postgresDialect} }

// Pool returns the Postgres pool, nil on SQLite.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Engine names the store: "postgres" or "sqlite".
func (db *DB) Engine() string { return db.d.name }

// Path is the SQLite file ("" on Postgres).
func (db *DB) Path() string { return db.path }

// Close releases the connections.
func (db *DB) Close() {
	if db.pool != nil {
		db.pool.Close()
	}
	if db.lite != nil {
		_ = db.lite.Close()
	}
}

// Ping checks that the store answers.
func (db *DB) Ping(ctx context.Context) error {
	if db.pool != nil {
		return db.pool.Ping(ctx)
	}
	return db.lite.PingContext(ctx)
}

// Sink returns the write-behind's sink on this store.
func (db *DB) Sink() Sink {
	if db.pool != nil {
		return NewPGSink(db.pool)
	}
	return &liteSink{db: db}
}

// In is the condition "col is one of the values of the list parameter
// param" ($n bound to a []string or []int64).
func (db *DB) In(col, param string) string { return db.d.in(col, param) }

// ILike is the condition "expr matches the LIKE pattern param, ignoring
// case", with backslash escaping the pattern's wildcards.
func (db *DB) ILike(expr, param string) string { return db.d.ilike(expr, param) }

// ForUpdate is the locking clause of a SELECT that reads a row to change
// it in the same transaction ("" where a transaction already holds the
// whole database, as on SQLite).
func (db *DB) ForUpdate() string { return db.d.forUpdate }

// Rows are the rows of a query; Close may be called more than once.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is the single row of QueryRow; Scan returns an error wrapping
// sql.ErrNoRows when there is none.
type Row interface {
	Scan(dest ...any) error
}

// Querier runs statements on a DB or inside a Tx.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
	// Exec returns the number of rows the statement changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
}

// Tx is a transaction. Rollback after Commit does nothing.
type Tx interface {
	Querier
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

var (
	_ Querier = (*DB)(nil)
	_ Tx      = pgTx{}
	_ Tx      = liteTx{}
)

// Query runs a statement that returns rows.
func (db *DB) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	if db.pool != nil {
		return db.pool.Query(ctx, query, args...)
	}
	return liteQuery(ctx, db.lite, query, args)
}

// QueryRow runs a statement that returns at most one row.
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) Row {
	if db.pool != nil {
		return db.pool.QueryRow(ctx, query, args...)
	}
	return liteQueryRow(ctx, db.lite, query, args)
}

// Exec runs a statement and returns how many rows it changed.
func (db *DB) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	if db.pool != nil {
		tag, err := db.pool.Exec(ctx, query, args...)
		return tag.RowsAffected(), err
	}
	return liteExec(ctx, db.lite, query, args)
}

// Begin starts a transaction. On SQLite it takes the write lock at once
// (BEGIN IMMEDIATE), so transactions never fail halfway on a lock upgrade.
func (db *DB) Begin(ctx context.Context) (Tx, error) {
	if db.pool != nil {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return nil, err
		}
		return pgTx{tx}, nil
	}
	tx, err := db.lite.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return liteTx{tx}, nil
}

// IsUniqueViolation reports whether err is a duplicate key of a unique
// index or primary key.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var le *sqlite.Error
	if errors.As(err, &le) {
		return le.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || le.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}

// pgTx is a pgx transaction as a Tx.
type pgTx struct{ tx pgx.Tx }

func (t pgTx) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	return t.tx.Query(ctx, query, args...)
}

func (t pgTx) QueryRow(ctx context.Context, query string, args ...any) Row {
	return t.tx.QueryRow(ctx, query, args...)
}

func (t pgTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (t pgTx) Commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t pgTx) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

// liteConn is what *sql.DB and *sql.Tx share.
type liteConn interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

type liteTx struct{ tx *sql.Tx }

func (t liteTx) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	return liteQuery(ctx, t.tx, query, args)
}

func (t liteTx) QueryRow(ctx context.Context, query string, args ...any) Row {
	return liteQueryRow(ctx, t.tx, query, args)
}

func (t liteTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	return liteExec(ctx, t.tx, query, args)
}

func (t liteTx) Commit(context.Context) error { return t.tx.Commit() }

func (t liteTx) Rollback(context.Context) error {
	if err := t.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}

func liteQuery(ctx context.Context, c liteConn, query string, args []any) (Rows, error) {
	rows, err := c.QueryContext(ctx, query, liteArgs(args)...)
	if err != nil {
		return nil, err
	}
	return &liteRows{rows: rows}, nil
}

func liteExec(ctx context.Context, c liteConn, query string, args []any) (int64, error) {
	res, err := c.ExecContext(ctx, query, liteArgs(args)...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// liteRow is QueryRow's result: the query runs when Scan is called, like
// database/sql's own Row.
type liteRow struct {
	ctx   context.Context
	c     liteConn
	query string
	args  []any
}

func liteQueryRow(ctx context.Context, c liteConn, query string, args []any) Row {
	return liteRow{ctx: ctx, c: c, query: query, args: args}
}

func (r liteRow) Scan(dest ...any) error {
	rows, err := liteQuery(r.ctx, r.c, r.query, r.args)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows // wraps sql.ErrNoRows, as on Postgres
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

type liteRows struct {
	rows *sql.Rows
}

func (r *liteRows) Next() bool { return r.rows.Next() }
func (r *liteRows) Err() error { return r.rows.Err() }
func (r *liteRows) Close()     { _ = r.rows.Close() }

// Scan converts what SQLite stores back into the Go types the Postgres
// driver gives: JSON text into []string, UTC text into time.Time.
func (r *liteRows) Scan(dest ...any) error {
	conv := make([]any, len(dest))
	for i, d := range dest {
		switch d := d.(type) {
		case *[]string:
			conv[i] = jsonScanner{d}
		case *time.Time:
			conv[i] = timeScanner{t: d}
		case **time.Time:
			conv[i] = timeScanner{pt: d}
		default:
			conv[i] = d
		}
	}
	return r.rows.Scan(conv...)
}

// liteTimeLayout is how SQLite keeps a time: UTC, milliseconds, fixed
// width, so that text order is time order. The schema's defaults and the
// dialect's now() write the same form.
const liteTimeLayout = "2006-01-02T15:04:05.000Z"

// liteArgs converts parameters to what SQLite stores.
func liteArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch a := a.(type) {
		case []string:
			out[i] = jsonText(a)
		case []int64:
			out[i] = jsonText(a)
		case time.Time:
			out[i] = a.UTC().Format(liteTimeLayout)
		case *time.Time:
			if a == nil {
				out[i] = nil
			} else {
				out[i] = a.UTC().Format(liteTimeLayout)
			}
		default:
			if v := reflect.ValueOf(a); v.IsValid() && v.Kind() == reflect.String && v.Type() != reflect.TypeOf("") {
				out[i] = v.String() // named string types (roles, reasons)
			} else {
				out[i] = a
			}
		}
	}
	return out
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("pgstore: encoding a list parameter: %v", err)) // lists of strings and integers always encode
	}
	if string(b) == "null" {
		return "[]"
	}
	return string(b)
}

type jsonScanner struct{ dst *[]string }

func (s jsonScanner) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		*s.dst = nil
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("scanning a list: %T is no JSON text", src)
	}
	return json.Unmarshal(b, s.dst)
}

type timeScanner struct {
	t  *time.Time
	pt **time.Time
}

func (s timeScanner) Scan(src any) error {
	var t time.Time
	switch v := src.(type) {
	case nil:
		if s.pt == nil {
			return errors.New("scanning a time: NULL")
		}
		*s.pt = nil
		return nil
	case time.Time:
		t = v
	case string:
		var err error
		if t, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return fmt.Errorf("scanning a time: %w", err)
		}
	default:
		return fmt.Errorf("scanning a time: %T", src)
	}
	if s.pt != nil {
		*s.pt = &t
	} else {
		*s.t = t
	}
	return nil
}

// collect reads every row with fn and closes rows.
func collect[T any](rows Rows, fn func(Row) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := fn(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func scanString(r Row) (string, error) {
	var s string
	err := r.Scan(&s)
	return s, err
}

func scanInt64(r Row) (int64, error) {
	var n int64
	err := r.Scan(&n)
	return n, err
}
