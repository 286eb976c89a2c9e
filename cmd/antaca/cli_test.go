package main

import (
	"bytes"
	"context"
	"runtime/debug"
	"sort"
	"strings"
	"testing"
)

// runCLI runs the command line in process and returns its exit status,
// stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUnknownCommandExits2(t *testing.T) {
	tests := []struct {
		args []string
		cmd  string
	}{
		{[]string{"foo"}, "antaca"},
		{[]string{"sim", "foo"}, "antaca sim"},
		{[]string{"ca", "foo"}, "antaca ca"},
		{[]string{"keys", "foo"}, "antaca keys"},
		{[]string{"iso", "foo"}, "antaca iso"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			want := tt.cmd + ": unknown command \"foo\"\nrun '" + tt.cmd + " --help' for the commands\n"
			if code != 2 || errOut != want || out != "" {
				t.Fatalf("exit %d, stderr %q, stdout %q; want exit 2, stderr %q, no stdout", code, errOut, out, want)
			}
		})
	}
}

// TestMissingCommandExits2: a group without its subcommand prints its
// usage on stderr and fails, so that a truncated command line in CI or in
// Kubernetes args does not pass for success.
func TestMissingCommandExits2(t *testing.T) {
	for _, args := range [][]string{{}, {"sim"}, {"ca"}, {"keys"}} {
		code, out, errOut := runCLI(t, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "USAGE") || !strings.Contains(errOut, "COMMANDS") {
			t.Errorf("antaca %v: exit %d, stdout %q, stderr %q; want exit 2 and the usage on stderr", args, code, out, errOut)
		}
	}
}

func TestBadFlagPrintsErrorAndOneHint(t *testing.T) {
	tests := []struct {
		args []string
		cmd  string
		msg  string
	}{
		{[]string{"serve", "--bogus"}, "antaca serve", "flag provided but not defined: -bogus"},
		{[]string{"serve", "--max-amount", "lots"}, "antaca serve", `invalid value "lots" for flag -max-amount`},
		{[]string{"sim", "load", "--bogus"}, "antaca sim load", "flag provided but not defined: -bogus"},
		{[]string{"ca", "sign", "--days"}, "antaca ca sign", "flag needs an argument: -days"},
		{[]string{"--bogus"}, "antaca", "flag provided but not defined: -bogus"},
		{[]string{"migrate", "extra"}, "antaca migrate", `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
			if code != 2 || out != "" || len(lines) != 2 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and two lines on stderr", code, out, errOut)
			}
			if !strings.HasPrefix(lines[0], tt.cmd+": ") || !strings.Contains(lines[0], tt.msg) {
				t.Errorf("first line %q, want %q naming %q", lines[0], tt.cmd+": ...", tt.msg)
			}
			if want := "run '" + tt.cmd + " --help' for the flags"; lines[1] != want {
				t.Errorf("hint %q, want %q", lines[1], want)
			}
		})
	}
}

func TestBadEnvironmentValueExits2(t *testing.T) {
	t.Setenv("ANTACA_ISO_DEADLINE", "300") // a duration without its unit
	code, _, errOut := runCLI(t, "serve")
	if code != 2 || !strings.Contains(errOut, "ANTACA_ISO_DEADLINE") || !strings.Contains(errOut, "run 'antaca serve --help' for the flags") {
		t.Fatalf("exit %d, stderr %q; want exit 2 naming ANTACA_ISO_DEADLINE and the hint", code, errOut)
	}
}

// TestServeRefusesBadSettings: serve checks its settings before it
// touches a store, and names every wrong one.
func TestServeRefusesBadSettings(t *testing.T) {
	t.Setenv("ANTACA_ADMIN_USER", "admin")
	t.Setenv("ANTACA_ADMIN_PASSWORD", "secret")
	code, _, errOut := runCLI(t, "serve", "--max-amount", "-5", "--keys-dir", t.TempDir()+"/never-created")
	for _, want := range []string{
		"antaca serve: invalid settings:",
		"--max-amount (env ANTACA_MAX_AMOUNT): got -5, want 0 or more (0 means no limit)",
		"--admin-password (env ANTACA_ADMIN_PASSWORD): too short (6 characters): the API requires at least 12",
		"run 'antaca serve --help' for the flags",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if code != 2 || strings.Contains(errOut, "secret") {
		t.Errorf("exit %d (want 2); stderr must not show the password:\n%s", code, errOut)
	}
}

// TestHelpFitsTheTerminal: every command's --help goes to stdout, exits
// 0, and no line is wider than 100 columns.
func TestHelpFitsTheTerminal(t *testing.T) {
	c := newCLI(&bytes.Buffer{}, &bytes.Buffer{})
	c.prepare(c.root, c.root.Name)
	var paths []string
	for _, p := range c.paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	if len(paths) < 15 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, p := range paths {
		args := append(strings.Fields(p)[1:], "--help")
		code, out, errOut := runCLI(t, args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "USAGE") {
			t.Errorf("%s --help: exit %d, stderr %q, stdout %q", p, code, errOut, out)
			continue
		}
		for i, line := range strings.Split(out, "\n") {
			if len(line) > 100 {
				t.Errorf("%s --help line %d has %d columns: %q", p, i+1, len(line), line)
			}
		}
	}
	// serve's flags: name and environment variable on one line, the
	// description and default below.
	_, out, _ := runCLI(t, "serve", "--help")
	want := "  --iso-idle-timeout duration  (env ANTACA_ISO_IDLE_TIMEOUT)\n" +
		"      silence after which the switch sends an 0800 echo (default 1m)\n"
	if !strings.Contains(out, want) {
		t.Errorf("serve --help lacks\n%s\ngot:\n%s", want, out)
	}
	if _, helpOut, _ := runCLI(t, "help", "serve"); helpOut != out {
		t.Errorf("antaca help serve differs from antaca serve --help")
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errOut := runCLI(t, args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "antaca ") || !strings.Contains(out, " built with go1.") {
			t.Errorf("antaca %v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/antaca/antaca", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"},
		},
	}
	want := "antaca v1.2.3 revision 0123456789abcdef0123456789abcdef01234567 (modified) of 2026-01-02T03:04:05Z built with go1.26.8 for linux/arm64"
	if got := formatVersion(bi); got != want {
		t.Errorf("formatVersion:\n got %q\nwant %q", got, want)
	}
	bi.Main.Version, bi.Settings = "", nil
	if got := formatVersion(bi); !strings.HasPrefix(got, "antaca (devel) revision unknown built with go1.26.8 for ") {
		t.Errorf("formatVersion without VCS data: %q", got)
	}
}
