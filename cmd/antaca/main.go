// Command antaca is Antaca's one binary: the switch (serve), its database
// (migrate), reconciliation (audit), the ISO spec export, the partner CA,
// and the bundled network simulator.
//
// Exit status: 0 on success and for --help, 1 when a command fails, 2 when
// the command line or the settings are wrong (unknown command, bad flag,
// invalid setting), with the error and one hint line on stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/peterbourgon/ff/v3/ffcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the process's exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return newCLI(stdout, stderr).execute(ctx, args)
}

// newCLI builds the command tree, writing to stdout and stderr.
func newCLI(stdout, stderr io.Writer) *cli {
	rootFS := flag.NewFlagSet("antaca", flag.ContinueOnError)
	version := rootFS.Bool("version", false, "print the version and exit")
	own := []*ffcli.Command{
		serveCommand(), demoCommand(stdout, stderr), migrateCommand(), auditCommand(stdout), keysCommand(), isoCommand(), caCommand(),
		controlsCommand(stdout),
	}
	for _, c := range own {
		refuseArgs(c, "antaca "+c.Name)
	}
	root := &ffcli.Command{
		Name:       "antaca",
		ShortUsage: "antaca <command> [flags]",
		ShortHelp:  "card management system and ISO 8583 authorization switch",
		FlagSet:    rootFS,
		Subcommands: append(append(own, extraCommands(stdout, stderr)...),
			versionCommand(stdout)),
		Exec: func(context.Context, []string) error {
			if *version {
				_, err := fmt.Fprintln(stdout, versionLine())
				return err
			}
			return flag.ErrHelp
		},
	}
	return &cli{root: root, paths: map[*ffcli.Command]string{}, stdout: stdout, stderr: stderr}
}
