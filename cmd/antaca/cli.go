package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// Exit statuses: 0 success (or --help), 1 a command failed, 2 the command
// line or the settings are wrong (as the flag package and most tools do).
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError is a mistake in the command line or the settings: printed as
// "<command>: <message>" and one hint line, exit status 2.
type usageError struct {
	cmd  string // "antaca serve"
	msg  string
	hint string // "" for the default "run '<cmd> --help' for ..."
}

func (e *usageError) Error() string { return e.cmd + ": " + e.msg }

// exitCode ends the process with a code and no further message (the
// command printed what it had to say).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// cli is one run of the command tree.
type cli struct {
	root   *ffcli.Command
	paths  map[*ffcli.Command]string // command -> "antaca ca init"
	stdout io.Writer
	stderr io.Writer
}

// execute parses args, runs the selected command and returns the exit
// status, having printed what the user needs: the usage for --help (on
// stdout), the error and one hint line for a mistake (on stderr).
func (c *cli) execute(ctx context.Context, args []string) int {
	c.prepare(c.root, c.root.Name)
	if len(args) > 0 && args[0] == "help" { // `antaca help sim load` = `antaca sim load --help`
		args = append(append([]string{}, args[1:]...), "--help")
	}
	if err := c.root.Parse(args); err != nil {
		cmd := c.deepestParsed()
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, usageText(cmd, c.paths[cmd]))
			return exitOK
		}
		msg := strings.TrimPrefix(err.Error(), "error parsing commandline arguments: ")
		return c.report(&usageError{cmd: c.paths[cmd], msg: msg})
	}
	err := c.root.Run(ctx)
	if errors.Is(err, flag.ErrHelp) { // a command asked for its usage: the command line lacked something
		cmd := c.deepestParsed()
		fmt.Fprint(c.stderr, usageText(cmd, c.paths[cmd]))
		return exitUsage
	}
	return c.report(err)
}

// report prints err as its kind asks and returns the exit status.
func (c *cli) report(err error) int {
	var ue *usageError
	var ec exitCode
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "%s: %s\n", ue.cmd, ue.msg)
		hint := ue.hint
		if hint == "" {
			hint = fmt.Sprintf("run '%s --help' for the flags", ue.cmd)
		}
		fmt.Fprintln(c.stderr, hint)
		return exitUsage
	case errors.As(err, &ec):
		return int(ec)
	}
	fmt.Fprintln(c.stderr, "antaca:", err)
	return exitFail
}

// prepare walks the tree once before parsing: every command gets a path
// name, the compact usage, a flag set that prints nothing by itself (the
// cli prints errors and usage), and every command with subcommands runs
// only them: no argument or an unknown one is a usage error, not a
// silent success.
func (c *cli) prepare(cmd *ffcli.Command, path string) {
	c.paths[cmd] = path
	if cmd.FlagSet == nil {
		cmd.FlagSet = flag.NewFlagSet(path, flag.ContinueOnError)
	}
	cmd.FlagSet.SetOutput(io.Discard)
	cmd.UsageFunc = func(cmd *ffcli.Command) string { return usageText(cmd, c.paths[cmd]) }
	if len(cmd.Subcommands) == 0 {
		return
	}
	own := cmd.Exec
	cmd.Exec = func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return &usageError{cmd: path, msg: fmt.Sprintf("unknown command %q", args[0]),
				hint: fmt.Sprintf("run '%s --help' for the commands", path)}
		}
		if own == nil {
			return flag.ErrHelp
		}
		return own(ctx, args) // flag.ErrHelp, or what the group's own flags did (antaca --version)
	}
	for _, sub := range cmd.Subcommands {
		c.prepare(sub, path+" "+sub.Name)
	}
}

// deepestParsed is the command whose flags were parsed last: the selected
// command, or the one whose flags were wrong.
func (c *cli) deepestParsed() *ffcli.Command {
	cmd := c.root
	for {
		next := (*ffcli.Command)(nil)
		for _, sub := range cmd.Subcommands {
			if sub.FlagSet != nil && sub.FlagSet.Parsed() {
				next = sub
				break
			}
		}
		if next == nil {
			return cmd
		}
		cmd = next
	}
}

