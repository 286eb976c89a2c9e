package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/antaca/antaca/ledger"
	"github.com/redis/go-redis/v9"
)

// partnerIDs returns the partner set, sorted.
func partnerIDs(ctx context.Context, rdb redis.UniversalClient, keys ledger.Keys) ([]string, error) {
	ids, err := rdb.SMembers(ctx, keys.Partners()).Result()
	if err != nil {
		return nil, fmt.Errorf("reading partner set: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// backlogOf measures, over the journal streams of the given partners, the
// entries not yet committed to Postgres (committed ones are deleted from
// the streams) and the age of the oldest of them. Stream ids start with the
// Redis server's clock in milliseconds, so the age is measured against it
// (TIME), not ours.
func backlogOf(ctx context.Context, rdb redis.UniversalClient, keys ledger.Keys, partners []string) (int64, time.Duration, error) {
	if len(partners) == 0 {
		return 0, 0, nil
	}
	pipe := rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(partners))
	firsts := make([]*redis.XMessageSliceCmd, len(partners))
	for i, p := range partners {
		lens[i] = pipe.XLen(ctx, keys.Journal(p))
		firsts[i] = pipe.XRangeN(ctx, keys.Journal(p), "-", "+", 1)
	}
	tm := pipe.Time(ctx)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, fmt.Errorf("measuring journal backlog: %w", err)
	}
	var (
		total  int64
		oldest string
	)
	for i := range partners {
		total += lens[i].Val()
		if msgs := firsts[i].Val(); len(msgs) > 0 && (oldest == "" || streamIDLess(msgs[0].ID, oldest)) {
			oldest = msgs[0].ID
		}
	}
	if oldest == "" {
		return total, 0, nil
	}
	ms, _, _ := parseStreamID(oldest)
	age := tm.Val().Sub(time.UnixMilli(int64(ms)))
	if age < 0 {
		age = 0
	}
	return total, age, nil
}

// streamBacklogs returns, per stream, how many entries it holds.
func streamBacklogs(ctx context.Context, rdb redis.UniversalClient, streams []string) ([]int64, error) {
	pipe := rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(streams))
	for i, s := range streams {
		lens[i] = pipe.XLen(ctx, s)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("measuring journal streams: %w", err)
	}
	out := make([]int64, len(streams))
	for i := range lens {
		out[i] = lens[i].Val()
	}
	return out, nil
}

// globEscape escapes the characters SCAN's MATCH treats as patterns.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
