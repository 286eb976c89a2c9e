package ledgertest

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// MustEmbeddedRedis starts an in-process Redis (miniredis, the store of
// `antaca demo`) for the test and returns a client, a key prefix and the
// server. Both stop when the test ends.
func MustEmbeddedRedis(tb testing.TB) (*redis.Client, string, *miniredis.Miniredis) {
	tb.Helper()
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		tb.Fatalf("starting miniredis: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), PoolSize: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		m.Close()
		tb.Fatalf("miniredis unreachable at %s: %v", m.Addr(), err)
	}
	tb.Cleanup(func() {
		_ = rdb.Close()
		m.Close()
	})
	return rdb, UniqueName("t"), m
}
