package iso

import (
	"sync"
	"time"
)

// admission sheds authorizations that cannot be answered in time. It
// estimates how long a new request would wait as the requests already in
// the decision stage times the recent service time (the time between two
// completions while the stage was busy: the inverse of the throughput the
// stores sustain now). When that estimate exceeds what is left of the
// request's deadline, the request is answered "issuer unavailable" at once,
// without touching the stores, so the work already admitted still finishes
// in time and the network stands in for the rest. When the load drops, the
// in-flight count drops with it and admission resumes at once.
//
// The service time is only sampled while more than one request is in the
// stage, so that a quiet link (one request a second) does not read as a
// slow store.
type admission struct {
	mu       sync.Mutex
	inflight int
	last     time.Time     // the last completion
	gap      time.Duration // EWMA of the busy gap between completions
	fresh    bool          // the next sample replaces gap (after idle)
}

// ewmaShift makes the weight of a new sample 1/16.
const ewmaShift = 4

// admit reports whether a request with budget left before its deadline
// should enter the decision stage; when it does, the caller must call done.
func (a *admission) admit(budget time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gap > 0 && time.Duration(a.inflight)*a.gap > budget {
		return false
	}
	a.inflight++
	return true
}

// done records a completion.
func (a *admission) done(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	busy := a.inflight > 1
	a.inflight--
	if !a.last.IsZero() && busy {
		sample := now.Sub(a.last)
		if a.gap == 0 || a.fresh {
			a.gap, a.fresh = sample, false
		} else {
			a.gap += (sample - a.gap) >> ewmaShift
		}
	}
	if a.inflight == 0 {
		// Idle: the gap since this completion says nothing about the
		// stores. The last estimate stands until the next busy period
		// gives a sample, which replaces it.
		a.last = time.Time{}
		a.fresh = true
		return
	}
	a.last = now
}
