// Package bench holds Antaca's benchmarks: Go benchmarks of the decision
// through the real engine and Redis and of an authorization end to end over
// loopback ISO (bench_test.go), and `antaca bench`, which starts a real
// switch and tells the hot path's whole story in one run: the closed-loop
// maximum, open loops at fractions of it, CPU per authorization per
// process at a fixed rate, overload and recovery, write-behind lag, an
// audit with a count of lost approvals, and beside them the physical
// limits that frame those numbers: Redis running the project's own scripts
// (redis-benchmark) and a Postgres-only reservation with row locks
// (pgbench). README.md explains how to read the results.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/simulator"
)

// Options configure an end-to-end run.
type Options struct {
	// RedisURL is the Redis the switch and redis-benchmark use.
	RedisURL string
	// AdminDatabaseURL is a Postgres database the run may create fresh
	// databases from (and drop them again).
	AdminDatabaseURL string
	// OutDir receives bench.json and bench.html.
	OutDir string

	// Profile names the load (Profiles: "auth", the default, or "mixed").
	Profile string
	// Links are ISO connections (default 8); Cards the virtual cards
	// seeded, one customer and balance each (default 20).
	Links, Cards int
	// AnswerAfter is the switch's mode ("postgres", the default, or
	// "redis"); DebugAddr serves the switch's pprof when set.
	AnswerAfter, DebugAddr string
	// Timeout is how long the generator waits for an answer (default 2s).
	Timeout time.Duration
	// TargetP99 is the latency objective an open-loop step is judged by
	// (default 5ms).
	TargetP99 time.Duration

	// Warmup (default 3s) runs the closed loop unmeasured; ClosedLoop
	// (default 15s) measures it with InFlight messages outstanding
	// (default 64).
	Warmup, ClosedLoop time.Duration
	InFlight           int
	// OpenLevels are the open-loop rates as fractions of the closed-loop
	// maximum (default 0.5 and 0.8), each measured for OpenStep (10s).
	OpenLevels []float64
	OpenStep   time.Duration
	// CPURate and CPUDuration are the fixed rate at which CPU per
	// authorization is measured (default 1000/s for 10s); SkipCPU leaves
	// it out.
	CPURate     float64
	CPUDuration time.Duration
	SkipCPU     bool
	// Overload (default 1.5) times the maximum for OverloadDuration (10s),
	// then Recovery (0.25) times it for RecoveryDuration (5s).
	Overload, Recovery                 float64
	OverloadDuration, RecoveryDuration time.Duration
	// Generator is the command that runs `sim load` as a child process
	// for the CPU measurement (default: this executable with "sim").
	Generator []string
	// SwitchLog is a file for the switch's warnings and errors.
	SwitchLog string

	// RedisBenchRequests, RedisBenchClients and RedisPipeline drive
	// redis-benchmark (defaults 100000, 50 and 16); SkipRedis leaves it out.
	RedisBenchRequests, RedisBenchClients, RedisPipeline int
	SkipRedis                                            bool
	// PGBenchSeconds and PGBenchClients drive pgbench (defaults 10 and 16);
	// SkipPostgres leaves it out.
	PGBenchSeconds, PGBenchClients int
	SkipPostgres                   bool

	// WebhookEndpoints subscribes this many webhook endpoints of the
	// seeded partner to every event type, served by a receiver in this
	// process, so that the run measures the switch while it sends events.
	WebhookEndpoints int
	// Controls, when set, are spend controls (JSON, as PUT .../controls
	// takes them) set on every seeded card: the reservation then checks
	// and charges them on every authorization.
	Controls string
	// RemoteDecision, when positive, starts a local decisioning backend
	// answering "approved" after this long and makes it the remoteUrl of
	// every seeded program (stand-in approve_if_funded, decision timeout
	// RemoteTimeout, default 250ms).
	RemoteDecision, RemoteTimeout time.Duration

	// Progress receives one line per phase; nil is silent.
	Progress func(format string, args ...any)

	// Start starts the switch under test (required). `antaca bench`
	// passes the production wiring; the benchmark imports none.
	Start StartSwitch
}

