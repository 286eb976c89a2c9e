package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/moov-io/iso8583"

	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/antaca/antaca/ledger/pgstore"
	"github.com/antaca/antaca/simulator/webhook"
)

// TestWebhookDeliveredAfterKill runs the real binary with a partner
// endpoint whose receiver refuses everything, answers a 0100 on ISO, kills
// the switch with SIGKILL the moment the answer arrives, starts it again
// with a receiver that accepts, and requires the authorization.approved
// event of that 0100, signed, exactly once: an event whose effect is in
// the journal is delivered even when the switch dies right after
// answering.
func TestWebhookDeliveredAfterKill(t *testing.T) {
	bin := buildBinary(t)
	rdb, prefix := ledgertest.MustRedis(t)
	dbURL := ledgertest.MustDatabase(t)
	keysDir := t.TempDir()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	keys, err := cardcrypto.LoadOrCreate(keysDir)
	must(err)
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix})
	must(err)
	must(pgstore.Migrate(ctx, dbURL))
	pool, err := pgxpool.New(ctx, dbURL)
	must(err)
	defer pool.Close()
	_, err = pgstore.Rebuild(ctx, rdb, ledger.Keys{Prefix: prefix}, pgstore.Postgres(pool))
	must(err)
	must(l.CreatePartner(ctx, ledger.Partner{ID: "kill", Name: "Kill", BIN: "52990002", Currency: "EUR", FundingModel: ledger.FundingCredit}))
	must(l.CreateCustomer(ctx, ledger.Customer{ID: "cus_kill", PartnerID: "kill"}))
	must(l.SetKYC(ctx, "kill", "cus_kill", "VERIFIED"))
	must(l.CreateUserBalance(ctx, "kill", "cus_kill", "bal_kill", "EUR"))
	must(l.CreatePartnerBalance(ctx, "kill", "pbl_kill", ledger.FundingCredit, "EUR", 0))
	_, err = l.ReloadPartnerBalance(ctx, "kill", "pbl_kill", 1_000_000, "")
	must(err)
	_, _, err = l.ReloadUserBalance(ctx, "kill", "bal_kill", 100_000, "")
	must(err)
	_, full, err := (&issuing.Service{Store: l, Keys: keys}).CreateVirtual(ctx, "kill", "cus_kill", "bal_kill")
	must(err)

	// The receiver: refuses until accept, then keeps what it verified.
	var accept atomic.Bool
	var secret atomic.Value
	secret.Store("")
	var mu sync.Mutex
	var got []webhook.Event
	var refused atomic.Int64
	rc := &webhook.Receiver{Secret: func() string { return secret.Load().(string) }, Handle: func(ev webhook.Event, _ []byte) error {
		if !accept.Load() {
			refused.Add(1)
			return fmt.Errorf("not yet")
		}
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		return nil
	}}
	hook := httptest.NewServer(rc)
	defer hook.Close()

	isoAddr, httpAddr := freePort(t), freePort(t)
	env := append(os.Environ(),
		"ANTACA_REDIS_URL="+ledgertest.RedisURL(), "ANTACA_DATABASE_URL="+dbURL, "ANTACA_KEY_PREFIX="+prefix,
		"ANTACA_KEYS_DIR="+keysDir, "ANTACA_ISO_ADDR="+isoAddr, "ANTACA_HTTP_ADDR="+httpAddr, "ANTACA_LOG_LEVEL=warn",
		"ANTACA_ISO_DEADLINE=10s", "ANTACA_WEBHOOK_ALLOW_PRIVATE=true",
		"ANTACA_ADMIN_USER=root", "ANTACA_ADMIN_PASSWORD=kill-test-password")
	start := func() (*exec.Cmd, *bytes.Buffer) {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "serve")
		cmd.Env, cmd.Stderr = env, &stderr
		must(cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		waitReady(t, "http://"+httpAddr+"/readyz")
		return cmd, &stderr
	}
	first, _ := start()

	// The endpoint, over the admin API.
	call := func(method, path, token string, body any, want int) []byte {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, "http://"+httpAddr+path, rd)
		must(err)
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		must(err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return b
	}
	var login struct{ Token string }
	must(json.Unmarshal(call("POST", "/admin/login", "", map[string]string{"username": "root", "password": "kill-test-password"}, 200), &login))
	var ep struct{ ID, Secret string }
	must(json.Unmarshal(call("POST", "/admin/partners/kill/webhooks", login.Token, map[string]any{"url": hook.URL, "events": []string{"authorization.approved"}}, 201), &ep))
	secret.Store(ep.Secret)

	// One 0100, answered, then SIGKILL at once.
	profile, err := iso.ProfileByName("cmf")
	must(err)
	conn, err := net.Dial("tcp", isoAddr)
	must(err)
	m := iso8583.NewMessage(profile.Spec)
	m.MTI("0100")
	for id, v := range map[int]string{2: full.CardNo, 3: "000000", 4: "000000004321", 11: "000001",
		7: time.Now().UTC().Format("0102150405"), 32: "123456", 37: "000000000001", 49: "978"} {
		must(m.Field(id, v))
	}
	packed, err := m.Pack()
	must(err)
	framing := iso.Framing{}
	must(framing.WriteFrame(conn, packed))
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	frame, err := framing.ReadFrame(conn)
	must(err)
	must(first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	conn.Close()
	resp := iso8583.NewMessage(profile.Spec)
	must(resp.Unpack(frame))
	if code, _ := resp.GetString(39); code != "0000" {
		t.Fatalf("the 0100 answered %s", code)
	}
	mu.Lock()
	if len(got) != 0 {
		t.Fatalf("delivered before the kill: %+v", got)
	}
	mu.Unlock()

	// Start again; the receiver now accepts.
	accept.Store(true)
	_, stderr := start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event after the restart (%d refused before the kill)\n%s", refused.Load(), stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a second delivery of the same event would arrive by now
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Type != "authorization.approved" || got[0].PartnerID != "kill" {
		t.Fatalf("events after the restart: %+v", got)
	}
	var data struct {
		CardID string `json:"card_id"`
		Amount int64  `json:"amount"`
		Status string `json:"status"`
	}
	must(json.Unmarshal(got[0].Data, &data))
	if data.CardID != full.ID || data.Amount != 4321 || data.Status != "pending" {
		t.Fatalf("event data %s", got[0].Data)
	}
	if strings.Contains(string(got[0].Data), full.CardNo) {
		t.Fatal("the event carries the PAN")
	}
}
