package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/antaca/antaca/cmd/antaca/demo"
)

func demoCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("antaca demo", flag.ContinueOnError)
	var o demo.Options
	fs.StringVar(&o.Dir, "demo-dir", "antaca-demo", "where the demo keeps its state: the SQLite journal, keys, cards file (env ANTACA_DEMO_DIR)")
	load := fs.String("load", "20/s", "background load through the simulator, messages per second (0: none) (env ANTACA_LOAD)")
	fs.StringVar(&o.ISOAddr, "iso-addr", "127.0.0.1:8583", "ISO 8583 listen address, loopback only (env ANTACA_ISO_ADDR)")
	fs.StringVar(&o.HTTPAddr, "http-addr", "127.0.0.1:8080", "REST, panel and metrics listen address, loopback only (env ANTACA_HTTP_ADDR)")
	fs.StringVar(&o.KeysDir, "keys-dir", "", "directory of the server's keys (default: keys in --demo-dir) (env ANTACA_KEYS_DIR)")
	fs.StringVar(&o.AdminUser, "admin-user", "admin", "the admin created on the first start (env ANTACA_ADMIN_USER)")
	fs.StringVar(&o.AdminPassword, "admin-password", "", "its password (default: one made on the first start, kept in --demo-dir) (env ANTACA_ADMIN_PASSWORD)")
	fs.StringVar(&o.LogLevel, "log-level", "warn", "the switch's log on stderr: debug, info, warn or error (env ANTACA_LOG_LEVEL)")
	return &ffcli.Command{
		Name:       "demo",
		ShortUsage: "antaca demo [flags]",
		ShortHelp:  "run the whole system on this machine with nothing installed (embedded Redis and SQLite)",
		LongHelp: "Runs the switch, REST API, panel, simulator and bureau in one process on embedded\n" +
			"stores: the ledger's Lua scripts in an in-process Redis, the journal and rows in a\n" +
			"SQLite file in --demo-dir. Listens on 127.0.0.1 only. The first start seeds a program\n" +
			"(partner, customers, cards); every start rebuilds the in-memory Redis from the\n" +
			"journal. Prints the addresses, an admin login and three commands to try. Ctrl-C\n" +
			"drains and flushes the journal. Redis and PostgreSQL settings are not used.",
		FlagSet: fs,
		Options: envOptions,
		Exec: func(ctx context.Context, _ []string) error {
			rate, err := parseRate(*load)
			if err != nil {
				return &usageError{cmd: "antaca demo", msg: err.Error()}
			}
			o.Load, o.Self, o.Stdout, o.Stderr = rate, selfCommand(), stdout, stderr
			err = demo.Run(ctx, o)
			var se *demo.SettingsError
			if errors.As(err, &se) {
				return &usageError{cmd: "antaca demo", msg: se.Error()}
			}
			return err
		},
	}
}

// parseRate reads "20/s" or "20".
func parseRate(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "/s")), 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("--load %q: want messages per second, such as 20/s (0: none)", s)
	}
	return v, nil
}

// selfCommand is how a person on this machine calls this binary again:
// its path as typed, or `go run ./cmd/antaca` under go run.
func selfCommand() string {
	arg0 := os.Args[0]
	switch {
	case strings.Contains(arg0, "go-build"):
		return "go run ./cmd/antaca"
	case strings.ContainsRune(arg0, filepath.Separator):
		return arg0
	}
	return "antaca"
}
