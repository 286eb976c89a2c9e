package iso

import (
	"testing"
	"time"
)

// TestAdmissionEstimate: the wait is estimated as the requests ahead over
// the recent completion rate, capped by the queue target or the budget
// left, whichever is shorter, and nothing is shed while decisions are
// fast.
func TestAdmissionEstimate(t *testing.T) {
	a := &admission{target: 100 * time.Millisecond}
	// Completions at 1000/s, in 20 ms windows, each decision 50 ms.
	now := time.Now()
	for i := range 200 {
		at := now.Add(time.Duration(i) * time.Millisecond)
		a.inflight++
		a.done(ticket{start: at.Add(-50 * time.Millisecond)}, at)
	}
	if a.rate < 900 || a.rate > 1100 {
		t.Fatalf("rate = %.0f/s, want about 1000/s", a.rate)
	}
	cases := []struct {
		ahead  int
		budget time.Duration
		admit  bool
	}{
		{ahead: 90, budget: 300 * time.Millisecond, admit: true},   // ~91 ms, under the target
		{ahead: 150, budget: 300 * time.Millisecond, admit: false}, // ~151 ms, over the target
		{ahead: 70, budget: 60 * time.Millisecond, admit: false},   // ~71 ms, over what is left of the deadline
		{ahead: 0, budget: time.Millisecond, admit: true},          // nothing ahead: always
	}
	for _, c := range cases {
		a.inflight = c.ahead
		if _, ok := a.admit(c.budget); ok != c.admit {
			t.Errorf("%d ahead, %v left: admitted %v, want %v", c.ahead, c.budget, ok, c.admit)
		}
	}
	// Fast decisions (a burst after a quiet spell): admitted whatever the
	// estimate says.
	a.latency, a.inflight = 10*time.Millisecond, 500
	if _, ok := a.admit(300 * time.Millisecond); !ok {
		t.Error("a burst while decisions are fast was shed")
	}
	// An idle second says nothing of the drain rate.
	a.inflight = 1
	before := a.rate
	a.done(ticket{start: a.window.Add(2 * time.Second)}, a.window.Add(2*time.Second))
	if a.rate != before {
		t.Errorf("rate after an idle spell = %.0f/s, want %.0f/s kept", a.rate, before)
	}
}
