package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/ledger/pgstore"
	"github.com/antaca/antaca/simulator"
)

// runLoads drives the running switch through every load phase, in this
// order: warm-up, closed loop (with the write-behind and Redis counters
// sampled), open loops, the CPU step (generator in a child process),
// overload and recovery, then the audit.
func runLoads(ctx context.Context, o Options, prof Profile, sw *switchUnderTest, cards *simulator.CardsFile, scripts []scriptCommand, res *Result) error {
	n, err := simulator.Connect(ctx, simulator.NetworkConfig{Addr: sw.ISOAddr, Links: o.Links})
	if err != nil {
		return err
	}
	defer n.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = n.WaitUp(wctx, o.Links)
	cancel()
	if err != nil {
		return err
	}
	d := newDriver(n, cards.Cards, prof, o.Timeout, cards.Partners[0].BIN)

	// Per-script calls, counted on the switch's own Redis client.
	counter := newSHACounter()
	sw.Redis.AddHook(counter)
	names := map[string]string{}
	for _, sc := range scripts {
		names[sc.SHA] = sc.Name
	}

	// Warm-up: connections, scripts, the card cache, the Go runtime.
	d.closedLoop(ctx, o.InFlight, o.Warmup, "warm-up")
	settle(ctx, sw)

	// Closed loop.
	wb, err := pgstore.NewWriteBehind(pgstore.Options{Redis: sw.Redis, Keys: sw.Ledger.Keys(), Pool: sw.Pool})
	if err != nil {
		return err
	}
	statsBefore, _ := commandStats(ctx, sw.Redis)
	metricsBefore := journalMetrics(sw)
	shedBefore := shedCount(sw)
	counter.take()
	lagCtx, stopLag := context.WithCancel(ctx)
	lags := sampleLag(lagCtx, wb)
	rep := d.closedLoop(ctx, o.InFlight, o.ClosedLoop, fmt.Sprintf("closed loop, %d in flight", o.InFlight))
	stopLag()
	statsAfter, _ := commandStats(ctx, sw.Redis)
	metricsAfter := journalMetrics(sw)
	calls := counter.take()
	res.ClosedLoop = loadResult(rep.Label, 0, rep, prof)
	c := res.ClosedLoop
	c.Shed = shedCount(sw) - shedBefore
	o.Progress("closed loop, %d in flight: %.0f approvals/s, p50 %.2f p99 %.2f max %.2f ms, failures %s",
		o.InFlight, c.ApprovalRate, c.Latency.P50, c.Latency.P99, c.Latency.Max, c.failures())
	if statsBefore != nil && statsAfter != nil {
		res.RedisStats = diffCommandStats(statsBefore, statsAfter, c.Approvals)
		if c.Approvals > 0 {
			res.RedisStats.Scripts = map[string]float64{}
			for sha, k := range calls {
				name := names[sha]
				if name == "" {
					name = "sha " + sha[:min(8, len(sha))]
				}
				res.RedisStats.Scripts[name] += float64(k) / float64(c.Approvals)
			}
		}
	}
	res.WriteBehind = writeBehindResult(<-lags, metricsBefore, metricsAfter)
	o.Progress("write-behind during the closed loop: lag p99 %.1f ms (max %.1f), commit wait p99 %.2f ms, %.1f events per batch",
		res.WriteBehind.LagP99MS, res.WriteBehind.LagMaxMS, res.WriteBehind.CommitWaitP99MS, res.WriteBehind.EventsPerBatch)
	settle(ctx, sw)
	if c.ApprovalRate <= 0 {
		return fmt.Errorf("the closed loop had no approval (failures %s)", formatCodes(c.Failures))
	}
	maxRate := c.ApprovalRate

	// Open loops at fractions of the maximum.
	for _, f := range o.OpenLevels {
		rate := math.Round(f * maxRate)
		shedBefore := shedCount(sw)
		rep, err := simulator.RunLoad(ctx, n, simulator.LoadConfig{
			Rate: rate, Duration: o.OpenStep, Timeout: o.Timeout, Cards: cards.Cards, UnknownBIN: cards.Partners[0].BIN,
			Mix: prof.Mix, MinAmount: prof.MinAmount, MaxAmount: prof.MaxAmount,
			Label: fmt.Sprintf("open loop %.0f%% of the maximum (%.0f/s)", 100*f, rate),
		})
		if err != nil {
			return err
		}
		lr := loadResult(fmt.Sprintf("open %.0f%%", 100*f), rate, rep, prof)
		lr.Shed = shedCount(sw) - shedBefore
		res.OpenLoop = append(res.OpenLoop, lr)
		res.addStep(step(o, prof, rep), rep)
		o.Progress("open loop %.0f%% (%.0f/s): p50 %.2f p99 %.2f max %.2f ms, failures %s",
			100*f, rate, lr.Latency.P50, lr.Latency.P99, lr.Latency.Max, lr.failures())
		settle(ctx, sw)
	}

	// CPU per authorization at a fixed rate.
	if !o.SkipCPU {
		cpu, err := measureCPU(ctx, o, prof, sw, cards)
		if err != nil {
			return fmt.Errorf("measuring CPU: %w", err)
		}
		res.CPU = cpu
		if cpu.Report != nil {
			res.addStep(step(o, prof, cpu.Report), cpu.Report)
		}
		u := cpu.USPerApproval
		o.Progress("CPU at %.0f/s, µs per approval: switch %.0f, redis %.0f, postgres %.0f (total %.0f), generator %.0f",
			cpu.Rate, u["switch"], u["redis"], u["postgres"], cpu.Total, u["generator"])
		settle(ctx, sw)
	}

	// Overload, then recovery, without a pause.
	over, rec := math.Round(o.Overload*maxRate), math.Round(o.Recovery*maxRate)
	var shedAt [2]int64
	reps := d.openLoop(ctx, []Phase{
		{Name: fmt.Sprintf("overload %.2gx (%.0f/s)", o.Overload, over), Rate: over, Duration: o.OverloadDuration,
			Start: func() { shedAt[0] = shedCount(sw) }},
		{Name: fmt.Sprintf("recovery %.2gx (%.0f/s)", o.Recovery, rec), Rate: rec, Duration: o.RecoveryDuration,
			Start: func() { shedAt[1] = shedCount(sw) }},
	})
	res.Overload = &OverloadResult{Overload: loadResult("overload", over, reps[0], prof), Recovery: loadResult("recovery", rec, reps[1], prof)}
	res.Overload.GoodputRatio = res.Overload.Overload.ApprovalRate / maxRate
	ov, rv := res.Overload.Overload, res.Overload.Recovery
	ov.Shed, rv.Shed = shedAt[1]-shedAt[0], shedCount(sw)-shedAt[1]
	o.Progress("overload %.0f/s: goodput %.0f approvals/s (%.2fx the maximum), failures %s; recovery %.0f/s: p99 %.2f ms, failures %s",
		over, ov.ApprovalRate, res.Overload.GoodputRatio, ov.failures(), rec, rv.Latency.P99, rv.failures())

	// Audit, and every approval the driver received looked up in Postgres.
	a, err := audit(ctx, sw, d.approvedRefs())
	if err != nil {
		return fmt.Errorf("auditing: %w", err)
	}
	res.Audit = a
	o.Progress("audit: clean %v (%d differences); %d approvals checked, %d lost (%.1fs)", a.Clean, a.Differences, a.Approvals, a.Lost, a.Seconds)
	return nil
}

