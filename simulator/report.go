package simulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// WriteText prints the report for a person.
func (r *Report) WriteText(w io.Writer) {
	label := r.Label
	if label == "" {
		label = "load"
	}
	fmt.Fprintf(w, "%s: profile %s, %d link(s), mix %s, timeout %.0fms\n", label, r.Profile, r.Links, r.Mix, r.TimeoutMS)
	dev := 0.0
	if r.RequestedRate > 0 {
		dev = 100 * (r.AchievedRate - r.RequestedRate) / r.RequestedRate
	}
	fmt.Fprintf(w, "  rate       requested %.1f/s  achieved %.1f/s (%+.2f%%)  answered %.1f/s  over %.2fs\n",
		r.RequestedRate, r.AchievedRate, dev, r.AnsweredRate, r.WindowSeconds)
	fmt.Fprintf(w, "  messages   %d = %d answered + %d timed out + %d errors\n", r.Requests, r.Answers, r.Timeouts, r.Errors)
	fmt.Fprintf(w, "  latency    p50 %.3fms  p90 %.3fms  p99 %.3fms  p99.9 %.3fms  max %.3fms  (from scheduled send time)\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999, r.Latency.Max)
	fmt.Fprintf(w, "  send lag   p50 %.3fms  p99 %.3fms  max %.3fms  (how late messages left against the schedule; included above)\n",
		r.ScheduleLag.P50, r.ScheduleLag.P99, r.ScheduleLag.Max)
	fmt.Fprintf(w, "  DE39       ")
	for i, c := range r.CodeNames() {
		if i > 0 {
			fmt.Fprint(w, "  ")
		}
		fmt.Fprintf(w, "%s:%d", c, r.Codes[c])
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  by kind   ")
	for _, k := range sortedKeys(r.ByKind) {
		s := r.ByKind[k]
		fmt.Fprintf(w, " %s %d/%d", k, s.Answers, s.Requests)
		if s.Timeouts+s.Errors > 0 {
			fmt.Fprintf(w, " (%d timeouts, %d errors)", s.Timeouts, s.Errors)
		}
	}
	fmt.Fprintln(w)
	if r.Reversals.Sent > 0 {
		fmt.Fprintf(w, "  reversals  %d sent for timeouts (%d attempts), %d accepted, %d unresolved\n",
			r.Reversals.Sent, r.Reversals.Attempts, r.Reversals.Accepted, r.Reversals.Unresolved)
	}
	for _, k := range sortedKeys(r.ErrorKind) {
		fmt.Fprintf(w, "  error      %s: %d\n", k, r.ErrorKind[k])
	}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'))
}

func writeFile(path string, b []byte) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(path, b, 0o644)
}

// LatencyPlot is the run over time, one point per second of scheduled
// sends (drawn at the middle of its second): latency (p50, p99 and max, on
// a log axis) and the rate (sent, answered, the target).
func (r *Report) LatencyPlot() (latency, rate Plot) {
	var p50, p99, mx, sent, ans [][2]float64
	for _, s := range r.Timeline {
		x := float64(s.Second) + 0.5
		if s.Answers > 0 {
			p50 = append(p50, [2]float64{x, s.P50})
			p99 = append(p99, [2]float64{x, s.P99})
			mx = append(mx, [2]float64{x, s.Max})
		}
		sent = append(sent, [2]float64{x, float64(s.Sent)})
		ans = append(ans, [2]float64{x, float64(s.Answers)})
	}
	end := float64(len(r.Timeline))
	latency = Plot{Title: "Latency from scheduled send time, per second", XLabel: "seconds since start", YLabel: "ms (log scale)",
		LogY: true, WholeX: true, XMin: 0, XMax: end,
		Series: []Series{
			{Name: "max", Color: "#7f7f7f", Points: mx, Dotted: true, Width: 1.2},
			{Name: "p99", Color: "#d62728", Points: p99},
			{Name: "p50", Color: "#1f77b4", Points: p50},
		}}
	// answered is a wide band under a dashed sent line: where they agree
	// (the usual case) both stay visible.
	rate = Plot{Title: "Messages per second", XLabel: "seconds since start", YLabel: "messages/s",
		WholeX: true, XMin: 0, XMax: end, HLine: r.TargetRate, HLineLabel: "target",
		Series: []Series{
			{Name: "answered", Color: "#ffbb78", Points: ans, Width: 5},
			{Name: "sent", Color: "#2ca02c", Points: sent, Dashed: true, Width: 1.5},
		}}
	return latency, rate
}

// WritePlot writes the run over time (LatencyPlot): an .svg or .png file
// holds the two charts, anything else is a self-contained HTML page with
// the summary and the charts as inline SVG.
func (r *Report) WritePlot(path string) error {
	lat, rate := r.LatencyPlot()
	fig := Figure{lat, rate}
	var b []byte
	var err error
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		b, err = fig.SVG()
	case ".png":
		b, err = fig.PNG()
	default:
		b, err = r.html(fig)
	}
	if err != nil {
		return err
	}
	return writeFile(path, b)
}

func (r *Report) html(fig Figure) ([]byte, error) {
	svg, err := fig.InlineSVG()
	if err != nil {
		return nil, err
	}
	var sum strings.Builder
	r.WriteText(&sum)
	var b bytes.Buffer
	b.WriteString("<!doctype html><html><head><meta charset=\"utf-8\"><title>Antaca load report</title></head><body style=\"font-family:sans-serif\">" +
		"<h1>Antaca load report</h1><pre>" + html.EscapeString(sum.String()) + "</pre>\n")
	b.Write(svg)
	b.WriteString("\n</body></html>\n")
	return b.Bytes(), nil
}
