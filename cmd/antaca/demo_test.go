package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/antaca/antaca/simulator"
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// demoProc is a running `antaca demo`.
type demoProc struct {
	cmd      *exec.Cmd
	out      *syncBuffer
	iso, api string
	done     chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	bannerISO  = regexp.MustCompile(`(?m)^  ISO 8583   (\S+)`)
	bannerREST = regexp.MustCompile(`(?m)^  REST API   (http://\S+)`)
)

// startDemo runs the binary's demo on dir and waits for its banner.
func startDemo(t *testing.T, bin, dir string, env []string) *demoProc {
	t.Helper()
	cmd := exec.Command(bin, "demo", "--demo-dir", dir, "--load", "0")
	cmd.Env = env
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &demoProc{cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		seen := false
		for sc.Scan() {
			d.out.Write(append(sc.Bytes(), '\n'))
			if !seen && strings.HasPrefix(sc.Text(), "Ctrl-C stops the demo") {
				seen = true
				close(ready)
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		_ = pw.Close()
		d.done <- err
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-d.done
		}
	})
	select {
	case <-ready:
	case err := <-d.done:
		t.Fatalf("antaca demo exited before it was ready: %v\nstdout:\n%s\nstderr:\n%s", err, d.out, stderr)
	case <-time.After(90 * time.Second):
		t.Fatalf("antaca demo not ready in 90s\nstdout:\n%s\nstderr:\n%s", d.out, stderr)
	}
	iso, api := bannerISO.FindStringSubmatch(d.out.String()), bannerREST.FindStringSubmatch(d.out.String())
	if iso == nil || api == nil {
		t.Fatalf("banner without addresses:\n%s", d.out)
	}
	d.iso, d.api = iso[1], api[1]
	return d
}

// stop sends Ctrl-C and wants a clean exit.
func (d *demoProc) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("antaca demo after Ctrl-C: %v\n%s", err, d.out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("antaca demo did not stop on Ctrl-C\n%s", d.out)
	}
	if !strings.Contains(d.out.String(), "stopped; the state is in") {
		t.Fatalf("no clean stop reported:\n%s", d.out)
	}
}

// call makes a REST call and decodes the answer into out.
func (d *demoProc) call(t *testing.T, method, path, token string, body any, want int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.api+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// authorize sends one 0100 on card and returns DE39.
func (d *demoProc) authorize(t *testing.T, c simulator.Card, amount int64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := simulator.Connect(ctx, simulator.NetworkConfig{Addr: d.iso})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	msg, err := n.Build(&simulator.Txn{MTI: "0100", PAN: c.PAN, Expiry: c.Expiry, Amount: amount})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := n.Send(ctx, msg)
	if err != nil {
		t.Fatalf("sending 0100: %v", err)
	}
	a, err := simulator.ParseAnswer(resp)
	if err != nil {
		t.Fatal(err)
	}
	return a.Code
}

type demoMoney struct {
	UserAvailable, UserHeld                           int64
	PartnerAvailable, PartnerReserved, PartnerSettled int64
}

func (d *demoProc) money(t *testing.T, token string, c simulator.Card, p simulator.Partner) demoMoney {
	t.Helper()
	var ub struct{ Available, Held int64 }
	d.call(t, "GET", "/admin/balances/"+c.BalanceID, token, nil, 200, &ub)
	var pb struct{ Available, Reserved, Settled int64 }
	d.call(t, "GET", "/admin/partners/"+p.ID+"/balances/"+p.BalanceID, token, nil, 200, &pb)
	return demoMoney{ub.Available, ub.Held, pb.Available, pb.Reserved, pb.Settled}
}

func runAudit(t *testing.T, bin, dir string, env []string) string {
	t.Helper()
	cmd := exec.Command(bin, "audit", "--demo-dir", dir)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit OK") {
		t.Fatalf("antaca audit --demo-dir: %v\n%s", err, out)
	}
	return string(out)
}

