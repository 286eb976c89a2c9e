package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger/pgstore"
)

// controlsCommand is `antaca controls replay`: try spend controls on a
// program's past traffic before switching them on (docs/controls.md).
func controlsCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("antaca controls replay", flag.ContinueOnError)
	d := app.DefaultConfig()
	dbURL := fs.String("database-url", d.DatabaseURL, "PostgreSQL URL (env ANTACA_DATABASE_URL)")
	program := fs.String("program", "", "the program id (required)")
	partner := fs.String("partner", "", "the program's partner (optional: program ids are unique)")
	file := fs.String("controls", "", "JSON file with the controls to try, as PUT .../controls takes them (required; - for stdin)")
	since := fs.Duration("since", 720*time.Hour, "how far back to replay")
	top := fs.Int("top", 10, "length of the top lists of cards, MCCs and countries")
	replay := &ffcli.Command{
		Name:       "replay",
		ShortUsage: "antaca controls replay --program P --controls new.json [--since 720h]",
		ShortHelp:  "what would these controls have declined, and approved, of a program's past traffic (writes nothing)",
		LongHelp: "Reads the journal in Postgres and prints, as JSON, what the controls would have declined\n" +
			"that was approved and approved that controls declined: counts, amounts, reasons, and the\n" +
			"top cards (ids), MCCs and countries. The same inputs give the same answer.",
		FlagSet: fs,
		Options: envOptions,
		Exec: func(ctx context.Context, _ []string) error {
			if *program == "" || *file == "" {
				return fmt.Errorf("--program and --controls are required: %w", flag.ErrHelp)
			}
			if *since <= 0 || *top < 1 {
				return errors.New("--since must be positive and --top at least 1")
			}
			var raw []byte
			var err error
			if *file == "-" {
				raw, err = io.ReadAll(os.Stdin)
			} else {
				raw, err = os.ReadFile(*file)
			}
			if err != nil {
				return fmt.Errorf("reading controls: %w", err)
			}
			var c authz.Controls
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&c); err != nil {
				return fmt.Errorf("reading controls: %w", err)
			}
			c.Normalize()
			if err := c.Validate(); err != nil {
				return err
			}
			pool, err := pgstore.OpenPool(ctx, *dbURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			now := time.Now()
			rep, err := pgstore.ReplayProgram(ctx, pool, *partner, *program, c, now.Add(-*since), now, *top)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		},
	}
	return &ffcli.Command{
		Name:        "controls",
		ShortUsage:  "antaca controls replay [flags]",
		ShortHelp:   "spend controls: replay them on past traffic",
		Subcommands: []*ffcli.Command{replay},
		Exec:        func(context.Context, []string) error { return flag.ErrHelp },
	}
}
