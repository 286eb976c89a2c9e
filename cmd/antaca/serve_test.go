package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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

// TestServeDrainsOnSIGTERM runs the real binary, keeps authorizations in
// flight, sends SIGTERM, and checks every request was answered, the process
// exited 0, and the journal reached Postgres.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "antaca")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	rdb, prefix := ledgertest.MustRedis(t)
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
	_, err = pgstore.Rebuild(ctx, rdb, ledger.Keys{Prefix: prefix}, pool) // marks the empty state ready
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
	is := &issuing.Service{Ledger: l, Keys: keys}
	_, full, err := is.CreateVirtual(ctx, "drain", "cus_drain", "bal_drain")
	must(err)

	var stderr bytes.Buffer
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"ANTACA_REDIS_URL="+ledgertest.RedisURL(), "ANTACA_DATABASE_URL="+dbURL, "ANTACA_KEY_PREFIX="+prefix,
		"ANTACA_KEYS_DIR="+keysDir, "ANTACA_ISO_ADDR="+isoAddr, "ANTACA_HTTP_ADDR="+httpAddr, "ANTACA_LOG_LEVEL=warn")
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
	var sent, answered, approved atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 8 {
		conn, err := net.Dial("tcp", isoAddr)
		must(err)
		defer conn.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
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
					return // the switch closed the connection
				}
				sent.Add(1)
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				frame, err := framing.ReadFrame(conn)
				if err != nil {
					return
				}
				answered.Add(1)
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
	must(cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
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
	// Every request sent before the listener closed was answered; the one
	// each worker had in flight when the connection closed may have failed.
	if lost := sent.Load() - answered.Load(); lost > 8 {
		t.Fatalf("%d requests sent, %d answered", sent.Load(), answered.Load())
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
		cmd.Env = append(os.Environ(), "ANTACA_REDIS_URL="+ledgertest.RedisURL(), "ANTACA_DATABASE_URL="+dbURL, "ANTACA_KEY_PREFIX="+prefix)
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
