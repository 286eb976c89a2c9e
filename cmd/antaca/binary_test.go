package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/antaca/antaca/ledger/ledgertest"
)

var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
	out  []byte
}

// TestMain removes the binary the tests built. It also lets this test
// binary play `antaca sim` when `antaca bench` starts it as its load
// generator child (`antaca.test sim load ...`), as the antaca binary does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "sim" {
		// The bench runs the simulator's commands as child processes of
		// this binary, and stops `sim webhooks` with SIGTERM, as main does.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildBinary builds the antaca binary once for every test that runs it,
// stamped with the VCS revision where Go can read it (-buildvcs=auto: the
// environment may turn stamping off).
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "antaca-bin-")
		if built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "antaca")
		built.out, built.err = exec.Command("go", "build", "-buildvcs=auto", "-o", built.bin, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("building: %v\n%s", built.err, built.out)
	}
	return built.bin
}

// TestBinaryExitStatus runs the built binary: a typo in a command exits 2,
// and version names the revision it was built from.
func TestBinaryExitStatus(t *testing.T) {
	bin := buildBinary(t)
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "foo")
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("antaca foo: %v, want exit status 2", err)
	}
	if want := "antaca: unknown command \"foo\"\nrun 'antaca --help' for the commands\n"; stderr.String() != want {
		t.Errorf("antaca foo stderr %q, want %q", stderr.String(), want)
	}

	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("antaca version: %v", err)
	}
	line := string(out)
	if !strings.HasPrefix(line, "antaca ") || !strings.Contains(line, " built with go1.") {
		t.Fatalf("antaca version: %q", line)
	}
	// Go stamps the revision when the module sits in a git clone (.git a
	// directory); a git worktree (.git a file) is not recognised.
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Logf("not in git: %q", line)
		return
	}
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !fi.IsDir() {
		if !strings.Contains(line, "revision unknown") {
			t.Errorf("worktree build: %q, want revision unknown", line)
		}
		return
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "revision " + strings.TrimSpace(string(head)); !strings.Contains(line, want) {
		t.Errorf("antaca version %q lacks %q", line, want)
	}
}

// TestServeSaysWhereThingsAre: the first start says that it created the
// keys and where, that there is no admin and how to make one, and where
// each listener is; a later start with a bootstrap admin says the keys
// were loaded and the admin exists, and never shows its password.
func TestServeSaysWhereThingsAre(t *testing.T) {
	bin := buildBinary(t)
	_, prefix := ledgertest.MustRedis(t)
	dbURL := ledgertest.MustDatabase(t)
	keysDir := filepath.Join(t.TempDir(), "keys")
	base := []string{
		"ANTACA_REDIS_URL=" + ledgertest.RedisURL(), "ANTACA_DATABASE_URL=" + dbURL, "ANTACA_KEY_PREFIX=" + prefix,
		"ANTACA_KEYS_DIR=" + keysDir, "ANTACA_ISO_ADDR=127.0.0.1:0", "ANTACA_HTTP_ADDR=127.0.0.1:0", "ANTACA_LOG_FORMAT=json",
	}

	first := startupLines(t, bin, base)
	want := func(lines map[string]map[string]any, msg string) map[string]any {
		t.Helper()
		l, ok := lines[msg]
		if !ok {
			t.Fatalf("no %q line among %v", msg, keysOf(lines))
		}
		return l
	}
	if l := want(first, "keys created: back this directory up with the database (stored PANs need it)"); l["keys_dir"] != keysDir {
		t.Errorf("keys_dir %v, want %s", l["keys_dir"], keysDir)
	}
	want(first, "no admin yet: set ANTACA_ADMIN_USER and ANTACA_ADMIN_PASSWORD (at least 12 characters) and restart to create one for the /admin API")
	iso := want(first, "ISO 8583 listening")
	if addr, _ := iso["addr"].(string); !strings.HasPrefix(addr, "127.0.0.1:") || iso["profile"] != "cmf" || iso["tls"] != false {
		t.Errorf("ISO line %v", iso)
	}
	httpLine := want(first, "HTTP listening: REST API, /healthz, /readyz")
	url, _ := httpLine["url"].(string)
	if addr, _ := httpLine["addr"].(string); url != "http://"+addr {
		t.Errorf("HTTP line %v: url is not http:// + addr", httpLine)
	}
	if m := want(first, "metrics"); m["url"] != url+"/metrics" {
		t.Errorf("metrics line %v, want url %s/metrics", m, url)
	}

	const password = "correct horse battery"
	second := startupLines(t, bin, append(base, "ANTACA_ADMIN_USER=root", "ANTACA_ADMIN_PASSWORD="+password))
	if l := want(second, "keys loaded"); l["keys_dir"] != keysDir {
		t.Errorf("keys_dir %v, want %s", l["keys_dir"], keysDir)
	}
	if l := want(second, "admins present"); l["admins"] != float64(1) || l["bootstrap_admin"] != "root" {
		t.Errorf("admin line %v, want 1 admin, bootstrap root", l)
	}
	if _, ok := second["no admin yet: set ANTACA_ADMIN_USER and ANTACA_ADMIN_PASSWORD (at least 12 characters) and restart to create one for the /admin API"]; ok {
		t.Error("second start still says there is no admin")
	}
}

// startupLines starts serve with env, collects its JSON log lines by
// message up to "antaca serving", stops it with SIGTERM and checks it
// exited 0 without ever logging a secret of env.
func startupLines(t *testing.T, bin string, env []string) map[string]map[string]any {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	lines := map[string]map[string]any{}
	served := make(chan struct{}) // closed at "antaca serving"
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		seen := false
		for sc.Scan() {
			all.Write(append(sc.Bytes(), '\n'))
			var l map[string]any
			if seen || json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			msg, _ := l["msg"].(string)
			lines[msg] = l
			if msg == "antaca serving" {
				seen = true
				close(served)
			}
		}
	}()
	stop := func() error {
		err := cmd.Wait()
		_ = pw.Close()
		<-readDone
		return err
	}
	select {
	case <-served:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = stop()
		t.Fatalf("no \"antaca serving\" line:\n%s", all.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := stop(); err != nil {
		t.Fatalf("serve: %v\n%s", err, all.String())
	}
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == "ANTACA_ADMIN_PASSWORD" && strings.Contains(all.String(), v) {
			t.Errorf("the log shows the admin password")
		}
	}
	return lines
}

func keysOf(m map[string]map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
