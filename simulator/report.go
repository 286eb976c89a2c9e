package simulator

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
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

// Series is one line of a plot.
type Series struct {
	Name   string
	Color  string
	Points [][2]float64 // x, y
	Dashed bool
}

// Plot is a line chart rendered as self-contained SVG.
type Plot struct {
	Title, XLabel, YLabel string
	Series                []Series
	// LogY draws the y axis logarithmically (latencies).
	LogY bool
	// HLine draws a horizontal reference line at this y (0: none).
	HLine      float64
	HLineLabel string
}

// SVG renders the plot.
func (p Plot) SVG(width, height int) string {
	const ml, mr, mt, mb = 70, 160, 40, 50
	pw, ph := float64(width-ml-mr), float64(height-mt-mb)
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for _, pt := range s.Points {
			if p.LogY && pt[1] <= 0 {
				continue
			}
			xmin, xmax = math.Min(xmin, pt[0]), math.Max(xmax, pt[0])
			ymin, ymax = math.Min(ymin, pt[1]), math.Max(ymax, pt[1])
		}
	}
	if p.HLine > 0 {
		ymin, ymax = math.Min(ymin, p.HLine), math.Max(ymax, p.HLine)
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax, ymin, ymax = 0, 1, 0, 1
	}
	if xmax == xmin {
		xmax = xmin + 1
	}
	ty := func(v float64) float64 { return v }
	if p.LogY {
		ymin = math.Pow(10, math.Floor(math.Log10(ymin)))
		ymax = math.Pow(10, math.Ceil(math.Log10(ymax)))
		ty = math.Log10
	} else {
		ymin = 0
		ymax = niceCeil(ymax)
	}
	if ty(ymax) == ty(ymin) {
		ymax = ymin*10 + 1
	}
	X := func(x float64) float64 { return ml + (x-xmin)/(xmax-xmin)*pw }
	Y := func(y float64) float64 { return mt + ph - (ty(y)-ty(ymin))/(ty(ymax)-ty(ymin))*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`, width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`, ml, html.EscapeString(p.Title))
	// y grid and labels
	var yticks []float64
	if p.LogY {
		for v := ymin; v <= ymax*1.0001; v *= 10 {
			yticks = append(yticks, v)
		}
	} else {
		for i := 0; i <= 5; i++ {
			yticks = append(yticks, ymin+(ymax-ymin)*float64(i)/5)
		}
	}
	for _, v := range yticks {
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, ml, ml+pw, Y(v), Y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, ml-6, Y(v)+4, fmtTick(v))
	}
	for i := 0; i <= 6; i++ {
		v := xmin + (xmax-xmin)*float64(i)/6
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#eee"/>`, X(v), X(v), mt, mt+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, X(v), mt+ph+16, fmtTick(v))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#444"/>`, ml, mt, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, ml+pw/2, height-12, html.EscapeString(p.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`, mt+ph/2, html.EscapeString(p.YLabel))
	if p.HLine > 0 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="6 4"/>`, ml, ml+pw, Y(p.HLine), Y(p.HLine))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#c00">%s</text>`, ml+pw+6, Y(p.HLine)+4, html.EscapeString(p.HLineLabel))
	}
	for i, s := range p.Series {
		var pts []string
		for _, pt := range s.Points {
			if p.LogY && pt[1] <= 0 {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", X(pt[0]), Y(pt[1])))
		}
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="4 3"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8"%s points="%s"/>`, s.Color, dash, strings.Join(pts, " "))
		ly := mt + 14 + 18*i
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s" stroke-width="3"%s/>`, ml+pw+10, ml+pw+30, ly, ly, s.Color, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`, ml+pw+36, ly+4, html.EscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

func fmtTick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 1:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

// LatencyPlot is the latency over time of a load run: p50, p99 and max of
// each second (by scheduled time) and the answered rate.
func (r *Report) LatencyPlot() (latency, rate Plot) {
	var p50, p99, mx, sent, ans []([2]float64)
	for _, s := range r.Timeline {
		x := float64(s.Second)
		if s.Answers > 0 {
			p50 = append(p50, [2]float64{x, s.P50})
			p99 = append(p99, [2]float64{x, s.P99})
			mx = append(mx, [2]float64{x, s.Max})
		}
		sent = append(sent, [2]float64{x, float64(s.Sent)})
		ans = append(ans, [2]float64{x, float64(s.Answers)})
	}
	latency = Plot{Title: "Latency from scheduled send time, per second", XLabel: "seconds since start", YLabel: "ms (log)", LogY: true,
		Series: []Series{{Name: "max", Color: "#999", Points: mx, Dashed: true}, {Name: "p99", Color: "#d62728", Points: p99}, {Name: "p50", Color: "#1f77b4", Points: p50}}}
	rate = Plot{Title: "Messages per second", XLabel: "seconds since start", YLabel: "messages/s",
		Series: []Series{{Name: "sent", Color: "#2ca02c", Points: sent}, {Name: "answered", Color: "#ff7f0e", Points: ans, Dashed: true}},
		HLine:  r.TargetRate, HLineLabel: "target"}
	return latency, rate
}

// WritePlot writes the latency-over-time plot: an .svg file holds the
// latency chart alone, anything else a self-contained HTML page with both
// charts and the summary.
func (r *Report) WritePlot(path string) error {
	lat, rate := r.LatencyPlot()
	if strings.EqualFold(filepath.Ext(path), ".svg") {
		return writeFile(path, []byte(lat.SVG(900, 420)))
	}
	var sum strings.Builder
	r.WriteText(&sum)
	page := "<!doctype html><html><head><meta charset=\"utf-8\"><title>Antaca load report</title></head><body style=\"font-family:sans-serif\">" +
		"<h1>Antaca load report</h1><pre>" + html.EscapeString(sum.String()) + "</pre>" +
		lat.SVG(960, 420) + "<br>" + rate.SVG(960, 320) + "</body></html>\n"
	return writeFile(path, []byte(page))
}