// StartSwitch starts a switch as c asks and returns it running.
type StartSwitch func(ctx context.Context, c SwitchConfig) (*Switch, error)

// SwitchConfig is the switch a run asks for: ISO and HTTP on loopback
// ports the system chooses, its own Redis key prefix, Postgres database and
// keys directory.
type SwitchConfig struct {
	RedisURL, DatabaseURL, KeyPrefix, KeysDir string
	// AnswerAfter is the switch's mode (postgres or redis); DebugAddr
	// serves its pprof when set.
	AnswerAfter, DebugAddr string
	// WebhookAllowPrivate lets webhook endpoints be http on loopback (the
	// run's own receiver).
	WebhookAllowPrivate bool
	// LogFile, when set, receives the switch's warnings and errors
	// (otherwise discarded).
	LogFile string
}

// Switch is a running switch under test: where it listens and the parts
// of it the run reads (the ledger to seed, Redis and Postgres to audit,
// its metrics).
type Switch struct {
	ISOAddr     string
	Ledger      *ledger.Ledger
	Issuing     *issuing.Service
	LookupToken func(pan string) string
	Redis       redis.UniversalClient
	Pool        *pgxpool.Pool
	Metrics     prometheus.Gatherer
	// FlushJournal waits until the write-behind has written every
	// journal entry to Postgres.
	FlushJournal func(context.Context) error
	// Shutdown drains and stops the switch.
	Shutdown func(context.Context) error
}

