package pgstore

import (
	"encoding/json"
	"maps"
	"reflect"
	"testing"
	"time"
)

// TestRecentJournalGivesWhatTheStoreGivesBack: an entry taken from the
// recent journal is the row the journal table gives back for it, on both
// stores, so events made of either are the same.
func TestRecentJournalGivesWhatTheStoreGivesBack(t *testing.T) {
	evs := historyEvents()
	pg, lite := bothStores(t, [][]Event{evs})
	for _, fx := range []*fixture{pg, lite} {
		t.Run(fx.db.Engine(), func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			rows, err := fx.db.Query(ctx, `SELECT partner_id, seq, type, reason, ts_ms, changes, meta FROM journal
				WHERE partner_id = 'p1' ORDER BY seq`)
			if err != nil {
				t.Fatal(err)
			}
			stored, err := collectEntries(rows)
			if err != nil {
				t.Fatal(err)
			}
			r := NewRecentJournal(1000)
			r.Follow([]string{"p1"})
			r.Add(evs)
			cached := r.after("p1", 0, 1000)
			if len(cached) != len(stored) || len(stored) == 0 {
				t.Fatalf("recent journal holds %d entries, the store %d", len(cached), len(stored))
			}
			for i := range stored {
				a, b := cached[i], stored[i]
				if a.Seq != b.Seq || a.Type != b.Type || a.Reason != b.Reason || a.TsMs != b.TsMs || !sameChanges(a.Changes, b.Changes) || !sameJSON(a.Meta, b.Meta) {
					t.Errorf("entry %d:\nrecent %+v\nstored %+v", b.Seq, a, b)
				}
			}
		})
	}
}

func sameChanges(a, b []RowChange) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Table != b[i].Table || a[i].ID != b[i].ID || a[i].V != b[i].V ||
			!maps.Equal(a[i].Set, b[i].Set) || !maps.Equal(a[i].Add, b[i].Add) {
			return false
		}
	}
	return true
}

func sameJSON(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// TestRecentJournalKeepsConsecutiveEntriesOfFollowedPartners: only the
// followed partners' entries are kept, in any arrival order; a taker gets
// consecutive entries after its cursor and nothing when the next one is
// missing; the oldest go when the room is full.
func TestRecentJournalKeepsConsecutiveEntriesOfFollowedPartners(t *testing.T) {
	ev := func(p string, seq int64) Event { return Event{PartnerID: p, Seq: seq, Type: "reserve"} }
	seqs := func(rs []JournalRow) (out []int64) {
		for _, r := range rs {
			out = append(out, r.Seq)
		}
		return out
	}
	r := NewRecentJournal(8)
	r.Add([]Event{ev("p1", 1)}) // nobody followed yet: dropped
	r.Follow([]string{"p1", "p2"})
	r.Add([]Event{ev("p1", 2), ev("p1", 4), ev("p1", 3), ev("p9", 1), ev("p2", 7)})
	r.Add([]Event{ev("p1", 6)})
	if got := r.after("p1", 1, 10); !reflect.DeepEqual(seqs(got), []int64{2, 3, 4}) {
		t.Fatalf("after 1: %v, want 2 3 4 (5 missing)", seqs(got))
	}
	if got := r.after("p1", 0, 10); got != nil {
		t.Fatalf("after 0: %v, want none (1 is not held)", seqs(got))
	}
	if got := r.after("p9", 0, 10); got != nil {
		t.Fatalf("an unfollowed partner: %v", seqs(got))
	}
	if got := r.after("p1", 3, 1); !reflect.DeepEqual(seqs(got), []int64{4}) {
		t.Fatalf("after 3, one: %v", seqs(got))
	}
	// Taking after 3 forgot 2 and 3; there is room for 4 a partner (8
	// shared by 2): of 4 ... 11 the oldest go.
	r.Add([]Event{ev("p1", 5)})
	for s := int64(7); s <= 11; s++ {
		r.Add([]Event{ev("p1", s)})
	}
	if got := r.after("p1", 4, 10); got != nil {
		t.Fatalf("after 4 once the oldest were dropped for room: %v", seqs(got))
	}
	if got := r.after("p1", 7, 10); !reflect.DeepEqual(seqs(got), []int64{8, 9, 10, 11}) {
		t.Fatalf("after 7: %v, want 8 to 11", seqs(got))
	}
	if got := r.after("p2", 6, 10); !reflect.DeepEqual(seqs(got), []int64{7}) {
		t.Fatalf("p2 after 6: %v", seqs(got))
	}
}
