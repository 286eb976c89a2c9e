package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
)

// Command is `antaca bench`, writing to stdout and stderr; start starts
// the switch it measures.
func Command(stdout, stderr io.Writer, start StartSwitch) *ffcli.Command {
	fs := flag.NewFlagSet("antaca bench", flag.ContinueOnError)
	o := Options{Start: start}
	fs.StringVar(&o.RedisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis for the switch and redis-benchmark (a fresh key prefix is used and removed)")
	fs.StringVar(&o.AdminDatabaseURL, "admin-database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"Postgres database to create the run's fresh databases from")
	fs.StringVar(&o.OutDir, "out", "bench/results", "directory for bench.json and bench.html")
	fs.StringVar(&o.Profile, "profile", "auth", "load: auth (0100 purchases of amount 1 only) or mixed (the simulator's default mix)")
	fs.IntVar(&o.Links, "links", 8, "ISO connections")
	fs.IntVar(&o.Cards, "cards", 20, "virtual cards seeded, one customer and balance each")
	fs.StringVar(&o.AnswerAfter, "answer-after", "postgres", "the switch's mode: postgres (answer after the journal commit) or redis")
	fs.StringVar(&o.SwitchLog, "switch-log", "", "append the switch's warnings and errors to this file (default: discarded)")
	fs.StringVar(&o.DebugAddr, "debug-addr", "", "serve the switch's pprof on this address during the run, e.g. 127.0.0.1:6060")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Second, "how long the generator waits for an answer")
	fs.DurationVar(&o.TargetP99, "p99", 5*time.Millisecond, "latency objective an open-loop step is judged by")
	fs.DurationVar(&o.Warmup, "warmup", 3*time.Second, "unmeasured closed loop before the measurements")
	fs.DurationVar(&o.ClosedLoop, "closed", 15*time.Second, "length of the closed-loop maximum")
	fs.IntVar(&o.InFlight, "in-flight", 64, "messages outstanding in the closed loop")
	levels := fs.String("open-levels", "0.5,0.8", "open-loop rates as fractions of the closed-loop maximum")
	fs.DurationVar(&o.OpenStep, "open-step", 10*time.Second, "length of each open-loop rate")
	fs.Float64Var(&o.CPURate, "cpu-rate", 1000, "fixed rate of the CPU measurement (messages/s)")
	fs.DurationVar(&o.CPUDuration, "cpu-duration", 10*time.Second, "length of the CPU measurement")
	fs.BoolVar(&o.SkipCPU, "skip-cpu", false, "leave out the CPU measurement")
	fs.Float64Var(&o.Overload, "overload", 1.5, "overload rate as a multiple of the closed-loop maximum")
	fs.DurationVar(&o.OverloadDuration, "overload-duration", 10*time.Second, "length of the overload")
	fs.Float64Var(&o.Recovery, "recovery", 0.25, "rate after the overload, as a multiple of the maximum")
	fs.DurationVar(&o.RecoveryDuration, "recovery-duration", 5*time.Second, "length of the recovery")
	fs.IntVar(&o.RedisBenchRequests, "redis-requests", 100000, "redis-benchmark requests per script (twice as many pipelined)")
	fs.IntVar(&o.RedisBenchClients, "redis-clients", 50, "redis-benchmark connections")
	fs.IntVar(&o.RedisPipeline, "redis-pipeline", 16, "redis-benchmark -P of the pipelined reserve run")
	fs.BoolVar(&o.SkipRedis, "skip-redis-benchmark", false, "leave out redis-benchmark")
	fs.IntVar(&o.PGBenchSeconds, "pgbench-seconds", 10, "pgbench duration")
	fs.IntVar(&o.PGBenchClients, "pgbench-clients", 16, "pgbench connections")
	fs.BoolVar(&o.SkipPostgres, "skip-pgbench", false, "leave out pgbench")
	fs.IntVar(&o.WebhookEndpoints, "webhook-endpoints", 0, "webhook endpoints of the seeded partner subscribed to every event type, served by a receiver in the run (the switch sends its events meanwhile)")
	fs.StringVar(&o.Controls, "controls", "", `spend controls set on every card, JSON as PUT .../controls takes them, e.g. '{"limits":[{"interval":"day","amount":999999999999}]}'`)
	fs.DurationVar(&o.RemoteDecision, "remote-decision", 0, "start a local partner backend answering after this long (e.g. 5ms) and make it every program's remoteUrl")
	fs.DurationVar(&o.RemoteTimeout, "remote-timeout", 250*time.Millisecond, "the programs' decision timeout with --remote-decision")
	return &ffcli.Command{
		Name:       "bench",
		ShortUsage: "antaca bench [flags]",
		ShortHelp:  "end-to-end benchmark: closed-loop maximum, open loops, CPU, overload, audit, beside Redis and Postgres limits",
		LongHelp: "Starts a switch (fresh Redis key prefix and Postgres database), seeds it in process and\n" +
			"drives it over the simulator's ISO links: closed-loop maximum, open loops at fractions of\n" +
			"it, CPU per authorization per process at a fixed rate (generator in a child process),\n" +
			"overload and recovery, write-behind lag, then an audit and a count of lost approvals.\n" +
			"Then redis-benchmark runs the ledger's own scripts (EVALSHA) and pgbench a Postgres-only\n" +
			"row-lock reservation. Prints one table; writes bench.json and bench.html under --out.\n" +
			"bench/README.md explains how to read it.",
		FlagSet: fs,
		Options: []ff.Option{ff.WithEnvVarPrefix("ANTACA_BENCH")},
		Exec: func(ctx context.Context, _ []string) error {
			var err error
			if o.OpenLevels, err = parseLevels(*levels); err != nil {
				return err
			}
			o.Progress = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
			res, err := Run(ctx, o)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout)
			res.WriteTable(stdout)
			paths, err := res.Save(o.OutDir)
			if err != nil {
				return err
			}
			for _, p := range paths {
				fmt.Fprintf(stdout, "wrote %s\n", p)
			}
			return nil
		},
	}
}

// parseLevels reads "0.5,0.8".
func parseLevels(s string) ([]float64, error) {
	var out []float64
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f, err := strconv.ParseFloat(part, 64)
		if err != nil || f <= 0 {
			return nil, fmt.Errorf("--open-levels: %q is not a positive fraction", part)
		}
		out = append(out, f)
	}
	return out, nil
}
