// Package ledgertest gives each test its own Redis key space and its own
// Postgres database on the real servers, and cleans both up afterwards.
//
// ANTACA_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) and
// ANTACA_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable,
// a database the test may create other databases from) choose the servers.
package ledgertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/ledger"
)

// RedisURL is the Redis server tests use.
func RedisURL() string {
	if u := os.Getenv("ANTACA_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// AdminDatabaseURL is the Postgres database tests create their databases from.
func AdminDatabaseURL() string {
	if u := os.Getenv("ANTACA_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// UniqueName returns a short random name with the given prefix.
func UniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// MustRedis connects to the test Redis and returns the client and a key
// prefix no other test uses. Every key under the prefix is deleted when the
// test ends.
func MustRedis(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	opts, err := redis.ParseURL(RedisURL())
	if err != nil {
		tb.Fatalf("parsing redis url: %v", err)
	}
	opts.PoolSize = 64
	rdb := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		tb.Fatalf("redis unreachable at %s: %v", RedisURL(), err)
	}
	prefix := UniqueName("t")
	tb.Cleanup(func() {
		_, _ = ledger.DeleteKeys(context.Background(), rdb, prefix+":*")
		_ = rdb.Close()
	})
	return rdb, prefix
}

// DeleteKeys removes every key matching pattern and fails the test when
// that does not work or nothing matched: a wipe that silently did nothing
// would let a recovery test pass without recovering anything.
func DeleteKeys(tb testing.TB, ctx context.Context, rdb redis.UniversalClient, pattern string) {
	tb.Helper()
	n, err := ledger.DeleteKeys(ctx, rdb, pattern)
	if err != nil {
		tb.Fatalf("wiping %s: %v", pattern, err)
	}
	if n == 0 {
		tb.Fatalf("wiping %s: no key matched", pattern)
	}
	left, err := ledger.ScanKeys(ctx, rdb, pattern, "")
	if err != nil || len(left) != 0 {
		tb.Fatalf("wiping %s: %d keys left (%v)", pattern, len(left), err)
	}
}

// MustDatabase creates a fresh Postgres database for the test and returns
// its URL. The database is dropped when the test ends.
func MustDatabase(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminDatabaseURL())
	if err != nil {
		tb.Fatalf("postgres unreachable at %s: %v", AdminDatabaseURL(), err)
	}
	name := UniqueName("antaca_test_")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close(ctx)
		tb.Fatalf("creating database: %v", err)
	}
	_ = admin.Close(ctx)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, AdminDatabaseURL())
		if err != nil {
			return
		}
		defer admin.Close(ctx)
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(AdminDatabaseURL())
	if err != nil {
		tb.Fatalf("parsing database url: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// LogBuffer collects what many goroutines write (a test's log output).
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
