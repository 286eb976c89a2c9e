package iso

import (
	"sync"
	"time"
)

// admission sheds authorizations that cannot be answered in time. It
// estimates how long a new request would take as the requests in the
// decision stage (the queue depth, itself included) times the recent
// service time per request: the latency of a recent decision divided by
// the depth it found when it entered. When the estimate exceeds what is
// left of the request's deadline, the request is answered "issuer
// unavailable" at once, without touching the stores, so the work already
// admitted still finishes in time and the network stands in for the rest.
// When the load drops, the depth drops with it and admission resumes at
// once; a burst that the stores clear in time is admitted whole.
//
// The estimate alone would refuse a burst on a server that decides many
// requests in parallel (the service time per queued request measured at a
// low depth, applied to a high one), so requests are only shed while the
// decisions actually are slow: the recent decision latency is above a
// quarter of the budget.
type admission struct {
	mu       sync.Mutex
	inflight int
	perItem  time.Duration // EWMA of latency / depth at entry
	latency  time.Duration // EWMA of decision latency
}

// ewmaShift makes the weight of a new sample 1/8.
const ewmaShift = 3

// ticket is an admitted request: when it entered and the depth it found.
type ticket struct {
	start time.Time
	depth int
}

// admit reports whether a request with budget left before its deadline
// should enter the decision stage; when it does, the caller must call done
// with the ticket when the decision is made (even after the deadline: work
// the stores still do is load).
func (a *admission) admit(budget time.Duration) (ticket, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	depth := a.inflight + 1
	// With nothing ahead a request is always admitted: it is the only way
	// the estimates learn that the stores are fast again (shed requests
	// give no sample), so an idle switch never keeps refusing.
	if depth > 1 && a.perItem > 0 && time.Duration(depth)*a.perItem > budget && a.latency > budget/4 {
		return ticket{}, false
	}
	a.inflight = depth
	return ticket{start: time.Now(), depth: depth}, true
}

// done records a completed decision.
func (a *admission) done(t ticket, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inflight--
	lat := now.Sub(t.start)
	sample := lat / time.Duration(max(t.depth, 1))
	if a.perItem == 0 {
		a.perItem, a.latency = sample, lat
		return
	}
	a.perItem += (sample - a.perItem) >> ewmaShift
	a.latency += (lat - a.latency) >> ewmaShift
}
