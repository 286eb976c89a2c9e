package simulator

import (
	"cmp"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// progress reports the run on cfg.Progress until the returned function is
// called, which writes a last report and returns when the writing is done.
// On a terminal a bar redraws in place; anywhere else (a CI log, a file, a
// pipe) each report is one short line of its own, so no carriage return
// ever reaches a log.
func (lr *loadRun) progress() func() {
	w := lr.cfg.Progress
	switch {
	case w == nil:
		return func() {}
	case isTerminal(w):
		return lr.progressBar(w)
	}
	return lr.progressLines(w, cmp.Or(lr.cfg.ProgressInterval, 5*time.Second))
}

// isTerminal reports whether w is a file that is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressLines writes one line every interval and a last one when
// stopped.
func (lr *loadRun) progressLines(w io.Writer, every time.Duration) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintf(w, "load done %s\n", lr.status())
				return
			case <-t.C:
				fmt.Fprintf(w, "load %s\n", lr.status())
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// progressBar draws a bar of the run's length (time, or messages with
// --count alone) followed by the live counts.
func (lr *loadRun) progressBar(w io.Writer) func() {
	p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(24), mpb.WithRefreshRate(250*time.Millisecond))
	byTime := lr.cfg.Duration > 0
	total := int64(lr.cfg.Count)
	if byTime {
		total = lr.cfg.Duration.Milliseconds()
	}
	bar := p.New(max(total, 1), mpb.BarStyle(),
		mpb.PrependDecorators(decor.Name("load ")),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return lr.status() }, decor.WC{C: decor.DindentRight})))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				cur := lr.requests.Load()
				if byTime {
					cur = time.Since(lr.start).Milliseconds()
				}
				bar.SetCurrent(min(max(cur, 0), total-1)) // complete only when stopped
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		bar.SetTotal(-1, true) // complete where it is: the run may have been cut short
		p.Wait()
	}
}

// status is one short line of the run's counts so far.
func (lr *loadRun) status() string {
	el := max(time.Since(lr.start), 0)
	lr.mu.Lock()
	p99 := float64(lr.hist.ValueAtQuantile(99)) / 1000
	lr.mu.Unlock()
	total := ""
	if lr.cfg.Duration > 0 {
		total = "/" + lr.cfg.Duration.String()
	}
	rate := 0.0
	if el > 0 {
		rate = float64(lr.requests.Load()) / el.Seconds()
	}
	return fmt.Sprintf("%s%s: sent %d, answered %d, %.0f/s, p99 %.2fms, %d timeouts, %d errors, %d in flight",
		el.Round(100*time.Millisecond), total, lr.requests.Load(), lr.answers.Load(), rate, p99,
		lr.timeouts.Load(), lr.errs.Load(), lr.inFlight.Load())
}
