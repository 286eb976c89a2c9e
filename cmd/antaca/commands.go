package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/cmd/antaca/demo"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
)

var envOptions = []ff.Option{ff.WithEnvVarPrefix("ANTACA")}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("ANTACA_LOG_LEVEL %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json", "":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("ANTACA_LOG_FORMAT %q: want json or text", format)
}

func serveCommand() *ffcli.Command {
	fs := flag.NewFlagSet("antaca serve", flag.ContinueOnError)
	cfg := app.DefaultConfig()
	cfg.RegisterFlags(fs)
	return &ffcli.Command{
		Name:       "serve",
		ShortUsage: "antaca serve [flags]",
		ShortHelp:  "run the switch: ISO 8583 listener, REST API, write-behind",
		LongHelp: "Runs the switch. On start it migrates Postgres, rebuilds Redis from Postgres when\n" +
			"Redis lost its state, then serves ISO 8583 and HTTP (REST API, /healthz, /readyz,\n" +
			"/metrics). SIGTERM drains: stop accepting, answer in-flight requests, flush the\n" +
			"write-behind, exit 0. Every flag has an environment variable, named in its help.\n" +
			"Settings are checked before anything starts; exit status 2 names every wrong one.",
		FlagSet: fs,
		Options: envOptions,
		Exec: func(ctx context.Context, _ []string) error {
			if err := cfg.Validate(); err != nil {
				return &usageError{cmd: "antaca serve", msg: err.Error()}
			}
			log, err := newLogger(cfg.LogLevel, cfg.LogFormat)
			if err != nil {
				return err
			}
			a, err := app.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			a.Start(context.WithoutCancel(ctx))
			var runErr error
			select {
			case <-ctx.Done():
				log.Info("signal received; draining")
			case runErr = <-a.Err():
				log.Error("component failed; shutting down", "err", runErr)
			}
			sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
			defer cancel()
			if err := a.Shutdown(sctx); err != nil {
				return fmt.Errorf("draining: %w", err)
			}
			log.Info("drained; bye")
			return runErr
		},
	}
}

func migrateCommand() *ffcli.Command {
	fs := flag.NewFlagSet("antaca migrate", flag.ContinueOnError)
	url := fs.String("database-url", app.DefaultConfig().DatabaseURL, "PostgreSQL URL (env ANTACA_DATABASE_URL)")
	return &ffcli.Command{
		Name:       "migrate",
		ShortUsage: "antaca migrate [flags]",
		ShortHelp:  "apply the embedded Postgres migrations (serve does it too)",
		FlagSet:    fs,
		Options:    envOptions,
		Exec: func(ctx context.Context, _ []string) error {
			if err := pgstore.Migrate(ctx, *url); err != nil {
				return err
			}
			fmt.Println("migrations applied")
			return nil
		},
	}
}

func auditCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("antaca audit", flag.ContinueOnError)
	d := app.DefaultConfig()
	redisURL := fs.String("redis-url", d.RedisURL, "Redis URL (env ANTACA_REDIS_URL)")
	dbURL := fs.String("database-url", d.DatabaseURL, "PostgreSQL URL (env ANTACA_DATABASE_URL)")
	prefix := fs.String("key-prefix", d.KeyPrefix, "prefix of every Redis key (env ANTACA_KEY_PREFIX)")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the write-behind to drain first")
	idemTTL := fs.Duration("idempotency-ttl", d.IdempotencyTTL, "the switch's idempotency TTL: closed holds older than that are retired from Redis (env ANTACA_IDEMPOTENCY_TTL)")
	demoDir := fs.String("demo-dir", "", "audit the state of `antaca demo` in this directory instead (its in-memory Redis while it runs, else one rebuilt from its SQLite file)")
	return &ffcli.Command{
		Name:       "audit",
		ShortUsage: "antaca audit [flags]",
		ShortHelp:  "compare Redis with Postgres and check conservation of money; exit 1 on any difference",
		FlagSet:    fs,
		Options:    envOptions,
		Exec: func(ctx context.Context, _ []string) error {
			if *demoDir != "" {
				rep, what, err := demo.Audit(ctx, *demoDir, *wait)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "audited %s\n%s\n", what, rep.String())
				if !rep.OK() {
					return exitCode(1)
				}
				return nil
			}
			opts, err := redis.ParseURL(*redisURL)
			if err != nil {
				return fmt.Errorf("parsing redis url: %w", err)
			}
			rdb := redis.NewClient(opts)
			defer rdb.Close()
			pool, err := pgstore.OpenPool(ctx, *dbURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			keys := ledger.Keys{Prefix: *prefix}
			wb, err := pgstore.NewWriteBehind(pgstore.Options{Redis: rdb, Keys: keys, Pool: pool})
			if err != nil {
				return err
			}
			fctx, cancel := context.WithTimeout(ctx, *wait)
			err = wb.Flush(fctx)
			cancel()
			if err != nil {
				fmt.Fprintf(os.Stderr, "warning: write-behind not drained: %v\n", err)
			}
			rep, err := pgstore.Audit(ctx, rdb, keys, pgstore.Postgres(pool), pgstore.WithIdempotencyTTL(*idemTTL))
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, rep.String())
			if !rep.OK() {
				return exitCode(1)
			}
			return nil
		},
	}
}

// keysCommand creates the keys directory ahead of the first start (for a
// Kubernetes Secret, say), or checks that an existing one is complete.
func keysCommand() *ffcli.Command {
	fs := flag.NewFlagSet("antaca keys init", flag.ContinueOnError)
	dir := fs.String("keys-dir", app.DefaultConfig().KeysDir, "directory of the server's keys (env ANTACA_KEYS_DIR)")
	initCmd := &ffcli.Command{
		Name:       "init",
		ShortUsage: "antaca keys init [--keys-dir DIR]",
		ShortHelp:  "create the keys directory with fresh keys, or check an existing one",
		LongHelp: "Writes jwe.pem, pan.key, lookup.key, pin.key and zpk.key (0600) into an empty or\n" +
			"missing directory; an existing complete directory is only loaded and checked, never\n" +
			"overwritten. Back the directory up with the database: stored PANs need it.",
		FlagSet: fs,
		Options: envOptions,
		Exec: func(_ context.Context, _ []string) error {
			k, err := cardcrypto.LoadOrCreate(*dir)
			if err != nil {
				return err
			}
			fmt.Printf("keys ready in %s (data keys id %s, ZPK check value %s)\n", *dir, k.DataKeysID(), k.ZPKCheckValue())
			return nil
		},
	}
	return &ffcli.Command{
		Name:        "keys",
		ShortUsage:  "antaca keys <subcommand>",
		ShortHelp:   "the server's key material",
		FlagSet:     flag.NewFlagSet("antaca keys", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{initCmd},
		Exec:        func(context.Context, []string) error { return flag.ErrHelp },
	}
}

func isoCommand() *ffcli.Command {
	fs := flag.NewFlagSet("antaca iso spec", flag.ContinueOnError)
	profile := fs.String("profile", "cmf", "profile: "+strings.Join(iso.ProfileNames(), " or "))
	spec := &ffcli.Command{
		Name:       "spec",
		ShortUsage: "antaca iso spec [--profile cmf|iso87]",
		ShortHelp:  "print the profile's message spec as moov-io JSON",
		FlagSet:    fs,
		Exec: func(_ context.Context, _ []string) error {
			p, err := iso.ProfileByName(*profile)
			if err != nil {
				return err
			}
			b, err := iso.ExportSpec(p)
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(append(b, '\n'))
			return err
		},
	}
	return &ffcli.Command{
		Name:        "iso",
		ShortUsage:  "antaca iso <subcommand>",
		ShortHelp:   "ISO 8583 interface tools",
		FlagSet:     flag.NewFlagSet("antaca iso", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{spec},
		Exec:        func(context.Context, []string) error { return flag.ErrHelp },
	}
}
