package bench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/antaca/antaca/simulator"
)

// measure runs one open-model step at rate and judges it: p99 within the
// objective, the rate achieved within 2%, and at most 0.1% of messages
// timed out or failed.
func measure(ctx context.Context, o Options, n *simulator.Network, cards *simulator.CardsFile, rate float64, d time.Duration) (Step, *simulator.Report, error) {
	rep, err := simulator.RunLoad(ctx, n, simulator.LoadConfig{
		Rate: rate, Duration: d, Timeout: time.Second, Cards: cards.Cards, UnknownBIN: cards.Partners[0].BIN,
		Mix: simulator.DefaultMix, Label: fmt.Sprintf("step %.0f/s", rate),
	})
	if err != nil {
		return Step{}, nil, err
	}
	st := Step{Rate: rate, Achieved: rep.AchievedRate, P50: rep.Latency.P50, P99: rep.Latency.P99, P999: rep.Latency.P999,
		Max: rep.Latency.Max, Timeouts: rep.Timeouts, Errors: rep.Errors, Pass: true}
	target := float64(o.TargetP99) / float64(time.Millisecond)
	switch {
	case rep.Latency.P99 > target:
		st.Pass, st.Why = false, fmt.Sprintf("p99 %.2fms > %.2fms", rep.Latency.P99, target)
	case rep.AchievedRate < 0.98*rep.RequestedRate:
		st.Pass, st.Why = false, fmt.Sprintf("achieved %.0f/s < 98%% of %.0f/s", rep.AchievedRate, rep.RequestedRate)
	case float64(rep.Timeouts+rep.Errors) > 0.001*float64(rep.Requests):
		st.Pass, st.Why = false, fmt.Sprintf("%d timeouts, %d errors", rep.Timeouts, rep.Errors)
	}
	return st, rep, nil
}

// searchRate finds the highest rate meeting the objective: it doubles the
// rate from StartRate until a step fails (halving instead when the first
// fails), then bisects between the last passing and the first failing rate
// until they are within 8% or the budget is spent.
func searchRate(ctx context.Context, o Options, sw *switchUnderTest, cards *simulator.CardsFile, res *Result) error {
	n, err := simulator.Connect(ctx, simulator.NetworkConfig{Addr: sw.app.ISOAddr(), Links: o.Links})
	if err != nil {
		return err
	}
	defer n.Close()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = n.WaitUp(wctx, o.Links)
	cancel()

	// Warm up: connections, scripts, the Go runtime's pools.
	if _, _, err := measure(ctx, o, n, cards, o.StartRate/2, 2*time.Second); err != nil {
		return err
	}
	deadline := time.Now().Add(o.Budget)
	lo, hi := 0.0, 0.0
	rate := o.StartRate
	step := func() (Step, *simulator.Report, error) {
		st, rep, err := measure(ctx, o, n, cards, rate, o.Step)
		if err != nil {
			return st, rep, err
		}
		res.Switch.Steps = append(res.Switch.Steps, st)
		verdict := "pass"
		if !st.Pass {
			verdict = "FAIL: " + st.Why
		}
		o.Progress("step %6.0f/s: achieved %6.0f/s  p50 %.2fms  p99 %.2fms  p99.9 %.2fms  max %.2fms  timeouts %d  %s",
			st.Rate, st.Achieved, st.P50, st.P99, st.P999, st.Max, st.Timeouts, verdict)
		return st, rep, nil
	}
	for ctx.Err() == nil && time.Now().Add(o.Step).Before(deadline) {
		st, rep, err := step()
		if err != nil {
			return err
		}
		// One noisy second on a shared machine must not set the ceiling:
		// a failed step is measured once more, and only a second failure
		// bounds the search.
		if !st.Pass && time.Now().Add(time.Second+o.Step).Before(deadline) {
			time.Sleep(time.Second)
			if st, rep, err = step(); err != nil {
				return err
			}
		}
		if st.Pass {
			if rate > lo {
				lo = rate
				res.Switch.SustainedRate, res.Switch.Best = rate, rep
			}
		} else if hi == 0 || rate < hi {
			hi = rate
		}
		switch {
		case hi == 0:
			rate *= 2
		case lo == 0:
			rate /= 2
		default:
			rate = math.Round((lo + hi) / 2)
		}
		if rate > o.MaxRate || rate < 10 || (lo > 0 && hi > 0 && hi/lo < 1.08) {
			break
		}
		// Let the write-behind catch up so steps do not inherit each
		// other's backlog.
		time.Sleep(time.Second)
	}
	if res.Switch.SustainedRate == 0 {
		o.Progress("no step met the objective")
	}
	return nil
}
