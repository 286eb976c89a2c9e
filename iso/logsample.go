package iso

import (
	"sync/atomic"
	"time"
)

// logSampler lets one line of a per-request warning through per interval
// and counts the rest. When the engine's store is down every request
// times out; one line per second with a count says as much as a thousand,
// and the metrics carry the exact numbers.
type logSampler struct {
	interval   time.Duration
	next       atomic.Int64 // unix nanoseconds before which lines are suppressed
	suppressed atomic.Int64
}

func newLogSampler(interval time.Duration) *logSampler { return &logSampler{interval: interval} }

// allow reports whether a line may be logged now and, if so, how many were
// suppressed since the last one.
func (s *logSampler) allow(now time.Time) (bool, int64) {
	n := now.UnixNano()
	next := s.next.Load()
	if n < next || !s.next.CompareAndSwap(next, n+int64(s.interval)) {
		s.suppressed.Add(1)
		return false, 0
	}
	return true, s.suppressed.Swap(0)
}
