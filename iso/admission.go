package iso

import (
	"sync"
	"time"
)

// admission sheds authorizations that cannot be answered in time. It
// estimates how long a new request would wait as the requests in the
// decision stage (the queue depth, itself included) divided by the rate
// at which decisions recently completed (Little's law). The stores answer
// in batches (the journal's group commit: a decision's latency hardly
// depends on how many share its commit), so the completion rate, not the
// latency of one decision, tells how fast a queue drains. When the
// estimate exceeds the smaller of the queue target and what is left of
// the request's deadline, the request is answered "issuer unavailable" at
// once, without touching the stores, so the work already admitted still
// finishes in time and the network stands in for the rest. When the load
// drops, the depth drops with it and admission resumes at once; a burst
// that the stores clear in time is admitted whole.
//
// The estimate alone would refuse a burst that arrives after a quiet
// spell (the completion rate measured at a low load, applied to a high
// depth), so requests are only shed while the decisions actually are
// slow: the recent decision latency is above a quarter of the limit.
type admission struct {
	// target, when positive, caps the wait the estimate may predict.
	target time.Duration

	mu       sync.Mutex
	inflight int
	latency  time.Duration // EWMA of decision latency
	rate     float64       // EWMA of completions per second, per rateWindow
	window   time.Time     // start of the current rate window
	finished int           // completions in the current window
}

const (
	// ewmaShift makes the weight of a new latency sample 1/8.
	ewmaShift = 3
	// rateWindow is the span over which completions are counted for one
	// rate sample; rateWeight is that sample's weight.
	rateWindow = 20 * time.Millisecond
	rateWeight = 0.25
	idleWindow = time.Second
)

// ticket is an admitted request: when it entered.
type ticket struct {
	start time.Time
}

// admit reports whether a request with budget left before its deadline
// should enter the decision stage; when it does, the caller must call done
// with the ticket when the decision is made (even after the deadline: work
// the stores still do is load).
func (a *admission) admit(budget time.Duration) (ticket, bool) {
	if a.target > 0 {
		budget = min(budget, a.target)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	depth := a.inflight + 1
	// With nothing ahead a request is always admitted: it is the only way
	// the estimates learn that the stores are fast again (shed requests
	// give no sample), so an idle switch never keeps refusing.
	if depth > 1 && a.rate > 0 && a.latency > budget/4 &&
		time.Duration(float64(depth)/a.rate*float64(time.Second)) > budget {
		return ticket{}, false
	}
	a.inflight = depth
	return ticket{start: time.Now()}, true
}

// done records a completed decision.
func (a *admission) done(t ticket, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inflight--
	lat := now.Sub(t.start)
	if a.latency == 0 {
		a.latency = lat
	} else {
		a.latency += (lat - a.latency) >> ewmaShift
	}
	if a.window.IsZero() {
		a.window = now
	}
	a.finished++
	if span := now.Sub(a.window); span >= rateWindow {
		sample := float64(a.finished) / span.Seconds()
		switch {
		case span > idleWindow:
			// After an idle spell: says nothing of how fast a queue drains.
		case a.rate == 0:
			a.rate = sample
		default:
			a.rate += (sample - a.rate) * rateWeight
		}
		a.window, a.finished = now, 0
	}
}
