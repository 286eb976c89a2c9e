package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
)

// Command is `antaca bench`.
func Command() *ffcli.Command {
	return CommandWithOutput(os.Stdout, os.Stderr)
}

// CommandWithOutput is Command writing to stdout and stderr (tests).
func CommandWithOutput(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("antaca bench", flag.ContinueOnError)
	var o Options
	fs.StringVar(&o.RedisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis for the switch and redis-benchmark (a fresh key prefix is used and removed)")
	fs.StringVar(&o.AdminDatabaseURL, "admin-database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"Postgres database to create the run's fresh databases from")
	fs.StringVar(&o.OutDir, "out", "bench/results", "directory for bench.json and bench.html")
	fs.DurationVar(&o.TargetP99, "p99", 5*time.Millisecond, "latency objective of a sustained rate")
	fs.DurationVar(&o.Step, "step", 6*time.Second, "length of one measured rate")
	fs.DurationVar(&o.Budget, "budget", 150*time.Second, "time for the whole rate search")
	fs.Float64Var(&o.StartRate, "start-rate", 1000, "first rate tried (messages/s)")
	fs.Float64Var(&o.MaxRate, "max-rate", 50000, "highest rate tried")
	fs.IntVar(&o.Links, "links", 4, "ISO connections")
	fs.IntVar(&o.Customers, "customers", 50, "customers (balances) seeded, three cards each")
	fs.IntVar(&o.RedisBenchRequests, "redis-requests", 150000, "redis-benchmark requests")
	fs.IntVar(&o.RedisBenchClients, "redis-clients", 50, "redis-benchmark connections")
	fs.BoolVar(&o.SkipRedis, "skip-redis-benchmark", false, "leave out redis-benchmark")
	fs.IntVar(&o.PGBenchSeconds, "pgbench-seconds", 10, "pgbench duration")
	fs.IntVar(&o.PGBenchClients, "pgbench-clients", 16, "pgbench connections")
	fs.BoolVar(&o.SkipPostgres, "skip-pgbench", false, "leave out pgbench")
	return &ffcli.Command{
		Name:       "bench",
		ShortUsage: "antaca bench [flags]",
		ShortHelp:  "end-to-end benchmark: sustained rate at p99 <= 5 ms, beside Redis and Postgres limits",
		LongHelp: "Starts a switch (fresh Redis key prefix and Postgres database), seeds it in process,\n" +
			"and searches the highest open-model rate it sustains with p99 within --p99. Then it\n" +
			"measures redis-benchmark running the ledger's own reserve script (EVALSHA) and pgbench\n" +
			"running a Postgres-only row-lock reservation. Prints one table; writes bench.json and\n" +
			"bench.html under --out. bench/README.md explains how to read it.",
		FlagSet: fs,
		Options: []ff.Option{ff.WithEnvVarPrefix("ANTACA_BENCH")},
		Exec: func(ctx context.Context, _ []string) error {
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