// settle waits until the write-behind has committed everything, so that a
// phase does not inherit the previous one's backlog.
func settle(ctx context.Context, sw *switchUnderTest) {
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = sw.FlushJournal(fctx)
	time.Sleep(500 * time.Millisecond)
}

// sampleLag samples the write-behind's lag every 100 ms until ctx ends,
// then delivers the samples (ms).
func sampleLag(ctx context.Context, wb *pgstore.WriteBehind) <-chan []float64 {
	out := make(chan []float64, 1)
	go func() {
		var samples []float64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				out <- samples
				return
			case <-t.C:
				if _, age, err := wb.Lag(ctx); err == nil {
					samples = append(samples, float64(age)/float64(time.Millisecond))
				}
			}
		}
	}()
	return out
}

// quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// journalSnapshot is the write-behind's counters in the switch's registry.
type journalSnapshot struct {
	waitBounds []float64 // bucket upper bounds, seconds
	waitCounts []float64 // cumulative
	batches    float64
	events     float64
}

// shedCount is the switch's antaca_iso_shed_total.
func shedCount(sw *switchUnderTest) int64 {
	mfs, err := sw.Metrics.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "antaca_iso_shed_total" {
			var n float64
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
			return int64(n)
		}
	}
	return 0
}

func journalMetrics(sw *switchUnderTest) journalSnapshot {
	var s journalSnapshot
	mfs, err := sw.Metrics.Gather()
	if err != nil {
		return s
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "antaca_journal_commit_wait_seconds":
			for _, m := range mf.GetMetric() {
				for _, b := range m.GetHistogram().GetBucket() {
					s.waitBounds = append(s.waitBounds, b.GetUpperBound())
					s.waitCounts = append(s.waitCounts, float64(b.GetCumulativeCount()))
				}
			}
		case "antaca_writebehind_batches_total":
			for _, m := range mf.GetMetric() {
				s.batches += m.GetCounter().GetValue()
			}
		case "antaca_writebehind_events_total":
			for _, m := range mf.GetMetric() {
				s.events += m.GetCounter().GetValue()
			}
		}
	}
	return s
}

