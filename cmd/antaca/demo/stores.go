package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
)

// Files of the data directory.
const (
	dbFile       = "antaca.db"      // the SQLite journal and projections
	redisURLFile = "redis.url"      // the running demo's in-memory Redis (with its password)
	passwordFile = "admin-password" // the admin password the demo made
	cardsFile    = "cards.json"     // the seeded program: the simulator's cards file
	scenarioFile = "authorize.yaml" // the authorization of the first printed command
	lockFile     = "lock"
)

// Stores are the demo's embedded stores: an in-process Redis (miniredis)
// that runs the ledger's Lua scripts, and a SQLite file that holds the
// journal and every row. Redis keeps nothing on disk: it starts empty and
// the switch rebuilds it from SQLite.
type Stores struct {
	Redis *redis.Client
	DB    *pgstore.DB
	// URL reaches the in-memory Redis (loopback, password protected).
	URL string

	server *miniredis.Miniredis
	stop   chan struct{}
	done   sync.WaitGroup
}

// OpenStores opens the SQLite file of dir and starts an empty in-memory
// Redis on a loopback port, with a random password.
func OpenStores(ctx context.Context, dir string) (*Stores, error) {
	db, err := pgstore.OpenSQLite(ctx, filepath.Join(dir, dbFile))
	if err != nil {
		return nil, err
	}
	m := miniredis.NewMiniRedis()
	password := randomHex(16)
	m.RequireAuth(password)
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		db.Close()
		return nil, fmt.Errorf("starting the in-memory redis: %w", err)
	}
	u := url.URL{Scheme: "redis", User: url.UserPassword("", password), Host: m.Addr(), Path: "/0"}
	s := &Stores{DB: db, URL: u.String(), server: m, stop: make(chan struct{})}
	s.Redis = redisClient(m.Addr(), password)
	if err := s.Redis.Ping(ctx).Err(); err != nil {
		s.Close()
		return nil, fmt.Errorf("connecting to the in-memory redis: %w", err)
	}
	// miniredis counts key lifetimes down only when told to: tell it every
	// second what passed, so idempotency records, sessions and closed
	// holds expire as they do in Redis.
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-s.stop:
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return s, nil
}

// redisClient connects to the in-memory Redis as the switch connects to
// Redis: deadlines reach the socket, no retries.
func redisClient(addr, password string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Password: password, ContextTimeoutEnabled: true,
		PoolSize: 64, DialTimeout: time.Second, MaxRetries: 0})
}

// AppStores are the stores as the switch takes them over (it closes the
// client and the database when it stops; Close stops the server).
func (s *Stores) AppStores() app.Stores { return app.Stores{Redis: s.Redis, DB: s.DB} }

// Close stops the in-memory Redis and closes what the switch did not.
func (s *Stores) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.done.Wait()
	_ = s.Redis.Close()
	s.DB.Close()
	s.server.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Audit compares Redis with SQLite and checks the money identity on both,
// as `antaca audit` does for Redis and Postgres. While the demo of dir
// runs, it audits that demo's in-memory Redis (after flushing its
// journal); otherwise it rebuilds a fresh in-memory Redis from the file,
// which checks the stored rows and journal, and that a rebuild reproduces
// them.
func Audit(ctx context.Context, dir string, wait time.Duration) (pgstore.AuditReport, string, error) {
	if _, err := os.Stat(filepath.Join(dir, dbFile)); err != nil {
		return pgstore.AuditReport{}, "", fmt.Errorf("no demo in %s: %w", dir, err)
	}
	keys := ledger.Keys{Prefix: ledger.DefaultPrefix}
	if rdb, ok := running(ctx, dir); ok {
		defer rdb.Close()
		db, err := pgstore.OpenSQLite(ctx, filepath.Join(dir, dbFile))
		if err != nil {
			return pgstore.AuditReport{}, "", err
		}
		defer db.Close()
		wb, err := pgstore.NewWriteBehind(pgstore.Options{Redis: rdb, Keys: keys, Sink: db.Sink()})
		if err != nil {
			return pgstore.AuditReport{}, "", err
		}
		fctx, cancel := context.WithTimeout(ctx, wait)
		err = wb.Flush(fctx)
		cancel()
		if err != nil {
			return pgstore.AuditReport{}, "", fmt.Errorf("flushing the running demo's journal: %w", err)
		}
		rep, err := pgstore.Audit(ctx, rdb, keys, db, pgstore.WithIdempotencyTTL(retention))
		what := "the running demo's in-memory redis against " + dbFile
		if err == nil && !rep.OK() {
			what += " (what changes while the audit reads shows up as differences: audit with --load 0, or after Ctrl-C)"
		}
		return rep, what, err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return pgstore.AuditReport{}, "", err
	}
	defer unlock()
	s, err := OpenStores(ctx, dir)
	if err != nil {
		return pgstore.AuditReport{}, "", err
	}
	defer s.Close()
	if _, err := pgstore.Rebuild(ctx, s.Redis, keys, s.DB, pgstore.WithIdempotencyTTL(retention)); err != nil {
		return pgstore.AuditReport{}, "", fmt.Errorf("rebuilding from %s: %w", dbFile, err)
	}
	rep, err := pgstore.Audit(ctx, s.Redis, keys, s.DB, pgstore.WithIdempotencyTTL(retention))
	return rep, "a redis rebuilt from " + dbFile + " (the demo is not running)", err
}

// running connects to the in-memory Redis of the demo that runs on dir,
// if one does.
func running(ctx context.Context, dir string) (*redis.Client, bool) {
	b, err := os.ReadFile(filepath.Join(dir, redisURLFile))
	if errors.Is(err, fs.ErrNotExist) || err != nil {
		return nil, false
	}
	opts, err := redis.ParseURL(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, false
	}
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if rdb.Ping(pctx).Err() != nil {
		_ = rdb.Close()
		return nil, false
	}
	return rdb, true
}
