package pgstore

import (
	"encoding/json"
	"strconv"
	"sync"
)

// RecentJournal keeps the journal entries this process's write-behind has
// just committed, so that the webhook dispatcher can make events of them
// without reading back from the store what it was just sent (Options.
// Committed feeds it; AdvanceOptions.Recent reads it). It is only a
// shortcut: an entry it does not hold (committed by another switch, or
// before this process started, or dropped for room) is read from the
// store as before, and only entries already durable are ever added.
type RecentJournal struct {
	total int

	mu       sync.Mutex
	partners map[string]*recentPartner // the followed ones
	max      int                       // per partner: total shared among them
}

type recentPartner struct {
	bySeq map[int64]Event
	low   int64 // no entry below this is held
}

// NewRecentJournal keeps at most total entries, shared among the partners
// it follows (the newest of each).
func NewRecentJournal(total int) *RecentJournal {
	return &RecentJournal{total: total, partners: map[string]*recentPartner{}}
}

// Follow sets the partners whose entries are kept (those the dispatcher
// makes events of); the others' are dropped.
func (r *RecentJournal) Follow(partnerIDs []string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := make(map[string]*recentPartner, len(partnerIDs))
	for _, id := range partnerIDs {
		p := r.partners[id]
		if p == nil {
			p = &recentPartner{bySeq: map[int64]Event{}, low: -1}
		}
		keep[id] = p
	}
	r.partners = keep
	r.max = r.total / max(len(keep), 1)
}

// Add remembers committed entries of the followed partners; they may
// come in any order.
func (r *RecentJournal) Add(evs []Event) {
	if r == nil || len(evs) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range evs {
		p := r.partners[e.PartnerID]
		if p == nil {
			continue
		}
		if p.low < 0 {
			p.low = e.Seq
		}
		if e.Seq < p.low {
			continue // already passed, or dropped for room
		}
		p.bySeq[e.Seq] = e
		// Over the limit: the oldest go (the dispatcher is far behind and
		// reads those from the store).
		for len(p.bySeq) > r.max {
			delete(p.bySeq, p.low)
			p.low++
		}
	}
}

// after returns up to n entries of the partner with consecutive sequence
// numbers from cursor+1, and forgets those up to cursor; none when it
// does not hold cursor+1.
func (r *RecentJournal) after(partnerID string, cursor int64, n int) []JournalRow {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.partners[partnerID]
	if p == nil {
		return nil
	}
	if p.low < 0 {
		return nil
	}
	if cursor >= p.low {
		if cursor-p.low > int64(len(p.bySeq)) {
			for seq := range p.bySeq {
				if seq <= cursor {
					delete(p.bySeq, seq)
				}
			}
		} else {
			for seq := p.low; seq <= cursor; seq++ {
				delete(p.bySeq, seq)
			}
		}
		p.low = cursor + 1
	}
	var out []JournalRow
	for seq := cursor + 1; len(out) < n; seq++ {
		e, ok := p.bySeq[seq]
		if !ok {
			break
		}
		out = append(out, rowOf(e))
	}
	return out
}

// rowOf is a committed event as the journal table gives it back.
func rowOf(e Event) JournalRow {
	j := JournalRow{PartnerID: e.PartnerID, Seq: e.Seq, Type: e.Type, Reason: e.Reason, TsMs: e.TsMs,
		Changes: make([]RowChange, 0, len(e.Changes))}
	if m := encodeMeta(e.Meta); m != "" {
		j.Meta = json.RawMessage(m)
	}
	for _, c := range e.Changes {
		rc := RowChange{Table: c.Table, ID: c.ID, V: strconv.FormatInt(c.V, 10), Set: c.Set}
		if len(c.Add) > 0 {
			rc.Add = make(map[string]string, len(c.Add))
			for k, v := range c.Add {
				rc.Add[k] = strconv.FormatInt(v, 10)
			}
		}
		j.Changes = append(j.Changes, rc)
	}
	return j
}
