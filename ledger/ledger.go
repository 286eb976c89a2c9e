// Package ledger is Antaca's money and real-time state: balances, holds,
// cards and idempotency keys in Redis, changed only by Lua scripts that
// validate first, write after and append their journal entry (XADD) in the
// same script; the write-behind (package ledger/pgstore) makes the journal
// durable in Postgres. docs/ledger.md describes keys, rows and events.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
)

// Ledger runs the scripts on one go-redis client. The client interface is
// the storage seam: a single Redis, Redis Cluster, or an in-process Redis
// that runs the same Lua.
type Ledger struct {
	rdb     redis.UniversalClient
	exec    redis.Scripter // rdb, or its auto-pipeline
	keys    Keys
	scripts map[string]*redis.Script
	idemTTL time.Duration
	now     func() time.Time

	journal     Journal
	answerAfter AnswerAfter
}

// Options configure a Ledger.
type Options struct {
	// Prefix of every key (DefaultPrefix when empty).
	Prefix string
	// IdempotencyTTL is how long an answer is kept for retransmissions
	// (default 7 days).
	IdempotencyTTL time.Duration
	// Now is the clock (time.Now when nil); tests move it.
	Now func() time.Time
	// AutoPipeline sends the scripts of concurrent callers to Redis
	// together, in one ordered stream (go-redis AutoPipeline), so that N
	// authorizations in flight cost far fewer than N round trips. Only for
	// a single Redis (*redis.Client); ignored otherwise.
	AutoPipeline bool
}

// New returns a ledger on rdb.
func New(rdb redis.UniversalClient, opts Options) (*Ledger, error) {
	scripts, err := loadScripts()
	if err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.IdempotencyTTL <= 0 {
		opts.IdempotencyTTL = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Ledger{rdb: rdb, exec: rdb, keys: Keys{Prefix: opts.Prefix}, scripts: scripts, idemTTL: opts.IdempotencyTTL, now: opts.Now}
	if c, ok := rdb.(*redis.Client); ok && opts.AutoPipeline {
		ap, err := c.AutoPipeline()
		if err != nil {
			return nil, fmt.Errorf("starting the redis auto-pipeline: %w", err)
		}
		l.exec = ap
	}
	return l, nil
}

// Keys returns the key layout.
func (l *Ledger) Keys() Keys { return l.keys }

// Preload loads every script into Redis so the first authorization does not
// pay for it. Scripts survive a Redis restart anyway: go-redis falls back
// from EVALSHA to EVAL on NOSCRIPT.
func (l *Ledger) Preload(ctx context.Context) error {
	for name, s := range l.scripts {
		if err := s.Load(ctx, l.rdb).Err(); err != nil {
			return fmt.Errorf("loading script %s: %w", name, err)
		}
	}
	return nil
}

// NewID returns a random id with a type prefix, e.g. "hld_9f2c..."
// (authz.NewID).
func NewID(prefix string) string { return authz.NewID(prefix) }

// run runs a script that changes state; its answer waits for durability
// (see runWith).
func (l *Ledger) run(ctx context.Context, name, partnerID string, args ...any) *redis.Cmd {
	return l.runWith(ctx, waitDurable, name, partnerID, args...)
}

func (l *Ledger) ttlMS() int64 { return l.idemTTL.Milliseconds() }

// index records which partner an id belongs to, so that routes without a
// partner in their path (admin, card ids) find the partner's hash tag.
func (l *Ledger) index(ctx context.Context, partnerID string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(ids))
	for _, id := range ids {
		args = append(args, id, partnerID)
	}
	if err := l.rdb.HSet(ctx, l.keys.Index(), args...).Err(); err != nil {
		return fmt.Errorf("indexing ids: %w", err)
	}
	return nil
}

// PartnerOf returns the partner an id (customer, balance, card, hold) belongs to.
func (l *Ledger) PartnerOf(ctx context.Context, id string) (string, error) {
	p, err := l.rdb.HGet(ctx, l.keys.Index(), id).Result()
	if err == redis.Nil {
		return "", fmt.Errorf("finding partner of %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("finding partner of %q: %w", id, err)
	}
	return p, nil
}

// Ready reports whether Redis holds the state (set on first use and after a rebuild).
func (l *Ledger) Ready(ctx context.Context) (bool, error) {
	n, err := l.rdb.Exists(ctx, l.keys.Ready()).Result()
	return n == 1, err
}

// MarkReady records that Redis holds the full state.
func (l *Ledger) MarkReady(ctx context.Context) error {
	return l.rdb.Set(ctx, l.keys.Ready(), l.now().UTC().Format(time.RFC3339), 0).Err()
}

// fields decodes the integer columns of a row, or the integers of a
// script's reply. A field that holds anything but an integer is an error
// (ErrMalformed, naming the field, never its value), not a silent 0: an
// amount read as 0 would misstate a balance. An empty field, a column the
// row does not have, is 0.
type fields struct {
	what string // the row or reply, for the error
	err  error
}

// ErrMalformed says a row or a script's reply holds a field that is not
// what it must be: a corrupt row, or a script out of step with this code.
var ErrMalformed = errors.New("malformed field")

func (f *fields) int(name, s string) int64 {
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("%s: %s: %w", f.what, name, ErrMalformed)
	}
	return n
}

// time reads a time column (Unix milliseconds); zero when empty.
func (f *fields) time(name, s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	return time.UnixMilli(f.int(name, s)).UTC()
}

// toStrings converts a script's array reply to strings.
func toStrings(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, len(arr))
	for i, x := range arr {
		switch t := x.(type) {
		case string:
			out[i] = t
		case int64:
			out[i] = strconv.FormatInt(t, 10)
		case nil:
			out[i] = ""
		default:
			out[i] = fmt.Sprint(t)
		}
	}
	return out
}

// ScanKeys returns every key matching pattern of type typ ("" for any). On
// Redis Cluster it scans every master.
func ScanKeys(ctx context.Context, rdb redis.UniversalClient, pattern, typ string) ([]string, error) {
	scan := func(ctx context.Context, c redis.Cmdable) ([]string, error) {
		var out []string
		var cursor uint64
		for {
			var (
				keys []string
				err  error
			)
			if typ != "" {
				keys, cursor, err = c.ScanType(ctx, cursor, pattern, 1000, typ).Result()
			} else {
				keys, cursor, err = c.Scan(ctx, cursor, pattern, 1000).Result()
			}
			if err != nil {
				return nil, fmt.Errorf("scanning %s: %w", pattern, err)
			}
			out = append(out, keys...)
			if cursor == 0 {
				return out, nil
			}
		}
	}
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return scan(ctx, rdb)
	}
	var (
		all []string
		mu  sync.Mutex
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := scan(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return nil
	})
	return all, err
}

// DeleteKeys removes every key matching pattern (every master of a Redis
// Cluster), for tests, benchmarks and wiping a deployment's prefix, and
// returns how many it removed.
func DeleteKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) (int, error) {
	keys, err := ScanKeys(ctx, rdb, pattern, "")
	if err != nil {
		return 0, fmt.Errorf("listing keys to delete: %w", err)
	}
	// One UNLINK per key, pipelined: on a cluster the keys live in many
	// slots and the cluster client routes each command to its shard.
	deleted := 0
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		pipe := rdb.Pipeline()
		for _, k := range keys[:n] {
			pipe.Unlink(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return deleted, fmt.Errorf("deleting keys: %w", err)
		}
		deleted += n
		keys = keys[n:]
	}
	return deleted, nil
}
