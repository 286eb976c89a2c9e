package bench

import (
	"fmt"

	"github.com/antaca/antaca/simulator"
)

// loadPlots are the closed loop's and the overload's latency and rate per
// second (the overload and the recovery after it on one time axis).
func (r *Result) loadPlots() []simulator.Plot {
	var out []simulator.Plot
	if c := r.ClosedLoop; c != nil && c.Report != nil {
		lat, rate := c.Report.LatencyPlot()
		lat.Title = fmt.Sprintf("Closed loop, %d in flight: latency per second", r.InFlight)
		rate.Title, rate.HLine = "Closed loop: messages per second", 0
		out = append(out, lat, rate)
	}
	if ov := r.Overload; ov != nil && ov.Overload.Report != nil && ov.Recovery.Report != nil {
		both := *ov.Overload.Report
		both.Timeline = append([]simulator.SecondStats(nil), ov.Overload.Report.Timeline...)
		offset := len(both.Timeline)
		for _, s := range ov.Recovery.Report.Timeline {
			s.Second += offset
			both.Timeline = append(both.Timeline, s)
		}
		lat, rate := both.LatencyPlot()
		lat.Title = fmt.Sprintf("Overload (%.0f/s, %.0f s) then %.0f/s: latency per second from scheduled send time",
			ov.Overload.Rate, ov.Overload.Report.WindowSeconds, ov.Recovery.Rate)
		rate.Title, rate.HLine, rate.HLineLabel = "Overload then recovery: messages per second", r.ClosedLoop.ApprovalRate, "closed-loop maximum"
		out = append(out, lat, rate)
	}
	return out
}
