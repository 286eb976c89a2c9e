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

// WriteTable prints the run as one table. The ratio column relates each
// line to the closed-loop maximum: for the stores it is the closed loop
// divided by their ceiling, for the loads their rate (or goodput) as a
// share of the maximum.
func (r *Result) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	maxRate := 0.0
	if r.ClosedLoop != nil {
		maxRate = r.ClosedLoop.ApprovalRate
	}
	of := func(v float64) string {
		if maxRate == 0 || v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", v/maxRate)
	}
	over := func(v float64) string {
		if maxRate == 0 || v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", maxRate/v)
	}
	lat := func(l simulator.Latency) string {
		return fmt.Sprintf("p50 %.2f / p99 %.2f / max %.2f ms", l.P50, l.P99, l.Max)
	}
	fmt.Fprintf(tw, "measure\trate/s\tratio\tnote\t\n")
	if c := r.ClosedLoop; c != nil {
		fmt.Fprintf(tw, "closed loop, %d in flight (%d ISO links, %d cards, %s)\t%.0f\t1.00x\tapprovals/s; %s; failures %s\t\n",
			r.InFlight, r.Links, r.Cards, r.Profile, c.ApprovalRate, lat(c.Latency), c.failures())
	}
	tool := func(label string, t *ToolResult, note string) {
		if t == nil {
			return
		}
		ratio := over(t.Rate)
		if note == "" {
			ratio = "-" // not a ceiling of the authorization
		}
		if t.USPerCall > 0 {
			note = strings.TrimPrefix(note+fmt.Sprintf("; %.1f µs per call in Redis", t.USPerCall), "; ")
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t\n", label, t.Rate, ratio, note)
	}
	tool("Redis alone: reserve script, redis-benchmark -P 1", r.Redis, "closed loop / this")
	if r.RedisPipelined != nil {
		tool(fmt.Sprintf("Redis alone: reserve script, redis-benchmark -P %d", r.RedisPipelined.Pipeline), r.RedisPipelined, "closed loop / this")
	}
	for _, t := range r.RedisScripts {
		tool(fmt.Sprintf("Redis alone: %s script, redis-benchmark -P %d", t.Script, t.Pipeline), t, "")
	}
	tool("Postgres alone: row-lock reservation, pgbench", r.Postgres, "closed loop / this; "+detail(r.Postgres))
	for _, l := range r.OpenLoop {
		fmt.Fprintf(tw, "%s of the maximum, open loop\t%.0f\t%s\t%s; failures %s\t\n", l.Name, l.Rate, of(l.Rate), lat(l.Latency), l.failures())
	}
	if c := r.CPU; c != nil {
		u := c.USPerApproval
		redis := "-"
		if v, ok := u["redis"]; ok {
			redis = fmt.Sprintf("%.0f", v)
		}
		recv := ""
		if v, ok := u["webhook_receiver"]; ok {
			recv = fmt.Sprintf("; webhook receiver %.0f", v)
		}
		fmt.Fprintf(tw, "CPU µs per approval at a fixed rate\t%.0f\t%s\tswitch %.0f + redis %s + postgres %.0f = %.0f; generator %.0f%s\t\n",
			c.Rate, of(c.Rate), u["switch"], redis, u["postgres"], c.Total, u["generator"], recv)
		if c.Report != nil {
			fmt.Fprintf(tw, "  the same step's latency\t\t\t%s; failures %s\t\n", lat(c.Report.Latency), formatCodes(failuresOf(c.Report, Profiles[r.Profile])))
		}
	}
	if ov := r.Overload; ov != nil {
		fmt.Fprintf(tw, "overload %.0f/s for %.0f s: goodput (approvals/s)\t%.0f\t%s\t%s; failures %s\t\n",
			ov.Overload.Rate, ov.Overload.Report.WindowSeconds, ov.Overload.ApprovalRate, of(ov.Overload.ApprovalRate), lat(ov.Overload.Latency), ov.Overload.failures())
		fmt.Fprintf(tw, "then %.0f/s for %.0f s\t%.0f\t%s\t%s; failures %s\t\n",
			ov.Recovery.Rate, ov.Recovery.Report.WindowSeconds, ov.Recovery.ApprovalRate, of(ov.Recovery.Rate), lat(ov.Recovery.Latency), ov.Recovery.failures())
	}
	if wb := r.WriteBehind; wb != nil {
		fmt.Fprintf(tw, "write-behind during the closed loop\t\t\tlag p99 %.1f ms (max %.1f); commit wait p50 %.2f / p99 %.2f ms; %.1f entries per group commit\t\n",
			wb.LagP99MS, wb.LagMaxMS, wb.CommitWaitP50MS, wb.CommitWaitP99MS, wb.EventsPerBatch)
	}
	if cs := r.RedisStats; cs != nil {
		var scripts []string
		for _, k := range sortedByValue(cs.Scripts) {
			scripts = append(scripts, fmt.Sprintf("%s %.2f", k, cs.Scripts[k]))
		}
		fmt.Fprintf(tw, "Redis during the closed loop, per approval\t\t\t%.2f EVALSHA (%s) at %.1f µs; %.1f other commands\t\n",
			cs.EvalshaPerApproval, strings.Join(scripts, ", "), cs.EvalshaUSPerCall, cs.CommandsPerApproval)
	}
	if a := r.Audit; a != nil {
		verdict := "clean"
		if !a.Clean {
			verdict = fmt.Sprintf("NOT CLEAN (%d differences)", a.Differences)
		}
		fmt.Fprintf(tw, "audit after the overload\t\t\t%s; %d of %d approvals lost\t\n", verdict, a.Lost, a.Approvals)
	}
	if wh := r.Webhooks; wh != nil {
		fmt.Fprintf(tw, "webhooks sent during the run\t\t\t%d endpoints subscribed to every event type; %d deliveries verified (%d events), %d refused\t\n",
			wh.Endpoints, wh.Deliveries, wh.Events, wh.Refused)
		fmt.Fprintf(tw, "webhooks behind when the load ended\t\t\t%d deliveries pending, %d journal entries not yet events; caught up in %.1f s (left: %d, %d)\t\n",
			wh.PendingAtEnd, wh.BehindAtEnd, wh.DrainSeconds, wh.Pending, wh.Behind)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "host: %d CPUs, %s, Redis %s, Postgres %s; switch, load generator and stores share the machine; load average %.1f at the start, %.1f at the end; %.0f s\n",
		r.Host.CPUs, r.Host.GoVersion, r.Host.Redis, r.Host.Postgres, r.Host.LoadAvgStart, r.Host.LoadAvgEnd, r.Seconds)
	if r.Controls != "" {
		fmt.Fprintf(w, "spend controls on every card: %s\n", r.Controls)
	}
	if r.RemoteDecisionMS > 0 {
		fmt.Fprintf(w, "every program's backend: a local partner backend answering in %.1f ms (in the switch's process)\n", r.RemoteDecisionMS)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func detail(t *ToolResult) string {
	if t == nil {
		return ""
	}
	return t.Detail
}

func sortedByValue(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case m[a] > m[b]:
			return -1
		case m[a] < m[b]:
			return 1
		}
		return strings.Compare(a, b)
	})
	return keys
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
	lp := r.loadPlots()
	for i := 0; i+1 < len(lp); i += 2 {
		svg, err := simulator.Figure{lp[i], lp[i+1]}.InlineSVG()
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
