package authz

import (
	"sort"
	"strings"
	"time"
)

// ReplayEvent is one journal entry of a program's past traffic, as the
// replay reads it: an authorization (approved or declined) or the release
// of a hold.
type ReplayEvent struct {
	Seq  int64
	At   time.Time
	Kind string // "approved", "declined" or "released"
	// Reason is the original decision's reason (declines).
	Reason Reason
	CardID string
	HoldID string
	// Amount: the approved amount (approved), the asked amount (declined)
	// or the amount given back (released).
	Amount int64
	// Req carries the facts the controls look at (MCC, DE22, DE43, DE19,
	// processing code); its amount is not used.
	Req Request
}

// ReplayCount is a number of transactions and their amount.
type ReplayCount struct {
	Count  int64 `json:"count"`
	Amount int64 `json:"amount"`
}

// ReplayTop is one line of a "top" list: a card id, an MCC or a country.
type ReplayTop struct {
	Key    string `json:"key"`
	Count  int64  `json:"count"`
	Amount int64  `json:"amount"`
}

// ReplayReport answers: what would these controls have declined that was
// approved, and what that was declined by controls would they approve?
type ReplayReport struct {
	Since     time.Time   `json:"since"`
	Until     time.Time   `json:"until"`
	Evaluated ReplayCount `json:"evaluated"`
	// NewlyDeclined were approved and the controls would decline them,
	// with the reasons they would give.
	NewlyDeclined ReplayCount            `json:"newlyDeclined"`
	ByReason      map[Reason]ReplayCount `json:"byReason"`
	// NewlyApproved were declined by the controls in force then
	// (CONTROL_* reasons) and these controls would let through (funds
	// permitting: the replay cannot know the balance).
	NewlyApproved ReplayCount `json:"newlyApproved"`
	TopCards      []ReplayTop `json:"topCards"`
	TopMCCs       []ReplayTop `json:"topMccs"`
	TopCountries  []ReplayTop `json:"topCountries"`
	// SkippedCards have controls of their own, which these program
	// controls would not replace: their traffic is not evaluated.
	SkippedCards int `json:"skippedCards"`
}

// IsControlReason reports whether a decline came from spend controls.
func IsControlReason(r Reason) bool { return strings.HasPrefix(string(r), "CONTROL_") }

// Replay runs controls over past traffic (events in journal order), with
// windows in loc as the reservation keeps them: approvals charge them,
// releases give back, declines charge nothing. The result is the same for
// the same inputs; top lists hold at most top entries.
func Replay(c Controls, loc *time.Location, events []ReplayEvent, top int) ReplayReport {
	rep := ReplayReport{ByReason: map[Reason]ReplayCount{}}
	type window struct{ amount, count int64 }
	windows := map[string]*window{}  // card|window id
	charged := map[string][]string{} // hold -> window keys it charged in the replay
	cards, mccs, countries := map[string]*ReplayTop{}, map[string]*ReplayTop{}, map[string]*ReplayTop{}
	affected := func(e ReplayEvent, f Facts) {
		for _, t := range []struct {
			m   map[string]*ReplayTop
			key string
		}{{cards, e.CardID}, {mccs, f.MCC}, {countries, f.Country}} {
			k := t.key
			if k == "" {
				k = "unknown"
			}
			x := t.m[k]
			if x == nil {
				x = &ReplayTop{Key: k}
				t.m[k] = x
			}
			x.Count++
			x.Amount += e.Amount
		}
	}
	for _, e := range events {
		if e.Kind == "released" {
			for _, k := range charged[e.HoldID] {
				if w := windows[k]; w != nil {
					w.amount = max(0, w.amount-e.Amount)
				}
			}
			continue
		}
		if e.Kind == "declined" && !IsControlReason(e.Reason) {
			continue // declined for what no control changes (funds, locks ...)
		}
		if rep.Since.IsZero() || e.At.Before(rep.Since) {
			rep.Since = e.At
		}
		if e.At.After(rep.Until) {
			rep.Until = e.At
		}
		rep.Evaluated.Count++
		rep.Evaluated.Amount += e.Amount
		f := FactsOf(&e.Req, e.Amount)
		reason := c.StaticReason(f)
		var keys []string
		if reason == "" {
			for _, l := range c.Limits {
				k := e.CardID + "|" + WindowOf(l.Interval, e.At, loc).ID
				w := windows[k]
				if w == nil {
					w = &window{}
					windows[k] = w
				}
				if l.Amount > 0 && w.amount+e.Amount > l.Amount {
					reason = ReasonControlAmountLimit
					break
				}
				if l.Count > 0 && w.count+1 > l.Count {
					reason = ReasonControlCountLimit
					break
				}
				keys = append(keys, k)
			}
		}
		if reason == "" {
			for _, k := range keys {
				windows[k].amount += e.Amount
				windows[k].count++
			}
			if e.HoldID != "" {
				charged[e.HoldID] = keys
			}
		}
		switch {
		case e.Kind == "approved" && reason != "":
			rep.NewlyDeclined.Count++
			rep.NewlyDeclined.Amount += e.Amount
			r := rep.ByReason[reason]
			r.Count++
			r.Amount += e.Amount
			rep.ByReason[reason] = r
			affected(e, f)
		case e.Kind == "declined" && reason == "":
			rep.NewlyApproved.Count++
			rep.NewlyApproved.Amount += e.Amount
			affected(e, f)
		}
	}
	rep.TopCards, rep.TopMCCs, rep.TopCountries = topOf(cards, top), topOf(mccs, top), topOf(countries, top)
	return rep
}

func topOf(m map[string]*ReplayTop, n int) []ReplayTop {
	out := make([]ReplayTop, 0, len(m))
	for _, v := range m {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		if out[i].Amount != out[j].Amount {
			return out[i].Amount > out[j].Amount
		}
		return out[i].Key < out[j].Key
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
