package simulator

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a strings.Builder safe for the progress goroutine and
// the test together.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProgressNotATerminal: when the progress writer is no terminal (a CI
// log), the run is reported as short lines of their own, periodically and
// once more at the end, never as one carriage-return line.
func TestProgressNotATerminal(t *testing.T) {
	var out lockedBuffer
	lr := &loadRun{cfg: LoadConfig{Progress: &out, ProgressInterval: 10 * time.Millisecond, Duration: 10 * time.Second},
		hist: newHist(), start: time.Now()}
	lr.requests.Store(1234)
	lr.answers.Store(1200)
	lr.timeouts.Store(3)
	_ = lr.hist.RecordValue(2500) // µs
	stop := lr.progress()
	for deadline := time.Now().Add(30 * time.Second); strings.Count(out.String(), "\n") < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("no periodic progress line: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()

	got := out.String()
	if strings.Contains(got, "\r") || !strings.HasSuffix(got, "\n") {
		t.Fatalf("progress is not plain lines: %q", got)
	}
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	for _, l := range lines {
		if len(l) > 120 || !strings.HasPrefix(l, "load ") || !strings.Contains(l, "sent 1234, answered 1200") || !strings.Contains(l, "3 timeouts") {
			t.Errorf("progress line %q: want one short line (<= 120 characters) with the counts", l)
		}
		if !strings.Contains(l, "/10s: ") || !strings.Contains(l, "p99 2.50ms") {
			t.Errorf("progress line %q lacks the run length or p99", l)
		}
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "load done ") {
		t.Errorf("last progress line %q does not say the run is done", last)
	}
}
