// Package pgstore is the durable side of the ledger: the schema and its
// migrations, the write-behind worker that copies the Redis journal into
// Postgres, the recovery that rebuilds Redis from Postgres, and the audit that
// reconciles the two and checks the money identity.
//
// Redis is the source of truth for real-time state; Postgres is the durable
// copy. Everything here follows docs/ledger.md: row tables with the columns of
// ledger.Columns, a journal keyed by (partner_id, seq), and events applied at
// least once with exactly-once effect. The same code runs on a SQLite file
// for `antaca demo` (DB, OpenSQLite): what the two stores say differently
// is in dialect.go.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers the pgx5:// driver
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrate brings the database at databaseURL (postgres://, postgresql:// or
// pgx5://) to the latest schema. Running it on an up-to-date database is a
// no-op, and golang-migrate's advisory lock lets several instances start at
// once. Cancelling ctx stops between migrations; golang-migrate has no
// per-statement cancellation.
func Migrate(ctx context.Context, databaseURL string) error {
	murl, err := migrateURL(databaseURL)
	if err != nil {
		return err
	}
	src, err := iofs.New(migrationsFS, "migrations")
	if err != nil {
		return fmt.Errorf("reading embedded migrations: %w", err)
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, murl)
	if err != nil {
		return fmt.Errorf("opening migrations: %w", err)
	}
	defer m.Close()

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			select {
			case m.GracefulStop <- true:
			default:
			}
		case <-done:
		}
	}()

	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("applying migrations: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("applying migrations: %w", err)
	}
	return nil
}

// migrateURL turns a libpq-style URL into the pgx5:// URL golang-migrate's
// pgx/v5 driver is registered under, and bounds the connect time so an
// unreachable server fails instead of hanging.
func migrateURL(databaseURL string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil || u.Scheme == "" || u.Host == "" && !strings.Contains(u.RawQuery, "host=") {
		return "", errors.New("database url must look like postgres://user@host:port/dbname")
	}
	switch u.Scheme {
	case "postgres", "postgresql", "pgx5":
		u.Scheme = "pgx5"
	default:
		return "", fmt.Errorf("database url scheme %q is not postgres://", u.Scheme)
	}
	q := u.Query()
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "10")
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// OpenPool connects a pgx pool to databaseURL and checks the server answers,
// so a misconfigured URL fails at startup rather than at the first batch.
func OpenPool(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing database url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening postgres pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	return pool, nil
}
