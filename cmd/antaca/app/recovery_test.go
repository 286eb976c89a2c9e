package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// TestRebuildAfterRedisWipe: the project's Redis keys are wiped, the
// switch restarts, rebuilds Redis from Postgres, and the audit is clean
// with the same balances as before.
func TestRebuildAfterRedisWipe(t *testing.T) {
	h := startApp(t, nil)
	ctx := context.Background()
	p := h.newProgram(ledger.FundingDeposit, 100_000, 5_000)
	c := h.client("cmf")
	card := p.virtualCard(p.balance)
	auth := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 1_200})
	if got := field(t, auth.Resp, 39); got != "0000" {
		t.Fatalf("auth: %s", got)
	}
	h.send(c, txn{MTI: "0200", PAN: card.PAN, Amount: 300})
	second := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 250})
	if got := field(t, second.Resp, 39); got != "0000" {
		t.Fatalf("second auth: %s", got)
	}
	before, deposit := p.user(p.balance), p.deposit()

	h.shutdown(t) // drains the write-behind
	// The switch closed its own client: wipe through a fresh one.
	opts, err := redis.ParseURL(h.Config.RedisURL)
	must(t, err)
	wipe := redis.NewClient(opts)
	defer wipe.Close()
	ledgertest.DeleteKeys(t, ctx, wipe, h.Config.KeyPrefix+":*")

	h2 := startWith(t, h.Config)
	if n := h2.App.Rebuilds(); n != 1 {
		t.Fatalf("the restarted switch rebuilt Redis %d times, want 1", n)
	}
	p.h = h2
	if after := p.user(p.balance); after != before {
		t.Fatalf("user balance after rebuild %+v, before %+v", after, before)
	}
	if d := p.deposit(); d != deposit {
		t.Fatalf("deposit after rebuild %+v, before %+v", d, deposit)
	}
	h2.audit("after rebuild")
	// The rebuilt state keeps working: the hold can be reversed, the
	// duplicate detection still knows the original.
	c2 := h2.client("cmf")
	rev := h2.send(c2, txn{MTI: "0400", PAN: card.PAN, Amount: 1_200, RRN: auth.RRN, Original: auth})
	if got := field(t, rev.Resp, 39); got != "4000" {
		t.Fatalf("reversal after rebuild: %s", got)
	}
	if u := p.user(p.balance); u.Held != 250 || u.Available != 4_450 {
		t.Fatalf("after reversal: %+v", u)
	}
	// A reversal without DE90 finds its original by RRN and card: the
	// rebuild restored that reference too.
	rev2 := h2.send(c2, txn{MTI: "0400", PAN: card.PAN, Amount: 250, RRN: second.RRN})
	if got := field(t, rev2.Resp, 39); got != "4000" {
		t.Fatalf("reversal by RRN after rebuild: %s", got)
	}
	if u := p.user(p.balance); u.Held != 0 || u.Available != 4_700 {
		t.Fatalf("after both reversals: %+v", u)
	}
	p.checkMoney()
}

