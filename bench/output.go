package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/antaca/antaca/simulator"
)

// WriteTable prints the three figures and their ratios.
func (r *Result) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s := r.Switch.SustainedRate
	ratio := func(v float64) string {
		if s == 0 || v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", v/s)
	}
	fmt.Fprintf(tw, "measure\trate/s\tvs switch\tnote\t\n")
	note := fmt.Sprintf("p99 <= %.1f ms over loopback ISO, %d steps", r.TargetP99, len(r.Switch.Steps))
	if b := r.Switch.Best; b != nil {
		note = fmt.Sprintf("p50 %.2f / p99 %.2f / max %.2f ms at that rate", b.Latency.P50, b.Latency.P99, b.Latency.Max)
	}
	fmt.Fprintf(tw, "switch end to end (sim load -> ISO -> engine -> Redis)\t%.0f\t1.00x\t%s\t\n", s, note)
	if r.Redis != nil {
		fmt.Fprintf(tw, "Redis alone: reserve script (redis-benchmark EVALSHA)\t%.0f\t%s\t%s\t\n", r.Redis.Rate, ratio(r.Redis.Rate), "one Redis core's ceiling")
	}
	if r.Postgres != nil {
		fmt.Fprintf(tw, "Postgres alone: row-lock reservation (pgbench)\t%.0f\t%s\t%s\t\n", r.Postgres.Rate, ratio(r.Postgres.Rate), r.Postgres.Detail)
	}
	_ = tw.Flush()
	if v, ok := r.Ratios["redis_over_postgres"]; ok {
		fmt.Fprintf(w, "Redis reserve script / Postgres row lock: %.1fx\n", v)
	}
	fmt.Fprintf(w, "host: %d CPUs, %s, Redis %s, Postgres %s; switch, load generator and stores share the machine\n",
		r.Host.CPUs, r.Host.GoVersion, r.Host.Redis, r.Host.Postgres)
}

// Save writes bench.json and bench.html (the plot) to dir and returns their paths.
func (r *Result) Save(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	jsonPath := filepath.Join(dir, "bench.json")
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	page, err := r.html()
	if err != nil {
		return nil, err
	}
	htmlPath := filepath.Join(dir, "bench.html")
	if err := os.WriteFile(htmlPath, []byte(page), 0o644); err != nil {
		return nil, err
	}
	return []string{jsonPath, htmlPath}, nil
}

// stepsPlot is p50 / p99 / max against the requested rate of every step,
// as dots: a rate measured twice (a failed step is repeated) has two.
func (r *Result) stepsPlot() simulator.Plot {
	steps := slices.Clone(r.Switch.Steps)
	slices.SortFunc(steps, func(a, b Step) int { return cmp.Compare(a.Rate, b.Rate) })
	var p50, p99, mx [][2]float64
	for _, s := range steps {
		p50 = append(p50, [2]float64{s.Rate, s.P50})
		p99 = append(p99, [2]float64{s.Rate, s.P99})
		mx = append(mx, [2]float64{s.Rate, s.Max})
	}
	return simulator.Plot{Title: "Latency against offered rate (each step)", XLabel: "requested rate, messages/s", YLabel: "ms (log scale)",
		LogY: true, WholeX: true,
		Series: []simulator.Series{
			{Name: "max", Color: "#7f7f7f", Points: mx, Marks: true, NoLine: true},
			{Name: "p99", Color: "#d62728", Points: p99, Marks: true, NoLine: true},
			{Name: "p50", Color: "#1f77b4", Points: p50, Marks: true, NoLine: true},
		},
		HLine: r.TargetP99, HLineLabel: "p99 objective"}
}

// figures are the page's charts: latency against rate for every step,
// then latency and rate over time of the sustained step.
func (r *Result) figures() []simulator.Figure {
	figs := []simulator.Figure{{r.stepsPlot()}}
	if best := r.Switch.Best; best != nil {
		lat, rate := best.LatencyPlot()
		lat.Title = fmt.Sprintf("Sustained step (%.0f/s): latency from scheduled send time", r.Switch.SustainedRate)
		figs = append(figs, simulator.Figure{lat, rate})
	}
	return figs
}

func (r *Result) html() (string, error) {
	var table strings.Builder
	r.WriteTable(&table)
	var b strings.Builder
	b.WriteString("<!doctype html><html><head><meta charset=\"utf-8\"><title>Antaca benchmark</title></head><body style=\"font-family:sans-serif\">")
	b.WriteString("<h1>Antaca end-to-end benchmark</h1><pre>" + html.EscapeString(table.String()) + "</pre>\n")
	for _, fig := range r.figures() {
		svg, err := fig.InlineSVG()
		if err != nil {
			return "", err
		}
		b.Write(svg)
		b.WriteString("<br>\n")
	}
	b.WriteString("<h2>Steps</h2><pre>")
	for _, s := range r.Switch.Steps {
		v := "pass"
		if !s.Pass {
			v = "fail: " + s.Why
		}
		fmt.Fprintf(&b, "%7.0f/s  achieved %7.0f/s  p50 %6.2fms  p99 %6.2fms  p99.9 %6.2fms  max %7.2fms  %s\n",
			s.Rate, s.Achieved, s.P50, s.P99, s.P999, s.Max, html.EscapeString(v))
	}
	b.WriteString("</pre></body></html>\n")
	return b.String(), nil
}
