package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// JournalEntry is one journal entry exactly as a script appended it to its
// partner's stream (docs/ledger.md, "Journal"). Every script returns the
// entries it appended with its result, so the caller can make them durable
// without reading the stream back.
type JournalEntry struct {
	PartnerID string
	StreamID  string // the XADD id
	Seq       int64
	Type      string
	Reason    string
	Ts        string // milliseconds, as written
	Ch        string // the changes, JSON
	Meta      string
}

// Fields returns the entry as the stream holds it (field -> value).
func (e JournalEntry) Fields() map[string]any {
	return map[string]any{
		"seq": strconv.FormatInt(e.Seq, 10), "type": e.Type, "reason": e.Reason,
		"ts": e.Ts, "ch": e.Ch, "meta": e.Meta,
	}
}

// Journal makes journal entries durable (pgstore.WriteBehind commits them to
// Postgres in groups).
type Journal interface {
	// Commit queues entries, in order, for the durable store. With wait it
	// returns once they, and everything queued before them, are committed;
	// when ctx ends first it returns an error wrapping ErrNotDurable and
	// the entries stay queued. Commit(ctx, nil, true) is a barrier: it
	// returns once everything queued before the call is committed.
	Commit(ctx context.Context, entries []JournalEntry, wait bool) error
}

// ErrNotDurable reports that a change was made in Redis but its journal
// entry was not committed in time: the caller must not report success. The
// entry is not lost: it stays queued, and in the stream for recovery.
var ErrNotDurable = errors.New("journal entry not durable in time")

// AnswerAfter says when the ledger lets a caller answer a change.
type AnswerAfter string

const (
	// AnswerAfterPostgres (the default) waits until the change's journal
	// entry is committed in Postgres.
	AnswerAfterPostgres AnswerAfter = "postgres"
	// AnswerAfterRedis answers as soon as the script ran in Redis; the
	// entry reaches Postgres moments later. Only for Redis run with AOF
	// and replicas: a Redis that loses its state loses these entries.
	AnswerAfterRedis AnswerAfter = "redis"
)

// ParseAnswerAfter checks a configured mode.
func ParseAnswerAfter(s string) (AnswerAfter, error) {
	switch AnswerAfter(s) {
	case AnswerAfterPostgres, AnswerAfterRedis:
		return AnswerAfter(s), nil
	case "":
		return AnswerAfterPostgres, nil
	}
	return "", fmt.Errorf("answer-after %q: want %q or %q", s, AnswerAfterPostgres, AnswerAfterRedis)
}

// scriptEpilogue wraps each script's result with the journal entries it
// appended: {result, n, id1, seq1, type1, reason1, ts1, ch1, meta1, ...}.
// An error reply passes through unchanged (scripts validate before they
// write, so an error means nothing was appended).
const scriptEpilogue = `
if type(__result) == 'table' and __result.err then return __result end
local __out = { __result == nil and false or __result, #__journal }
for _, e in ipairs(__journal) do
  for i = 1, 7 do __out[#__out + 1] = e[i] end
end
return __out
`

// unwrapReply splits a wrapped script reply into the script's own result
// and its journal entries.
func unwrapReply(partnerID string, v any) (any, []JournalEntry, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) < 2 {
		return nil, nil, fmt.Errorf("script reply %T is not a wrapped result", v)
	}
	n, ok := arr[1].(int64)
	if !ok || n < 0 || len(arr) != 2+7*int(n) {
		return nil, nil, fmt.Errorf("script reply holds a malformed journal (%d values)", len(arr))
	}
	var entries []JournalEntry
	if n > 0 {
		entries = make([]JournalEntry, n)
		for i := range entries {
			f := arr[2+7*i : 9+7*i]
			e := JournalEntry{PartnerID: partnerID}
			e.StreamID, _ = f[0].(string)
			switch s := f[1].(type) {
			case int64:
				e.Seq = s
			case string:
				e.Seq, _ = strconv.ParseInt(s, 10, 64)
			}
			e.Type, _ = f[2].(string)
			e.Reason, _ = f[3].(string)
			e.Ts, _ = f[4].(string)
			e.Ch, _ = f[5].(string)
			e.Meta, _ = f[6].(string)
			if e.StreamID == "" || e.Seq < 1 || e.Type == "" {
				return nil, nil, fmt.Errorf("script reply holds a malformed journal entry %d", i)
			}
			entries[i] = e
		}
	}
	return arr[0], entries, nil
}

// waitMode says whether a script call waits for its entries to be durable.
type waitMode int

const (
	waitDurable waitMode = iota // wait (in AnswerAfterPostgres mode)
	noWait                      // queue only: compensations, whose caller answers nothing new
	readOnly                    // the script writes nothing journaled: no barrier
)

// runWith runs a script and hands its journal entries to the Journal. When
// the script appended nothing but may have answered from an earlier change
// (an idempotent repeat), a barrier makes sure that change is durable too.
func (l *Ledger) runWith(ctx context.Context, mode waitMode, name, partnerID string, args ...any) *redis.Cmd {
	argv := make([]any, 0, len(args)+2)
	argv = append(argv, partnerID, l.now().UnixMilli())
	argv = append(argv, args...)
	raw := l.scripts[name].Run(ctx, l.exec, []string{l.keys.Tag(partnerID)}, argv...)
	out := redis.NewCmd(ctx)
	v, err := raw.Result()
	if err != nil {
		out.SetErr(err)
		return out
	}
	res, entries, err := unwrapReply(partnerID, v)
	if err != nil {
		out.SetErr(fmt.Errorf("%s: %w", name, err))
		return out
	}
	if res == nil {
		out.SetErr(redis.Nil)
	} else {
		out.SetVal(res)
	}
	if l.journal == nil || mode == readOnly && len(entries) == 0 {
		return out
	}
	wait := mode == waitDurable && l.answerAfter == AnswerAfterPostgres && !onlyDeclines(entries)
	if len(entries) == 0 && !wait {
		return out
	}
	if jerr := l.journal.Commit(ctx, entries, wait); jerr != nil {
		if !errors.Is(jerr, ErrNotDurable) {
			jerr = fmt.Errorf("%w: %w", ErrNotDurable, jerr)
		}
		out.SetErr(fmt.Errorf("%s: %w", name, jerr))
	}
	return out
}

// onlyDeclines reports entries that record declines only: a decline moved
// no money, so its answer need not wait (the entry follows in the next
// group commit).
func onlyDeclines(entries []JournalEntry) bool {
	for _, e := range entries {
		if e.Type != "decline" {
			return false
		}
	}
	return len(entries) > 0
}

// SetJournal connects the ledger to the store that makes its journal
// durable, and says when callers may answer. Without a journal (tests of
// the scripts alone) the streams are the only record.
func (l *Ledger) SetJournal(j Journal, mode AnswerAfter) {
	l.journal = j
	l.answerAfter = mode
}

// AnswerAfterMode returns the mode in force.
func (l *Ledger) AnswerAfterMode() AnswerAfter {
	if l.answerAfter == "" {
		return AnswerAfterPostgres
	}
	return l.answerAfter
}