// histogramQuantile interpolates linearly within the bucket that holds q
// of the difference of two cumulative histograms (as Prometheus's
// histogram_quantile does).
func histogramQuantile(q float64, bounds, before, after []float64) float64 {
	if len(bounds) == 0 || len(before) != len(after) {
		return 0
	}
	n := after[len(after)-1] - before[len(before)-1]
	if n <= 0 {
		return 0
	}
	rank := q * n
	prevBound, prevCount := 0.0, 0.0
	for i, b := range bounds {
		c := after[i] - before[i]
		if c >= rank {
			if c == prevCount {
				return b
			}
			return prevBound + (b-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = b, c
	}
	return bounds[len(bounds)-1] // beyond the last bucket: at least this
}

func writeBehindResult(lags []float64, before, after journalSnapshot) *WriteBehindResult {
	slices.Sort(lags)
	r := &WriteBehindResult{LagSamples: len(lags), LagP50MS: quantile(lags, 0.5), LagP99MS: quantile(lags, 0.99)}
	if len(lags) > 0 {
		r.LagMaxMS = lags[len(lags)-1]
	}
	if len(before.waitCounts) == 0 {
		before.waitCounts = make([]float64, len(after.waitCounts))
	}
	r.CommitWaitP50MS = 1000 * histogramQuantile(0.5, after.waitBounds, before.waitCounts, after.waitCounts)
	r.CommitWaitP99MS = 1000 * histogramQuantile(0.99, after.waitBounds, before.waitCounts, after.waitCounts)
	r.Batches = int64(after.batches - before.batches)
	if r.Batches > 0 {
		r.EventsPerBatch = (after.events - before.events) / float64(r.Batches)
	}
	return r
}

// generatorCommand is the command that runs the simulator's subcommands
// as child processes (o.Generator, or this executable with "sim").
func generatorCommand(o Options) ([]string, error) {
	if len(o.Generator) > 0 {
		return o.Generator, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable to run the simulator: %w", err)
	}
	return []string{exe, "sim"}, nil
}

// measureCPU runs `sim load` as a child process at o.CPURate and reads
// the CPU time the switch (this process), Redis, Postgres and the
// generator spent meanwhile.
func measureCPU(ctx context.Context, o Options, prof Profile, sw *switchUnderTest, cards *simulator.CardsFile) (*CPUResult, error) {
	dir, err := os.MkdirTemp("", "antaca-bench-cpu-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cardsPath, reportPath := filepath.Join(dir, "cards.json"), filepath.Join(dir, "report.json")
	if err := cards.Save(cardsPath); err != nil {
		return nil, err
	}
	gen, err := generatorCommand(o)
	if err != nil {
		return nil, err
	}
	args := append(slices.Clone(gen[1:]), "load", "--iso-addr", sw.ISOAddr, "--links", strconv.Itoa(o.Links),
		"--cards", cardsPath, "--keys-dir", filepath.Join(dir, "no-keys"), "--pin-share", "0",
		"--rate", strconv.FormatFloat(o.CPURate, 'f', -1, 64), "--duration", o.CPUDuration.String(), "--timeout", o.Timeout.String(),
		"--mix", prof.Mix.String(), "--min-amount", strconv.FormatInt(prof.MinAmount, 10), "--max-amount", strconv.FormatInt(prof.MaxAmount, 10),
		"--echo-interval", "0", "--quiet", "--json", reportPath)
	cmd := exec.CommandContext(ctx, gen[0], args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr

	meter := startCPUMeter(ctx, sw.Redis, sw.dbURL)
	var recv0 int64
	if sw.receiverPID > 0 {
		recv0, _, _ = procCPU(sw.receiverPID)
	}
	runErr := cmd.Run()
	switchUS, redisUS, pgUS, wall := meter.stop(ctx)
	receiverUS := int64(-1)
	if sw.receiverPID > 0 {
		if recv1, _, err := procCPU(sw.receiverPID); err == nil {
			receiverUS = (recv1 - recv0) * 1_000_000 / meter.tick
		}
	}
	if runErr != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", gen[0], strings.Join(args, " "), runErr, strings.TrimSpace(stderr.String()))
	}
	b, err := os.ReadFile(reportPath)
	if err != nil {
		return nil, fmt.Errorf("reading the generator's report: %w", err)
	}
	var rep simulator.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("reading the generator's report: %w", err)
	}
	ps := cmd.ProcessState
	genUS := (ps.UserTime() + ps.SystemTime()).Microseconds()
	r := &CPUResult{Rate: o.CPURate, Seconds: wall.Seconds(), Approvals: approvalsOf(&rep), Report: &rep,
		USPerApproval: map[string]float64{}, Generator: append([]string{filepath.Base(gen[0])}, args...)}
	if r.Approvals == 0 {
		return r, nil
	}
	per := func(us int64) float64 { return float64(us) / float64(r.Approvals) }
	r.USPerApproval["switch"] = per(switchUS)
	r.USPerApproval["postgres"] = per(pgUS)
	r.USPerApproval["generator"] = per(genUS)
	if receiverUS >= 0 {
		r.USPerApproval["webhook_receiver"] = per(receiverUS)
	}
	r.Total = per(switchUS) + per(pgUS)
	if redisUS >= 0 {
		r.USPerApproval["redis"] = per(redisUS)
		r.Total += per(redisUS)
	}
	r.WithGenerator = r.Total + per(genUS)
	return r, nil
}

// audit flushes the write-behind, runs pgstore.Audit, and looks every
// approval up in Postgres: the hold whose reference is its RRN and card id.
func audit(ctx context.Context, sw *switchUnderTest, refs []string) (*AuditResult, error) {
	began := time.Now()
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := sw.FlushJournal(fctx); err != nil {
		return nil, err
	}
	rep, err := pgstore.Audit(fctx, sw.Redis, sw.Ledger.Keys(), pgstore.Postgres(sw.Pool))
	if err != nil {
		return nil, err
	}
	a := &AuditResult{Clean: rep.OK(), Differences: len(rep.Differences), Approvals: len(refs)}
	a.Summary = strings.TrimSpace(rep.String())
	if len(a.Summary) > 2000 {
		a.Summary = a.Summary[:2000] + "..."
	}
	rows, err := sw.Pool.Query(fctx, `SELECT r FROM unnest($1::text[]) AS r
		WHERE NOT EXISTS (SELECT 1 FROM holds h WHERE h.reference = r)`, refs)
	if err != nil {
		return nil, fmt.Errorf("looking approvals up: %w", err)
	}
	for rows.Next() {
		var ref string
		if err := rows.Scan(&ref); err != nil {
			rows.Close()
			return nil, err
		}
		a.Lost++
		if len(a.LostSample) < 10 {
			a.LostSample = append(a.LostSample, ref)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	a.Seconds = time.Since(began).Seconds()
	return a, nil
}