// noArgs makes a command that takes no positional argument refuse one
// (a stray word is most often a flag typed without its dashes).
func noArgs(path string, exec func(context.Context, []string) error) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return &usageError{cmd: path, msg: fmt.Sprintf("unexpected argument %q (flags start with --)", args[0])}
		}
		return exec(ctx, args)
	}
}

// refuseArgs applies noArgs to every command of the tree without
// subcommands (the switch's own commands take none).
func refuseArgs(cmd *ffcli.Command, path string) {
	if len(cmd.Subcommands) == 0 {
		if cmd.Exec != nil {
			cmd.Exec = noArgs(path, cmd.Exec)
		}
		return
	}
	for _, sub := range cmd.Subcommands {
		refuseArgs(sub, path+" "+sub.Name)
	}
}

// helpWidth is the widest line usageText writes where it can break.
const helpWidth = 90

// usageText is a command's help: what it does, how to call it, its
// subcommands, and its flags, each flag on its own line with its
// description wrapped below it (no column padded to the longest flag).
func usageText(cmd *ffcli.Command, path string) string {
	var b strings.Builder
	if cmd.ShortHelp != "" {
		for _, l := range wrap(path+": "+cmd.ShortHelp, helpWidth) {
			b.WriteString(l + "\n")
		}
		b.WriteString("\n")
	}
	usage := cmd.ShortUsage
	if usage == "" {
		usage = path
	}
	fmt.Fprintf(&b, "USAGE\n  %s\n\n", usage)
	if cmd.LongHelp != "" {
		fmt.Fprintf(&b, "%s\n\n", strings.TrimRight(cmd.LongHelp, "\n"))
	}
	if len(cmd.Subcommands) > 0 {
		b.WriteString("COMMANDS\n")
		w := 0
		for _, sub := range cmd.Subcommands {
			w = max(w, len(sub.Name))
		}
		for _, sub := range cmd.Subcommands {
			indent := 2 + w + 2
			lines := wrap(sub.ShortHelp, helpWidth-indent)
			for i, l := range lines {
				name := ""
				if i == 0 {
					name = sub.Name
				}
				fmt.Fprintf(&b, "  %-*s  %s\n", w, name, l)
			}
		}
		b.WriteString("\n")
	}
	var flags []*flag.Flag
	if cmd.FlagSet != nil {
		cmd.FlagSet.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	}
	if len(flags) > 0 {
		b.WriteString("FLAGS\n")
		for _, f := range flags {
			b.WriteString(flagHelp(f))
		}
		b.WriteString("\n")
	}
	if len(cmd.Subcommands) > 0 {
		fmt.Fprintf(&b, "Run '%s <command> --help' for a command's flags.\n", path)
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// flagHelp is one flag's entry: "--name type" and its environment
// variable on one line, the description and the default wrapped below.
func flagHelp(f *flag.Flag) string {
	typ, desc := flag.UnquoteUsage(f)
	head := "  --" + f.Name
	if typ != "" {
		head += " " + typ
	}
	if i := strings.LastIndex(desc, " (env "); i >= 0 && strings.HasSuffix(desc, ")") {
		head += "  " + strings.TrimSuffix(desc[i+1:], ")") + ")"
		desc = desc[:i]
	}
	if !isZeroDefault(f.DefValue) {
		def := f.DefValue
		if typ == "duration" { // 168h0m0s reads better as 168h
			if strings.HasSuffix(def, "m0s") {
				def = strings.TrimSuffix(def, "0s")
			}
			if strings.HasSuffix(def, "h0m") {
				def = strings.TrimSuffix(def, "0m")
			}
		}
		desc += " (default " + def + ")"
	}
	var b strings.Builder
	b.WriteString(head + "\n")
	for _, l := range wrap(desc, helpWidth-6) {
		b.WriteString("      " + l + "\n")
	}
	return b.String()
}

func isZeroDefault(v string) bool {
	switch v {
	case "", "0", "false", "0s":
		return true
	}
	return false
}

// wrap breaks text into lines of at most width characters at spaces; a
// word longer than width (a URL) stands on a line of its own.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