// TestDemo runs `antaca demo` as a user would, with Redis and PostgreSQL
// settings pointing at closed ports: it must touch neither. An
// authorization is approved, the card is locked over REST, the next one
// declines 2009; the money moves exactly by the amount approved; after a
// restart (which rebuilds the in-memory Redis from SQLite) the balances
// and the lock are the same; the audit is clean while it runs and after.
func TestDemo(t *testing.T) {
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "demo")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ANTACA_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"ANTACA_REDIS_URL=redis://"+closedPort(t)+"/0",
		"ANTACA_DATABASE_URL=postgres://postgres@"+closedPort(t)+"/antaca?sslmode=disable&connect_timeout=2",
		"ANTACA_ISO_ADDR=127.0.0.1:0", "ANTACA_HTTP_ADDR=127.0.0.1:0",
		"ANTACA_ADMIN_USER=ops", "ANTACA_ADMIN_PASSWORD=demo-test-password",
	)

	d := startDemo(t, bin, dir, env)
	out := d.out.String()
	for _, want := range []string{"first start: seeded partner", "user ops, password demo-test-password", "/panel/", "/metrics",
		" sim run ", "/lock", "/transactions", "audit --demo-dir"} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	f, err := simulator.LoadCardsFile(filepath.Join(dir, "cards.json"))
	if err != nil {
		t.Fatal(err)
	}
	cards := simulator.ActiveCards(f)
	sort.Slice(cards, func(i, j int) bool { return cards[i].Name < cards[j].Name })
	var card simulator.Card
	for _, c := range cards {
		if c.Type == simulator.TypeVirtual {
			card = c
			break
		}
	}
	if card.ID == "" || !strings.Contains(out, "/admin/cards/"+card.ID+"/lock") {
		t.Fatalf("no virtual card, or the banner names another (%q):\n%s", card.ID, out)
	}
	p := f.Partners[0]
	var login struct{ Token string }
	d.call(t, "POST", "/admin/login", "", map[string]string{"username": "ops", "password": "demo-test-password"}, 200, &login)

	before := d.money(t, login.Token, card, p)
	if code := d.authorize(t, card, 1234); code != "0000" {
		t.Fatalf("first 0100: DE39 %s, want 0000", code)
	}
	after := d.money(t, login.Token, card, p)
	want := before
	want.UserAvailable -= 1234
	want.UserHeld += 1234
	want.PartnerAvailable -= 1234
	want.PartnerReserved += 1234
	if after != want {
		t.Fatalf("money after the approval: %+v, want %+v", after, want)
	}

	d.call(t, "POST", "/admin/cards/"+card.ID+"/lock", login.Token, map[string]int{"reason": 2}, 200, nil)
	if code := d.authorize(t, card, 1234); code != "2009" {
		t.Fatalf("0100 on the locked card: DE39 %s, want 2009", code)
	}
	if m := d.money(t, login.Token, card, p); m != after {
		t.Fatalf("a decline moved money: %+v, before %+v", m, after)
	}
	var txns struct {
		Data []struct{ Status, ActionCode string }
	}
	d.call(t, "GET", "/admin/cards/"+card.ID+"/transactions", login.Token, nil, 200, &txns)
	if len(txns.Data) != 2 || txns.Data[0].Status != "declined" || txns.Data[1].Status != "pending" {
		t.Fatalf("transactions = %+v, want the decline then the pending authorization", txns.Data)
	}
	if a := runAudit(t, bin, dir, env); !strings.Contains(a, "running demo") {
		t.Errorf("audit of the running demo did not audit its redis:\n%s", a)
	}
	d.stop(t)
	if a := runAudit(t, bin, dir, env); !strings.Contains(a, "rebuilt from") {
		t.Errorf("audit of the stopped demo:\n%s", a)
	}

	d = startDemo(t, bin, dir, env)
	if out := d.out.String(); strings.Contains(out, "first start") || !strings.Contains(out, "rebuilt from the journal at this start") {
		t.Errorf("second start banner:\n%s", out)
	}
	d.call(t, "POST", "/admin/login", "", map[string]string{"username": "ops", "password": "demo-test-password"}, 200, &login)
	if m := d.money(t, login.Token, card, p); m != after {
		t.Fatalf("money after the restart: %+v, want %+v", m, after)
	}
	if code := d.authorize(t, card, 1234); code != "2009" {
		t.Fatalf("0100 on the locked card after the restart: DE39 %s, want 2009", code)
	}
	if code := d.authorize(t, cards[len(cards)-1], 500); code != "0000" {
		t.Fatalf("0100 on another card after the restart: DE39 %s, want 0000", code)
	}
	d.stop(t)
	runAudit(t, bin, dir, env)
}

