package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/antaca/antaca/ledger/ledgertest"
)

// TestReadyWithoutPostgres: while the switch's database refuses
// connections, /readyz stays 200 (the pod keeps serving the ISO network,
// which still gets answers), /readyz/postgres is 503 and ?verbose names
// the cause; both recover with the database.
func TestReadyWithoutPostgres(t *testing.T) {
	t.Parallel()
	h := startApp(t, nil)
	base := "http://" + h.App.HTTPAddr()
	get := func(path string) (int, map[string]any) {
		t.Helper()
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return res.StatusCode, body
	}
	// waitFor polls path until it answers want (a state change, not a timing).
	waitFor := func(path string, want int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if code, _ := get(path); code == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never answered %d", path, want)
			}
		}
	}
	if code, body := get("/readyz"); code != 200 || body["status"] != "ready" {
		t.Fatalf("/readyz at start: %d %v", code, body)
	}

	// Close the switch's database to connections (this database only).
	u, err := url.Parse(h.Config.DatabaseURL)
	must(t, err)
	dbName := strings.TrimPrefix(u.Path, "/")
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, ledgertest.AdminDatabaseURL())
	must(t, err)
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	allow := func(on bool) {
		t.Helper()
		_, err := admin.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{dbName}.Sanitize()+` WITH ALLOW_CONNECTIONS `+map[bool]string{true: "true", false: "false"}[on])
		must(t, err)
	}
	allow(false)
	t.Cleanup(func() { allow(true) }) // before the switch's own cleanup audits and drains
	_, err = admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, dbName)
	must(t, err)

	waitFor("/readyz/postgres", 503)
	if code, body := get("/readyz"); code != 200 || body["status"] != "ready" {
		t.Errorf("/readyz without Postgres: %d %v, want 200", code, body)
	}
	code, body := get("/readyz?verbose")
	checks, _ := body["checks"].(map[string]any)
	if code != 200 || checks["postgres"] != "postgres unreachable" || checks["redis"] != "ok" {
		t.Errorf("/readyz?verbose without Postgres: %d %v", code, body)
	}
	// The ISO listener answers meanwhile.
	c := h.client("cmf")
	echoCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	must(t, c.Echo(echoCtx))

	allow(true)
	waitFor("/readyz/postgres", 200)
	if code, body := get("/readyz?verbose"); code != 200 || body["checks"].(map[string]any)["postgres"] != "ok" {
		t.Errorf("/readyz?verbose after Postgres came back: %d %v", code, body)
	}
}