func (o *Options) defaults() {
	if o.RedisURL == "" {
		o.RedisURL = "redis://127.0.0.1:6379/0"
	}
	if o.AdminDatabaseURL == "" {
		o.AdminDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	if o.Profile == "" {
		o.Profile = "auth"
	}
	if o.Links <= 0 {
		o.Links = 8
	}
	if o.Cards <= 0 {
		o.Cards = 20
	}
	if o.AnswerAfter == "" {
		o.AnswerAfter = "postgres"
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.TargetP99 <= 0 {
		o.TargetP99 = 5 * time.Millisecond
	}
	if o.Warmup <= 0 {
		o.Warmup = 3 * time.Second
	}
	if o.ClosedLoop <= 0 {
		o.ClosedLoop = 15 * time.Second
	}
	if o.InFlight <= 0 {
		o.InFlight = 64
	}
	if len(o.OpenLevels) == 0 {
		o.OpenLevels = []float64{0.5, 0.8}
	}
	if o.OpenStep <= 0 {
		o.OpenStep = 10 * time.Second
	}
	if o.CPURate <= 0 {
		o.CPURate = 1000
	}
	if o.CPUDuration <= 0 {
		o.CPUDuration = 10 * time.Second
	}
	if o.Overload <= 0 {
		o.Overload = 1.5
	}
	if o.Recovery <= 0 {
		o.Recovery = 0.25
	}
	if o.OverloadDuration <= 0 {
		o.OverloadDuration = 10 * time.Second
	}
	if o.RecoveryDuration <= 0 {
		o.RecoveryDuration = 5 * time.Second
	}
	if o.RedisBenchRequests <= 0 {
		o.RedisBenchRequests = 100_000
	}
	if o.RedisBenchClients <= 0 {
		o.RedisBenchClients = 50
	}
	if o.RedisPipeline <= 1 {
		o.RedisPipeline = 16
	}
	if o.PGBenchSeconds <= 0 {
		o.PGBenchSeconds = 10
	}
	if o.PGBenchClients <= 0 {
		o.PGBenchClients = 16
	}
	if o.Progress == nil {
		o.Progress = func(string, ...any) {}
	}
}

// Result is what `antaca bench` measured.
type Result struct {
	Started time.Time `json:"started"`
	Host    Host      `json:"host"`
	// Load shape: profile, ISO links, cards, closed-loop depth, mode.
	Profile     string  `json:"profile"`
	Links       int     `json:"links"`
	Cards       int     `json:"cards"`
	InFlight    int     `json:"in_flight"`
	AnswerAfter string  `json:"answer_after"`
	TargetP99   float64 `json:"target_p99_ms"`
	// Controls set on every card, and the local partner backend's answer
	// time, when the run had them.
	Controls         string  `json:"controls,omitempty"`
	RemoteDecisionMS float64 `json:"remote_decision_ms,omitempty"`

	// ClosedLoop is the maximum: InFlight messages outstanding.
	ClosedLoop *LoadResult `json:"closed_loop"`
	// OpenLoop are the fixed rates at fractions of the maximum.
	OpenLoop []*LoadResult `json:"open_loop"`
	// CPU is CPU time per authorization per process at a fixed rate.
	CPU *CPUResult `json:"cpu,omitempty"`
	// Overload is 1.5x the maximum, then 0.25x.
	Overload *OverloadResult `json:"overload,omitempty"`
	// WriteBehind is the journal's lag and commit wait during the closed loop.
	WriteBehind *WriteBehindResult `json:"write_behind,omitempty"`
	// Redis is what INFO commandstats counted during the closed loop.
	RedisStats *CommandStats `json:"redis_commandstats,omitempty"`
	// Audit is pgstore.Audit after the overload, and the approvals found.
	Audit *AuditResult `json:"audit,omitempty"`
	// Webhooks is what the run's webhook receiver got (--webhook-endpoints).
	Webhooks *WebhookResult `json:"webhooks,omitempty"`

	// Switch keeps the latency-against-rate view of the open-loop steps
	// (including the CPU step): SustainedRate is the highest step that
	// met the p99 objective without failures.
	Switch SwitchResult `json:"switch"`

	// Redis is redis-benchmark running the reserve script, one call per
	// round trip (-P 1); RedisPipelined the same, RedisPipeline deep.
	Redis          *ToolResult `json:"redis_reserve_script,omitempty"`
	RedisPipelined *ToolResult `json:"redis_reserve_script_pipelined,omitempty"`
	// RedisScripts are the other hot-path scripts, each alone (-P 1).
	RedisScripts []*ToolResult `json:"redis_scripts,omitempty"`
	// Postgres is pgbench running a row-lock reservation.
	Postgres *ToolResult `json:"postgres_row_lock,omitempty"`
	// Ratios relate the rates: closed_over_redis (closed loop / reserve
	// script at -P 1), closed_over_redis_pipelined, closed_over_postgres,
	// redis_over_postgres.
	Ratios map[string]float64 `json:"ratios"`
	// Notes are what could not be measured, and why.
	Notes []string `json:"notes,omitempty"`
	// Seconds is how long the run took.
	Seconds float64 `json:"seconds"`
}

// Host describes where the numbers were taken.
type Host struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go"`
	Redis     string `json:"redis,omitempty"`
	Postgres  string `json:"postgres,omitempty"`
	// LoadAvgStart and LoadAvgEnd are the machine's 1-minute load average
	// (/proc/loadavg) when the run started and ended: how much else ran.
	LoadAvgStart float64 `json:"load_average_start,omitempty"`
	LoadAvgEnd   float64 `json:"load_average_end,omitempty"`
}

// loadAverage is the 1-minute load average, 0 where /proc has none.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// LoadResult is one measured load.
type LoadResult struct {
	Name string `json:"name"`
	// Rate is the scheduled rate (0 for the closed loop).
	Rate float64 `json:"requested_rate"`
	// Approvals and ApprovalRate (approvals per second of the window:
	// the goodput).
	Approvals    int64             `json:"approvals"`
	ApprovalRate float64           `json:"approvals_per_second"`
	Latency      simulator.Latency `json:"latency_ms"`
	// Failures by DE39 code, plus "timeout" and "error" (no answer).
	Failures map[string]int64 `json:"failures"`
	// Shed is how many requests the switch's admission control answered
	// issuer unavailable at once during the load (antaca_iso_shed_total):
	// of the 9112 failures, those not decided at all. Where two loads run
	// back to back it is counted by when the switch shed them.
	Shed   int64             `json:"shed"`
	Report *simulator.Report `json:"report"`
}

// failures prints the failures by code, and how many of them were shed
// by admission control.
func (l *LoadResult) failures() string {
	s := formatCodes(l.Failures)
	if l.Shed > 0 {
		s += fmt.Sprintf(" (%d shed at admission)", l.Shed)
	}
	return s
}

func loadResult(name string, rate float64, rep *simulator.Report, prof Profile) *LoadResult {
	lr := &LoadResult{Name: name, Rate: rate, Approvals: approvalsOf(rep), Latency: rep.Latency, Failures: failuresOf(rep, prof), Report: rep}
	if rep.WindowSeconds > 0 {
		lr.ApprovalRate = float64(lr.Approvals) / rep.WindowSeconds
	}
	return lr
}

// CPUResult is CPU time per approved authorization, per process, at a
// fixed rate, from /proc/<pid>/stat (utime + stime) before and after.
type CPUResult struct {
	Rate      float64 `json:"rate"`
	Seconds   float64 `json:"seconds"`
	Approvals int64   `json:"approvals"`
	// USPerApproval: switch (the bench process, which runs the switch),
	// redis, postgres (the bench database's backends and the server's
	// background processes), generator (`sim load`, a child process), and
	// with --webhook-endpoints webhook_receiver (`sim webhooks`, a child
	// process: the partner's side, not counted in Total).
	USPerApproval map[string]float64 `json:"us_per_approval"`
	// Total is switch + redis + postgres; WithGenerator adds the generator.
	Total         float64           `json:"total_us_per_approval"`
	WithGenerator float64           `json:"total_with_generator_us_per_approval"`
	Generator     []string          `json:"generator_command"`
	Report        *simulator.Report `json:"report,omitempty"`
}

// OverloadResult is the overload phase and the recovery after it.
type OverloadResult struct {
	Overload *LoadResult `json:"overload"`
	Recovery *LoadResult `json:"recovery"`
	// GoodputRatio is the overload's approvals/s over the closed-loop maximum.
	GoodputRatio float64 `json:"goodput_over_closed_loop"`
}

// WriteBehindResult is the journal during the closed loop.
type WriteBehindResult struct {
	// Lag is the age of the oldest journal entry not yet committed to
	// Postgres, sampled every 100 ms (pgstore.WriteBehind.Lag).
	LagSamples int     `json:"lag_samples"`
	LagP50MS   float64 `json:"lag_p50_ms"`
	LagP99MS   float64 `json:"lag_p99_ms"`
	LagMaxMS   float64 `json:"lag_max_ms"`
	// CommitWait is antaca_journal_commit_wait_seconds (how long answers
	// waited for their group commit), interpolated within its buckets.
	CommitWaitP50MS float64 `json:"commit_wait_p50_ms"`
	CommitWaitP99MS float64 `json:"commit_wait_p99_ms"`
	// Batches and EventsPerBatch are the group commits.
	Batches        int64   `json:"batches"`
	EventsPerBatch float64 `json:"events_per_batch"`
}

// AuditResult is the check at the end of the overload: pgstore.Audit
// after a flush, and every approval the bench's own generator received
// looked up in Postgres by its hold's reference (RRN and card id).
type AuditResult struct {
	Clean       bool     `json:"clean"`
	Differences int      `json:"differences"`
	Summary     string   `json:"summary"`
	Approvals   int      `json:"approvals_checked"`
	Lost        int      `json:"approvals_lost"`
	LostSample  []string `json:"lost_sample,omitempty"`
	Seconds     float64  `json:"seconds"`
}

// SwitchResult is the open-loop steps, kept for the latency plots.
type SwitchResult struct {
	SustainedRate float64 `json:"sustained_rate"`
	// Best is the report of the step at SustainedRate.
	Best  *simulator.Report `json:"best_step,omitempty"`
	Steps []Step            `json:"steps"`
}

// Step is one measured open-loop rate.
type Step struct {
	Rate     float64 `json:"requested_rate"`
	Achieved float64 `json:"achieved_rate"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	P999     float64 `json:"p99_9_ms"`
	Max      float64 `json:"max_ms"`
	Timeouts int64   `json:"timeouts"`
	Errors   int64   `json:"errors"`
	Pass     bool    `json:"pass"`
	Why      string  `json:"why,omitempty"`
}

// ToolResult is one external tool's measurement.
type ToolResult struct {
	Tool string `json:"tool"`
	// Script and Pipeline: the script redis-benchmark ran and its -P.
	Script   string   `json:"script,omitempty"`
	Pipeline int      `json:"pipeline,omitempty"`
	Command  []string `json:"command"`
	Rate     float64  `json:"rate"`
	// USPerCall is the server's time per script call (INFO commandstats).
	USPerCall float64 `json:"usec_per_call,omitempty"`
	// Detail is the tool's own summary (latency where it reports one).
	Detail string `json:"detail,omitempty"`
}

// Run performs the whole end-to-end benchmark.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	prof, ok := Profiles[o.Profile]
	if !ok {
		return nil, fmt.Errorf("unknown profile %q: want auth or mixed", o.Profile)
	}
	if o.Start == nil {
		return nil, fmt.Errorf("no switch to start: Options.Start is nil")
	}
	began := time.Now()
	res := &Result{Started: began.UTC(), Profile: prof.Name, Links: o.Links, Cards: o.Cards, InFlight: o.InFlight,
		AnswerAfter: o.AnswerAfter, TargetP99: float64(o.TargetP99) / float64(time.Millisecond), Ratios: map[string]float64{}}
	res.Host = hostInfo(ctx, o)
	res.Host.LoadAvgStart = loadAverage()

	sw, err := startSwitch(ctx, o)
	if err != nil {
		return nil, err
	}
	defer sw.cleanup()
	o.Progress("switch started: ISO %s, Redis prefix %s, database %s, answers after %s", sw.ISOAddr, sw.prefix, sw.dbName, o.AnswerAfter)

	cards, err := simulator.Seed(ctx, &simulator.DirectIssuer{Ledger: sw.Ledger, Issuing: sw.Issuing}, simulator.SeedOptions{
		Customers: o.Cards, Virtual: 1, Funds: userFunds, PartnerFunds: partnerFunds, Concurrency: 8,
	})
	if err != nil {
		return nil, fmt.Errorf("seeding: %w", err)
	}
	o.Progress("seeded %d cards, one customer and balance each", len(cards.Cards))
	var receiver *webhookReceiver
	if o.WebhookEndpoints > 0 {
		recv, err := subscribeWebhooks(ctx, o, sw.Switch, cards, o.WebhookEndpoints)
		if err != nil {
			return nil, err
		}
		sw.receiverPID = recv.pid()
		defer func() { _, _ = recv.stop() }() // on an early return; stop is idempotent
		receiver = recv
		o.Progress("%d webhook endpoints subscribed to every event type", o.WebhookEndpoints)
	}
	stopRemote, err := applyProgramOptions(ctx, o, sw, cards, res)
	if err != nil {
		return nil, err
	}
	defer stopRemote()

	var scripts []scriptCommand
	if !o.SkipRedis {
		if scripts, err = captureScripts(ctx, o.RedisURL, sw.prefix, sw.LookupToken, cards); err != nil {
			return nil, fmt.Errorf("capturing the scripts: %w", err)
		}
	}
	if err := runLoads(ctx, o, prof, sw, cards, scripts, res); err != nil {
		return nil, err
	}
	if receiver != nil {
		wr, err := drainWebhooks(ctx, o, sw.Switch, receiver)
		if err != nil {
			return nil, err
		}
		res.Webhooks = wr
	}
	// The switch is stopped before the tools run, so that its write-behind
	// does not compete with them for the machine.
	if err := sw.stop(); err != nil {
		o.Progress("warning: switch shutdown: %v", err)
	}
	if err := runTools(ctx, o, scripts, len(cards.Customers), res); err != nil {
		return nil, err
	}
	res.ratios()
	res.Host.LoadAvgEnd = loadAverage()
	res.Seconds = time.Since(began).Seconds()
	return res, nil
}

// Seeded amounts: each user balance, and the partner deposit, stay within
// what the wire can carry (12 digits).
const (
	userFunds    = 100_000_000_000
	partnerFunds = 999_999_999_999
)

func (r *Result) ratios() {
	if r.ClosedLoop == nil || r.ClosedLoop.ApprovalRate <= 0 {
		return
	}
	c := r.ClosedLoop.ApprovalRate
	if r.Redis != nil && r.Redis.Rate > 0 {
		r.Ratios["closed_over_redis"] = c / r.Redis.Rate
	}
	if r.RedisPipelined != nil && r.RedisPipelined.Rate > 0 {
		r.Ratios["closed_over_redis_pipelined"] = c / r.RedisPipelined.Rate
	}
	if r.Postgres != nil && r.Postgres.Rate > 0 {
		r.Ratios["closed_over_postgres"] = c / r.Postgres.Rate
		if r.Redis != nil {
			r.Ratios["redis_over_postgres"] = r.Redis.Rate / r.Postgres.Rate
		}
	}
}

// runTools runs redis-benchmark on each captured script and pgbench.
func runTools(ctx context.Context, o Options, scripts []scriptCommand, balances int, res *Result) error {
	for _, sc := range scripts {
		if sc.NameOnly {
			continue
		}
		runs := []int{1}
		if sc.Name == "reserve" {
			runs = append(runs, o.RedisPipeline)
		}
		for _, p := range runs {
			n := o.RedisBenchRequests
			if p > 1 {
				n *= 2 // pipelined calls are cheaper per call; keep the run as long
			}
			r, err := redisBenchmark(ctx, o, sc, n, p)
			if err != nil {
				return fmt.Errorf("redis-benchmark %s: %w", sc.Name, err)
			}
			switch {
			case sc.Name == "reserve" && p == 1:
				res.Redis = r
			case sc.Name == "reserve":
				res.RedisPipelined = r
			default:
				res.RedisScripts = append(res.RedisScripts, r)
			}
			o.Progress("redis-benchmark %s -P %d: %.0f/s, %.1f µs per call in Redis", sc.Name, p, r.Rate, r.USPerCall)
		}
	}
	if !o.SkipPostgres {
		r, err := pgReserveBench(ctx, o, balances)
		if err != nil {
			return fmt.Errorf("pgbench: %w", err)
		}
		res.Postgres = r
		o.Progress("pgbench, row-lock reservation: %.0f/s", r.Rate)
	}
	return nil
}

// step judges an open-loop report: p99 within the objective, the rate
// achieved within 2%, and no failure.
func step(o Options, prof Profile, rep *simulator.Report) Step {
	st := Step{Rate: rep.TargetRate, Achieved: rep.AchievedRate, P50: rep.Latency.P50, P99: rep.Latency.P99, P999: rep.Latency.P999,
		Max: rep.Latency.Max, Timeouts: rep.Timeouts, Errors: rep.Errors, Pass: true}
	target := float64(o.TargetP99) / float64(time.Millisecond)
	switch f := failuresOf(rep, prof); {
	case total(f) > 0:
		st.Pass, st.Why = false, "failures "+formatCodes(f)
	case rep.Latency.P99 > target:
		st.Pass, st.Why = false, fmt.Sprintf("p99 %.2fms > %.2fms", rep.Latency.P99, target)
	case rep.AchievedRate < 0.98*rep.TargetRate:
		st.Pass, st.Why = false, fmt.Sprintf("achieved %.0f/s < 98%% of %.0f/s", rep.AchievedRate, rep.TargetRate)
	}
	return st
}

func (r *Result) addStep(st Step, rep *simulator.Report) {
	r.Switch.Steps = append(r.Switch.Steps, st)
	slices.SortFunc(r.Switch.Steps, func(a, b Step) int { return int(a.Rate - b.Rate) })
	if st.Pass && st.Rate > r.Switch.SustainedRate {
		r.Switch.SustainedRate, r.Switch.Best = st.Rate, rep
	}
}

// switchUnderTest is a switch started for the run on its own key prefix,
// database and keys directory.
type switchUnderTest struct {
	*Switch
	prefix  string
	dbName  string
	dbURL   string
	keysDir string
	o       Options
	stopped bool
	// receiverPID is the webhook receiver's process (--webhook-endpoints).
	receiverPID int
}

func randomName(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func startSwitch(ctx context.Context, o Options) (*switchUnderTest, error) {
	sw := &switchUnderTest{o: o, prefix: randomName("bench"), dbName: randomName("antaca_bench_")}
	if err := createDatabase(ctx, o.AdminDatabaseURL, sw.dbName); err != nil {
		return nil, err
	}
	var err error
	if sw.dbURL, err = databaseURL(o.AdminDatabaseURL, sw.dbName); err != nil {
		return nil, err
	}
	if sw.keysDir, err = os.MkdirTemp("", "antaca-bench-keys-"); err != nil {
		return nil, err
	}
	running, err := o.Start(ctx, SwitchConfig{RedisURL: o.RedisURL, DatabaseURL: sw.dbURL, KeyPrefix: sw.prefix,
		KeysDir: filepath.Join(sw.keysDir, "keys"), AnswerAfter: o.AnswerAfter, DebugAddr: o.DebugAddr,
		WebhookAllowPrivate: o.WebhookEndpoints > 0, LogFile: o.SwitchLog})
	if err != nil {
		sw.cleanup()
		return nil, fmt.Errorf("starting switch: %w", err)
	}
	sw.Switch = running
	return sw, nil
}

func (sw *switchUnderTest) stop() error {
	if sw.stopped || sw.Switch == nil {
		return nil
	}
	sw.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return sw.Shutdown(ctx)
}

// cleanup stops the switch and removes its keys, database and key files.
func (sw *switchUnderTest) cleanup() {
	_ = sw.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deleteKeys(ctx, sw.o.RedisURL, sw.prefix+":*")
	_ = dropDatabase(ctx, sw.o.AdminDatabaseURL, sw.dbName)
	if sw.keysDir != "" {
		_ = os.RemoveAll(sw.keysDir)
	}
}

func createDatabase(ctx context.Context, adminURL, name string) error {
	c, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connecting to postgres: %w", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	return nil
}

func dropDatabase(ctx context.Context, adminURL, name string) error {
	c, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// applyProgramOptions sets Controls on every seeded card and, with
// RemoteDecision, starts the local partner backend and points every seeded
// program at it. The returned function stops the backend.
func applyProgramOptions(ctx context.Context, o Options, sw *switchUnderTest, cards *simulator.CardsFile, res *Result) (func(), error) {
	iss := &simulator.DirectIssuer{Ledger: sw.Ledger, Issuing: sw.Issuing}
	stop := func() {}
	if o.Controls != "" {
		for _, c := range cards.Cards {
			p, _ := cards.Partner(c.PartnerID)
			if err := iss.SetCardControls(ctx, p, c.CustomerID, c.ID, o.Controls); err != nil {
				return stop, fmt.Errorf("setting controls on card %s: %w", c.ID, err)
			}
		}
		res.Controls = o.Controls
		o.Progress("controls set on %d cards: %s", len(cards.Cards), o.Controls)
	}
	if o.RemoteDecision > 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return stop, fmt.Errorf("starting the partner backend: %w", err)
		}
		timeout := o.RemoteTimeout
		if timeout <= 0 {
			timeout = 250 * time.Millisecond
		}
		b := simulator.NewPartnerBackend(simulator.PartnerConfig{Latency: o.RemoteDecision})
		bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		go func() { _ = simulator.ServePartner(bctx, ln, b) }()
		stop = func() {
			cancel()
			o.Progress("partner backend: %s", b.Stats.String())
		}
		url := "http://" + ln.Addr().String() + "/"
		for _, p := range cards.Partners {
			if _, err := iss.SetRemote(ctx, p, url, authz.StandIn{Policy: authz.StandInApproveIfFunded}, timeout.Milliseconds()); err != nil {
				stop()
				return func() {}, fmt.Errorf("pointing program of %s at the partner backend: %w", p.ID, err)
			}
		}
		res.RemoteDecisionMS = float64(o.RemoteDecision) / float64(time.Millisecond)
		o.Progress("partner backend %s answers in %s for %d program(s)", url, o.RemoteDecision, len(cards.Partners))
	}
	return stop, nil
}
