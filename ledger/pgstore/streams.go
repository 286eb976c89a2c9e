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

// DefaultGroup is the consumer group of the write-behind on every journal
// stream. Rebuild and Audit use it too. The stream is trimmed below what this
// group has acknowledged, so it must be the only group on a journal stream.
const DefaultGroup = "writebehind"

func isBusyGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") }
func isNoGroup(err error) bool   { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }
func isNoSuchKey(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "no such key")
}

// createGroup creates group on stream at start ("0": from the beginning,
// "$": only what comes next), creating the stream if needed. An existing
// group is left as it is.
func createGroup(ctx context.Context, rdb redis.UniversalClient, stream, group, start string) error {
	err := rdb.XGroupCreateMkStream(ctx, stream, group, start).Err()
	if err != nil && !isBusyGroup(err) {
		return fmt.Errorf("creating consumer group on %s: %w", stream, err)
	}
	return nil
}

// partnerIDs returns the partner set, sorted.
func partnerIDs(ctx context.Context, rdb redis.UniversalClient, keys ledger.Keys) ([]string, error) {
	ids, err := rdb.SMembers(ctx, keys.Partners()).Result()
	if err != nil {
		return nil, fmt.Errorf("reading partner set: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// streamLag is what group has not acknowledged on one stream.
type streamLag struct {
	entries int64
	oldest  string // id of the oldest unacknowledged entry, "" if none
}

// lagOf measures, over the journal streams of the given partners, the
// entries group has not acknowledged (never delivered + pending) and the age
// of the oldest of them. Stream ids start with the Redis server's clock in
// milliseconds, so the age is measured against it (TIME), not ours.
func lagOf(ctx context.Context, rdb redis.UniversalClient, keys ledger.Keys, group string, partners []string) (int64, time.Duration, error) {
	if len(partners) == 0 {
		return 0, 0, nil
	}
	streams := make([]string, len(partners))
	for i, p := range partners {
		streams[i] = keys.Journal(p)
	}
	lags, err := lagOfStreams(ctx, rdb, group, streams)
	if err != nil {
		return 0, 0, err
	}
	var total int64
	oldest := ""
	for _, l := range lags {
		total += l.entries
		if l.oldest != "" && (oldest == "" || streamIDLess(l.oldest, oldest)) {
			oldest = l.oldest
		}
	}
	if oldest == "" {
		return total, 0, nil
	}
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		return total, 0, fmt.Errorf("reading redis time: %w", err)
	}
	ms, _, _ := parseStreamID(oldest)
	age := now.Sub(time.UnixMilli(int64(ms)))
	if age < 0 {
		age = 0
	}
	return total, age, nil
}

func lagOfStreams(ctx context.Context, rdb redis.UniversalClient, group string, streams []string) ([]streamLag, error) {
	pipe := rdb.Pipeline()
	infos := make([]*redis.XInfoGroupsCmd, len(streams))
	for i, s := range streams {
		infos[i] = pipe.XInfoGroups(ctx, s)
	}
	_, _ = pipe.Exec(ctx) // errors are per command, read below

	out := make([]streamLag, len(streams))
	// Second round: what XINFO GROUPS could not tell.
	type follow struct {
		i       int
		noGroup bool
		pending *redis.XPendingCmd
		first   *redis.XMessageSliceCmd
		length  *redis.IntCmd
	}
	var (
		follows []*follow
		unknown []int // streams whose group lag Redis cannot tell
		lastIDs = make([]string, len(streams))
	)
	pipe = rdb.Pipeline()
	for i, s := range streams {
		gs, err := infos[i].Result()
		if isNoSuchKey(err) {
			continue // no stream: nothing written yet
		}
		if err != nil {
			return nil, fmt.Errorf("reading groups of %s: %w", s, err)
		}
		var g *redis.XInfoGroup
		for k := range gs {
			if gs[k].Name == group {
				g = &gs[k]
			}
		}
		f := &follow{i: i}
		if g == nil {
			// No group yet: every entry is unread.
			f.noGroup = true
			f.length = pipe.XLen(ctx, s)
			f.first = pipe.XRangeN(ctx, s, "-", "+", 1)
			follows = append(follows, f)
			continue
		}
		lastIDs[i] = g.LastDeliveredID
		out[i].entries = g.Pending
		switch {
		case g.Lag > 0:
			out[i].entries += g.Lag
		case g.Lag < 0:
			unknown = append(unknown, i)
		}
		switch {
		case g.Pending > 0:
			f.pending = pipe.XPending(ctx, s, group)
		case g.Lag != 0:
			f.first = pipe.XRangeN(ctx, s, "("+g.LastDeliveredID, "+", 1)
		default:
			continue
		}
		follows = append(follows, f)
	}
	if len(follows) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("measuring journal lag: %w", err)
		}
	}
	for _, f := range follows {
		if f.noGroup {
			out[f.i].entries = f.length.Val()
		}
		if f.pending != nil {
			out[f.i].oldest = f.pending.Val().Lower
		} else if f.first != nil {
			if msgs := f.first.Val(); len(msgs) > 0 {
				out[f.i].oldest = msgs[0].ID
			}
		}
	}
	for _, i := range unknown {
		n, first, err := countAfter(ctx, rdb, streams[i], lastIDs[i])
		if err != nil {
			return nil, err
		}
		out[i].entries += n
		if out[i].oldest == "" {
			out[i].oldest = first
		}
	}
	return out, nil
}

// countAfter counts the entries of stream after id, for when Redis cannot
// tell a group's lag (entries were deleted mid-stream). Rare, so it pages.
func countAfter(ctx context.Context, rdb redis.UniversalClient, stream, id string) (int64, string, error) {
	var (
		n     int64
		first string
		start = "(" + id
	)
	for {
		msgs, err := rdb.XRangeN(ctx, stream, start, "+", 1000).Result()
		if err != nil {
			return 0, "", fmt.Errorf("counting entries of %s: %w", stream, err)
		}
		if len(msgs) == 0 {
			return n, first, nil
		}
		if first == "" {
			first = msgs[0].ID
		}
		n += int64(len(msgs))
		start = "(" + msgs[len(msgs)-1].ID
	}
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