// TestDemoListensOnLoopbackOnly: a demo asked to listen on every
// interface refuses, with exit status 2.
func TestDemoListensOnLoopbackOnly(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"demo", "--demo-dir", t.TempDir(), "--iso-addr", "0.0.0.0:8583"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "loopback only") {
		t.Fatalf("exit %d, stderr %q; want %d and the loopback rule", code, stderr.String(), exitUsage)
	}
	for _, bad := range []string{"fast", "-3/s"} {
		stderr.Reset()
		if code := run(context.Background(), []string{"demo", "--demo-dir", t.TempDir(), "--load", bad}, &stdout, &stderr); code != exitUsage {
			t.Errorf("--load %s: exit %d (%s), want %d", bad, code, stderr.String(), exitUsage)
		}
	}
	if got, err := parseRate("20/s"); err != nil || got != 20 {
		t.Errorf("parseRate(20/s) = %v, %v", got, err)
	}
}

// TestServeRefusesWithoutItsStores: `antaca serve` never falls back to the
// demo's embedded stores. Without Postgres, or without Redis, it fails
// with the error naming the store.
func TestServeRefusesWithoutItsStores(t *testing.T) {
	dbURL := ledgertest.MustDatabase(t)
	for _, tt := range []struct {
		name, redis, db, want string
	}{
		{"no postgres", ledgertest.RedisURL(), "postgres://postgres@" + closedPort(t) + "/antaca?sslmode=disable&connect_timeout=2", "antaca: migrating: "},
		{"no redis", "redis://" + closedPort(t) + "/0", dbURL, "antaca: connecting to redis: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("ANTACA_REDIS_URL", tt.redis)
			t.Setenv("ANTACA_DATABASE_URL", tt.db)
			t.Setenv("ANTACA_KEYS_DIR", t.TempDir())
			t.Setenv("ANTACA_ISO_ADDR", "127.0.0.1:0")
			t.Setenv("ANTACA_HTTP_ADDR", "127.0.0.1:0")
			t.Setenv("ANTACA_KEY_PREFIX", ledgertest.UniqueName("t"))
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"serve"}, &stdout, &stderr)
			if code != exitFail || !strings.HasPrefix(stderr.String(), tt.want) {
				t.Fatalf("serve without its store: exit %d, stderr %q; want %d and %q", code, stderr.String(), exitFail, tt.want)
			}
		})
	}
}

// TestDocsReadmeDemoSettings: the README's table of `antaca demo` names
// every flag of the command and its environment variable, and no other.
func TestDocsReadmeDemoSettings(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "| `antaca demo` flag | env | default | meaning |\n|---|---|---|---|\n")
	if !ok {
		t.Fatal("README.md has no table of antaca demo's flags")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	backticked := regexp.MustCompile("`([^`]*)`")
	documented := map[string]bool{}
	for _, row := range strings.Split(table, "\n") {
		cols := strings.Split(row, " | ")
		if len(cols) < 4 {
			t.Fatalf("table row %q", row)
		}
		for _, m := range backticked.FindAllStringSubmatch(cols[0], -1) {
			flag := strings.TrimPrefix(m[1], "--")
			env := "ANTACA_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
			if !strings.Contains(cols[1], "`"+env+"`") {
				t.Errorf("README: --%s without %s", flag, env)
			}
			documented[flag] = true
		}
	}
	demoCommand(io.Discard, io.Discard).FlagSet.VisitAll(func(f *flag.Flag) {
		if !documented[f.Name] {
			t.Errorf("README's demo table lacks --%s", f.Name)
		}
		delete(documented, f.Name)
	})
	for f := range documented {
		t.Errorf("README's demo table lists --%s, which is no flag of antaca demo", f)
	}
}