// privateRedis runs a redis-server of the test's own on a free port, so the
// test can stop and restart it.
type privateRedis struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startPrivateRedis(t *testing.T, port int) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
	}
	r := &privateRedis{t: t, port: port}
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	must(t, r.cmd.Start())
	t.Cleanup(r.stop)
	rdb := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer rdb.Close()
	for range 100 {
		if rdb.Ping(context.Background()).Err() == nil {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("private redis did not start")
	return nil
}

func (r *privateRedis) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *privateRedis) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// TestRedisDownAnswersIssuerUnavailable: with Redis stopped every request
// is answered within the deadline with 9112; when Redis comes back (empty,
// as after a restart without persistence) the switch rebuilds it from
// Postgres by itself and approves again.
func TestRedisDownAnswersIssuerUnavailable(t *testing.T) {
	r := startPrivateRedis(t, 0)
	h := startApp(t, func(c *app.Config) {
		c.RedisURL = "redis://" + r.addr() + "/0"
		c.ISODeadline = 200 * time.Millisecond
	})
	ctx := context.Background()
	p := h.newProgram(ledger.FundingCredit, 100_000, 5_000)
	c := h.client("cmf")
	card := p.virtualCard(p.balance)
	if got := field(t, h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100}).Resp, 39); got != "0000" {
		t.Fatalf("before: %s", got)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	must(t, h.App.FlushJournal(fctx))
	rebuilds := h.App.Rebuilds()

	r.stop()
	for i := range 10 {
		start := time.Now()
		s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100})
		elapsed := time.Since(start)
		if got := field(t, s.Resp, 39); got != "9112" {
			t.Fatalf("request %d with redis down: DE39 = %s, want 9112", i, got)
		}
		// 9112 proves the deadline path; the bound only catches a switch
		// that waits for Redis's own timeouts (seconds), with room for a
		// loaded machine.
		if elapsed > h.Config.ISODeadline+time.Second {
			t.Fatalf("request %d answered after %v, deadline %v", i, elapsed, h.Config.ISODeadline)
		}
	}

	// Empty, as after a restart without persistence. Its cleanup runs
	// before the harness's, so the switch is shut down below, while it is
	// up.
	startPrivateRedis(t, r.port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100})
		got := field(t, s.Resp, 39)
		if got == "0000" {
			break
		}
		if got != "9112" {
			t.Fatalf("while recovering: DE39 = %s, want 9112 or 0000", got)
		}
		if time.Now().After(deadline) {
			t.Fatal("switch did not recover after redis returned")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := h.App.Rebuilds() - rebuilds; n != 1 {
		t.Fatalf("the switch rebuilt Redis %d times across the outage, want 1", n)
	}
	if u := p.user(p.balance); u.Held != 200 || u.Available != 4_800 {
		t.Fatalf("after recovery: %+v, want two holds of 100", u)
	}
	p.checkMoney()
	// The hold taken after the recovery reaches Postgres, and the rebuilt
	// Redis agrees with Postgres.
	h.audit("after recovery")
	h.shutdown(t)
}

// TestWipeUnderARunningSwitch: Redis loses the switch's state while it
// runs. An authorization for a card whose BIN the switch has not routed
// yet answers 9112, never a decline; REST requests answer 503 NOT_READY,
// never a wrong 404, until the switch has rebuilt; then the same data.
func TestWipeUnderARunningSwitch(t *testing.T) {
	const user, password = "root", "correct horse battery staple"
	h := startApp(t, func(c *app.Config) { c.AdminUser, c.AdminPassword = user, password })
	p := h.newProgram(ledger.FundingDeposit, 100_000, 5_000)
	hc := &http.Client{Timeout: 10 * time.Second}
	base := "http://" + h.App.HTTPAddr()
	call := func(method, path, token string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			must(t, err)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, base+path, rd)
		must(t, err)
		if rd != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		must(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	status, login := call("POST", "/admin/login", "", map[string]string{"username": user, "password": password})
	if status != 200 {
		t.Fatalf("login: %d %v", status, login)
	}
	token, _ := login["token"].(string)
	card := p.virtualCard(p.balance) // never authorized: its BIN is not cached
	c := h.client("cmf")
	h.audit("before the wipe") // Postgres holds everything now

	rebuilds := h.App.Rebuilds()
	opts, err := redis.ParseURL(h.Config.RedisURL)
	must(t, err)
	wipe := redis.NewClient(opts)
	defer wipe.Close()
	ledgertest.DeleteKeys(t, context.Background(), wipe, h.Config.KeyPrefix+":*")

	// 9112 while the state is missing; 0000 if the rebuild already ran.
	want := int64(5_000)
	switch code := field(t, h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100}).Resp, 39); code {
	case "9112":
	case "0000":
		want -= 100
		t.Log("the rebuild ran before the authorization")
	default:
		t.Fatalf("authorization right after the wipe: %s, want 9112 (or 0000 after the rebuild)", code)
	}

	refused := 0
	for deadline := time.Now().Add(15 * time.Second); ; {
		status, body := call("GET", "/admin/balances/"+p.balance, token, nil)
		if status == 200 {
			if body["available"] != float64(want) {
				t.Fatalf("balance after the rebuild: %v", body)
			}
			break
		}
		if status != 503 || body["code"] != "NOT_READY" {
			t.Fatalf("during the rebuild: %d %v, want 503 NOT_READY", status, body)
		}
		refused++
		if time.Now().After(deadline) {
			t.Fatalf("still not ready after 15 s (%d refusals)", refused)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%d requests refused with NOT_READY before the rebuild finished", refused)
	if n := h.App.Rebuilds(); n != rebuilds+1 {
		t.Fatalf("rebuilds: %d, want %d", n, rebuilds+1)
	}
}
