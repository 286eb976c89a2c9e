package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/antaca/antaca/ledger/pgstore"
	"github.com/moov-io/iso8583"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startRedis runs a redis-server of the test's own on a free port: the
// test pauses its writes, which must not stall other tests.
func startRedis(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for range 250 {
		if rdb.Ping(context.Background()).Err() == nil {
			return "redis://" + addr + "/0"
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("redis-server did not start")
	return ""
}

// drainWorker is one raw ISO connection with one request in flight at a
// time, and the history of its requests.
type drainWorker struct {
	mu   sync.Mutex
	reqs []drainRequest
	end  time.Time // when the worker stopped
	why  string    // why it stopped
}

type drainRequest struct {
	written  time.Time // when the whole frame was in the socket
	answered time.Time // zero when no answer came
}

// pending reports how many requests the worker wrote and whether the last
// one still waits for its answer.
func (w *drainWorker) pending() (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.reqs)
	return n, n > 0 && w.reqs[n-1].answered.IsZero()
}

// TestServeDrainsOnSIGTERM runs the real binary, keeps authorizations in
// flight, sends SIGTERM, and checks every request written before the
// signal was answered, the process exited 0, and the journal reached
// Postgres.
//
// So that requests are surely in flight at the signal, Redis writes are
// paused first (CLIENT PAUSE WRITE): every worker then waits on a request
// the switch has read (its in-flight gauge says 8) and cannot answer. The
// signal goes out during the pause and Redis resumes once the switch is
// draining: a switch that drops in-flight requests fails every time, and
// no request sits unread in a socket at the signal, which the switch may
// legitimately leave unanswered.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	redisURL := startRedis(t)
	ropts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	prefix := ledgertest.UniqueName("t")
	dbURL := ledgertest.MustDatabase(t)
	keysDir := t.TempDir()
	isoAddr, httpAddr := freePort(t), freePort(t)

	// Seed a program and a card through the same packages serve uses.
	ctx := context.Background()
	keys, err := cardcrypto.LoadOrCreate(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(pgstore.Migrate(ctx, dbURL))
	pool, err := pgxpool.New(ctx, dbURL)
	must(err)
	defer pool.Close()
	_, err = pgstore.Rebuild(ctx, rdb, ledger.Keys{Prefix: prefix}, pgstore.Postgres(pool)) // marks the empty state ready
	must(err)
	must(l.CreatePartner(ctx, ledger.Partner{ID: "drain", Name: "Drain", BIN: "52990001", Currency: "EUR", FundingModel: ledger.FundingCredit}))
	must(l.CreatePartnerBalance(ctx, "drain", "pbl_drain", ledger.FundingCredit, "EUR", 0))
	_, err = l.ReloadPartnerBalance(ctx, "drain", "pbl_drain", 10_000_000, "")
	must(err)
	must(l.CreateCustomer(ctx, ledger.Customer{ID: "cus_drain", PartnerID: "drain"}))
	must(l.SetKYC(ctx, "drain", "cus_drain", "VERIFIED"))
	must(l.CreateUserBalance(ctx, "drain", "cus_drain", "bal_drain", "EUR"))
	_, _, err = l.ReloadUserBalance(ctx, "drain", "bal_drain", 10_000_000, "")
	must(err)
	is := &issuing.Service{Store: l, Keys: keys}
	_, full, err := is.CreateVirtual(ctx, "drain", "cus_drain", "bal_drain")
	must(err)

	var stderr bytes.Buffer
	cmd := exec.Command(bin, "serve")
	// The deadline outlasts the pause: the requests held by it are
	// approved, not timed out.
	cmd.Env = append(os.Environ(),
		"ANTACA_REDIS_URL="+redisURL, "ANTACA_DATABASE_URL="+dbURL, "ANTACA_KEY_PREFIX="+prefix,
		"ANTACA_KEYS_DIR="+keysDir, "ANTACA_ISO_ADDR="+isoAddr, "ANTACA_HTTP_ADDR="+httpAddr, "ANTACA_LOG_LEVEL=warn",
		"ANTACA_ISO_DEADLINE=15s")
	cmd.Stderr = &stderr
	must(cmd.Start())
	defer func() { _ = cmd.Process.Kill() }()
	waitReady(t, "http://"+httpAddr+"/readyz")

	// Each worker is a raw connection with one request in flight, read
	// strictly in order: an answer the server wrote is read before the
	// end of the stream, so "answered" counts exactly what the switch sent.
	profile, err := iso.ProfileByName("cmf")
	must(err)
	framing := iso.Framing{}
	const nWorkers = 8
	var approved atomic.Int64
	workers := make([]*drainWorker, nWorkers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range nWorkers {
		conn, err := net.Dial("tcp", isoAddr)
		must(err)
		defer conn.Close()
		wk := &drainWorker{}
		workers[w] = wk
		wg.Add(1)
		go func() {
			defer wg.Done()
			why := "stopped"
			defer func() {
				wk.mu.Lock()
				wk.end, wk.why = time.Now(), why
				wk.mu.Unlock()
			}()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				m := iso8583.NewMessage(profile.Spec)
				m.MTI("0100")
				for id, v := range map[int]string{2: full.CardNo, 3: "000000", 4: "000000000001", 11: fmt.Sprintf("%06d", i%999999+1),
					7: time.Now().UTC().Format("0102150405"), 32: "123456", 37: fmt.Sprintf("%04d%08d", w, i), 49: "978"} {
					_ = m.Field(id, v)
				}
				packed, err := m.Pack()
				if err != nil {
					t.Error(err)
					return
				}
				if err := framing.WriteFrame(conn, packed); err != nil {
					why = fmt.Sprintf("writing: %v", err) // the switch closed the connection
					return
				}
				wk.mu.Lock()
				wk.reqs = append(wk.reqs, drainRequest{written: time.Now()})
				wk.mu.Unlock()
				_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				frame, err := framing.ReadFrame(conn)
				if err != nil {
					why = fmt.Sprintf("reading: %v", err)
					return
				}
				wk.mu.Lock()
				wk.reqs[len(wk.reqs)-1].answered = time.Now()
				wk.mu.Unlock()
				resp := iso8583.NewMessage(profile.Spec)
				if err := resp.Unpack(frame); err != nil {
					t.Error(err)
					return
				}
				if code, _ := resp.GetString(39); code == "0000" {
					approved.Add(1)
				}
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)

	// Hold every worker's request in the switch: pause Redis writes, wait
	// until the switch has read a request from each connection, then make
	// sure nothing moves for a while (no answer was already on its way).
	ctl := redis.NewClient(ropts)
	defer ctl.Close()
	must(ctl.Do(ctx, "CLIENT", "PAUSE", "20000", "WRITE").Err())
	unpaused := false
	unpause := func() error {
		if unpaused {
			return nil
		}
		unpaused = true
		return ctl.Do(ctx, "CLIENT", "UNPAUSE").Err()
	}
	defer func() { _ = unpause() }()
	holdBy := time.Now().Add(10 * time.Second)
	for {
		if time.Now().After(holdBy) {
			t.Fatalf("the switch never held a request of every connection; in flight %v", inflight(t, httpAddr))
		}
		if inflight(t, httpAddr) != nWorkers {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		var counts [nWorkers]int
		all := true
		for i, wk := range workers {
			n, waiting := wk.pending()
			counts[i], all = n, all && waiting
		}
		time.Sleep(100 * time.Millisecond)
		for i, wk := range workers {
			n, waiting := wk.pending()
			all = all && waiting && n == counts[i]
		}
		if all && inflight(t, httpAddr) == nWorkers {
			break
		}
	}

	signalled := time.Now()
	must(cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Resume Redis once the switch drains, so the held requests are
	// answered during the drain, not before it.
	waitDraining(t, "http://"+httpAddr+"/readyz")
	time.Sleep(200 * time.Millisecond)
	must(unpause())
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM\n%s", stderr.String())
	}
	close(stop)
	wg.Wait()
	// Every request written before the signal was answered; only one
	// written after it may have gone unanswered. Each worker had exactly
	// one request in flight at the signal.
	var sent, answered, inFlight int
	for i, wk := range workers {
		for j, r := range wk.reqs {
			sent++
			if !r.answered.IsZero() {
				answered++
			}
			if r.written.Before(signalled) {
				if r.answered.IsZero() {
					t.Errorf("worker %d: request %d written %v before SIGTERM was never answered (worker stopped %v after: %s)",
						i, j, signalled.Sub(r.written), wk.end.Sub(signalled), wk.why)
				} else if r.answered.After(signalled) {
					inFlight++
				}
			}
		}
		if !wk.end.After(signalled) {
			t.Errorf("worker %d stopped before SIGTERM: %s", i, wk.why)
		}
	}
	t.Logf("%d requests sent, %d answered, %d in flight at SIGTERM, %d approved", sent, answered, inFlight, approved.Load())
	if inFlight != nWorkers {
		t.Errorf("%d requests in flight at SIGTERM, want one per worker (%d)", inFlight, nWorkers)
	}
	if t.Failed() {
		t.FailNow()
	}
	if approved.Load() == 0 {
		t.Fatal("no authorization approved before the drain")
	}
	b, err := l.UserBalance(ctx, "drain", "bal_drain")
	must(err)
	if b.Held != approved.Load() {
		t.Fatalf("held %d, approved %d: an approval without a hold or a hold without an answer", b.Held, approved.Load())
	}
	// The drain flushed the journal: Postgres holds the same balance.
	var held int64
	must(pool.QueryRow(ctx, "SELECT held FROM user_balances WHERE id = 'bal_drain'").Scan(&held))
	if held != b.Held {
		t.Fatalf("postgres held %d, redis %d: the write-behind was not flushed", held, b.Held)
	}

	// antaca audit: clean now; a balance changed behind the ledger's back
	// is named and the command exits 1.
	audit := func() (string, int) {
		cmd := exec.Command(bin, "audit", "--wait", "5s")
		cmd.Env = append(os.Environ(), "ANTACA_REDIS_URL="+redisURL, "ANTACA_DATABASE_URL="+dbURL, "ANTACA_KEY_PREFIX="+prefix)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := audit(); code != 0 {
		t.Fatalf("audit after drain: exit %d\n%s", code, out)
	}
	must(rdb.HIncrBy(ctx, ledger.Keys{Prefix: prefix}.Row("drain", "user_balances", "bal_drain"), "available", 1).Err())
	out, code := audit()
	if code != 1 || !strings.Contains(out, "bal_drain") {
		t.Fatalf("audit of a tampered balance: exit %d, want 1 naming bal_drain\n%s", code, out)
	}
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", url)
}

// inflight reads the switch's ISO in-flight gauge from /metrics (-1 when
// it cannot).
func inflight(t *testing.T, httpAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "antaca_iso_inflight_requests "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return -1
			}
			return int(f)
		}
	}
	return -1
}

// waitDraining waits until readiness reports the drain.
func waitDraining(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "draining") {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never reported the drain", url)
}
