// Package bench holds Antaca's benchmarks: Go benchmarks of the decision
// through the real engine and Redis and of an authorization end to end over
// loopback ISO (bench_test.go), and `antaca bench`, which starts a real
// switch, finds the highest open-model rate it sustains with p99 <= 5 ms,
// and measures beside it the two physical limits that frame that number:
// Redis running the project's own reservation script (redis-benchmark) and
// a Postgres-only reservation with row locks (pgbench). README.md explains
// how to read the results.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/antaca/antaca/cmd/antaca/app"
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

	// TargetP99 is the latency objective (default 5ms).
	TargetP99 time.Duration
	// Step is the length of one measured rate (default 6s).
	Step time.Duration
	// Budget bounds the rate search (default 150s).
	Budget time.Duration
	// StartRate is the first rate tried (default 1000/s); MaxRate the
	// highest (default 50000/s).
	StartRate, MaxRate float64
	// Links are ISO connections (default 4); Customers each get a balance
	// with two virtual and one digital-first card (default 50).
	Links, Customers int

	// RedisBenchRequests and RedisBenchClients drive redis-benchmark
	// (defaults 150000 and 50); SkipRedis leaves it out.
	RedisBenchRequests, RedisBenchClients int
	SkipRedis                             bool
	// PGBenchSeconds and PGBenchClients drive pgbench (defaults 10 and 16);
	// SkipPostgres leaves it out.
	PGBenchSeconds, PGBenchClients int
	SkipPostgres                   bool

	// Progress receives one line per step; nil is silent.
	Progress func(format string, args ...any)
}

func (o *Options) defaults() {
	if o.RedisURL == "" {
		o.RedisURL = "redis://127.0.0.1:6379/0"
	}
	if o.AdminDatabaseURL == "" {
		o.AdminDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	if o.TargetP99 <= 0 {
		o.TargetP99 = 5 * time.Millisecond
	}
	if o.Step <= 0 {
		o.Step = 6 * time.Second
	}
	if o.Budget <= 0 {
		o.Budget = 150 * time.Second
	}
	if o.StartRate <= 0 {
		o.StartRate = 1000
	}
	if o.MaxRate <= 0 {
		o.MaxRate = 50000
	}
	if o.Links <= 0 {
		o.Links = 4
	}
	if o.Customers <= 0 {
		o.Customers = 50
	}
	if o.RedisBenchRequests <= 0 {
		o.RedisBenchRequests = 150_000
	}
	if o.RedisBenchClients <= 0 {
		o.RedisBenchClients = 50
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
	Started   time.Time `json:"started"`
	Host      Host      `json:"host"`
	TargetP99 float64   `json:"target_p99_ms"`
	// Switch is the highest rate whose step met the objective.
	Switch SwitchResult `json:"switch"`
	// Redis is redis-benchmark running the ledger's reserve script.
	Redis *ToolResult `json:"redis_reserve_script,omitempty"`
	// Postgres is pgbench running a row-lock reservation.
	Postgres *ToolResult `json:"postgres_row_lock,omitempty"`
	// Ratios relate the three rates.
	Ratios map[string]float64 `json:"ratios"`
}

// Host describes where the numbers were taken.
type Host struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go"`
	Redis     string `json:"redis,omitempty"`
	Postgres  string `json:"postgres,omitempty"`
}

// SwitchResult is the rate search of the end-to-end run.
type SwitchResult struct {
	SustainedRate float64 `json:"sustained_rate"`
	// Best is the report of the step at SustainedRate.
	Best  *simulator.Report `json:"best_step,omitempty"`
	Steps []Step            `json:"steps"`
}

// Step is one measured rate.
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
	Tool    string   `json:"tool"`
	Command []string `json:"command"`
	Rate    float64  `json:"rate"`
	// Detail is the tool's own summary (latency where it reports one).
	Detail string `json:"detail,omitempty"`
}

// Run performs the whole end-to-end benchmark.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	res := &Result{Started: time.Now().UTC(), TargetP99: float64(o.TargetP99) / float64(time.Millisecond), Ratios: map[string]float64{}}
	res.Host = hostInfo(ctx, o)

	sw, err := startSwitch(ctx, o)
	if err != nil {
		return nil, err
	}
	defer sw.cleanup()
	o.Progress("switch started: ISO %s, Redis prefix %s, database %s", sw.app.ISOAddr(), sw.prefix, sw.dbName)

	cards, err := simulator.Seed(ctx, &simulator.DirectIssuer{Ledger: sw.app.Ledger, Issuing: sw.app.Issuing}, simulator.SeedOptions{
		Customers: o.Customers, Virtual: 2, DigitalFirst: 1, Funds: 100_000_000_000, PartnerFunds: 100_000_000_000_000, Concurrency: 8,
	})
	if err != nil {
		return nil, fmt.Errorf("seeding: %w", err)
	}
	o.Progress("seeded %d customers, %d cards", len(cards.Customers), len(cards.Cards))

	if err := searchRate(ctx, o, sw, cards, res); err != nil {
		return nil, err
	}
	// The switch is stopped before the tools run, so that its write-behind
	// does not compete with them for the two cores.
	if err := sw.stop(); err != nil {
		o.Progress("warning: switch shutdown: %v", err)
	}

	if !o.SkipRedis {
		r, err := redisReserveBench(ctx, o, sw, cards)
		if err != nil {
			return nil, fmt.Errorf("redis-benchmark: %w", err)
		}
		res.Redis = r
		o.Progress("redis-benchmark, reserve script: %.0f/s", r.Rate)
	}
	if !o.SkipPostgres {
		r, err := pgReserveBench(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("pgbench: %w", err)
		}
		res.Postgres = r
		o.Progress("pgbench, row-lock reservation: %.0f/s", r.Rate)
	}
	s := res.Switch.SustainedRate
	if res.Redis != nil && s > 0 {
		res.Ratios["redis_over_switch"] = res.Redis.Rate / s
	}
	if res.Postgres != nil && s > 0 {
		res.Ratios["switch_over_postgres"] = s / res.Postgres.Rate
	}
	if res.Redis != nil && res.Postgres != nil && res.Postgres.Rate > 0 {
		res.Ratios["redis_over_postgres"] = res.Redis.Rate / res.Postgres.Rate
	}
	return res, nil
}

// switchUnderTest is a switch started for the run on its own key prefix,
// database and keys directory.
type switchUnderTest struct {
	app     *app.App
	prefix  string
	dbName  string
	dbURL   string
	keysDir string
	o       Options
	stopped bool
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
	cfg := app.DefaultConfig()
	cfg.RedisURL, cfg.DatabaseURL, cfg.KeyPrefix = o.RedisURL, sw.dbURL, sw.prefix
	cfg.ISOAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.KeysDir = filepath.Join(sw.keysDir, "keys")
	cfg.AdminUser, cfg.AdminPassword = "bench", randomName("pw")
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		sw.cleanup()
		return nil, fmt.Errorf("starting switch: %w", err)
	}
	a.Start(context.WithoutCancel(ctx))
	sw.app = a
	return sw, nil
}

func (sw *switchUnderTest) stop() error {
	if sw.stopped || sw.app == nil {
		return nil
	}
	sw.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return sw.app.Shutdown(ctx)
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
