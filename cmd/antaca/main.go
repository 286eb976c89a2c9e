// Command antaca is Antaca's one binary: the switch (serve), its database
// (migrate), reconciliation (audit), the ISO spec export, the partner CA,
// and the bundled network simulator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/peterbourgon/ff/v3/ffcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintln(os.Stderr, "antaca:", err)
		os.Exit(1)
	}
}

// exitCode ends the process with a code and no further message (the
// command printed what it had to say).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(ctx context.Context, args []string) error {
	root := &ffcli.Command{
		Name:       "antaca",
		ShortUsage: "antaca <command> [flags]",
		ShortHelp:  "Antaca: card management system and ISO 8583 authorization switch",
		FlagSet:    flag.NewFlagSet("antaca", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{
			serveCommand(), migrateCommand(), auditCommand(), keysCommand(), isoCommand(), caCommand(),
		},
		Exec: func(context.Context, []string) error { return flag.ErrHelp },
	}
	root.Subcommands = append(root.Subcommands, extraCommands()...)
	return root.ParseAndRun(ctx, args)
}
