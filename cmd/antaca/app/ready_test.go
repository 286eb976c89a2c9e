package app

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/antaca/antaca/ledger/pgstore"
)

// TestReadyz: /readyz follows what the ISO listener needs (not draining,
// recovery done, Redis reachable) and ignores Postgres, which has its own
// /readyz/postgres; ?verbose shows every check.
func TestReadyz(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	redisUp, _ := ledgertest.MustRedis(t)
	redisDown := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = redisDown.Close() })
	pgUp, err := pgxpool.New(ctx, ledgertest.MustDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pgUp.Close)
	pgDown, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pgDown.Close)

	type answer struct {
		Status string            `json:"status"`
		Reason string            `json:"reason"`
		Checks map[string]string `json:"checks"`
	}
	get := func(a *App, path string) (int, answer) {
		t.Helper()
		mux := http.NewServeMux()
		mux.HandleFunc("GET /readyz", a.readyz)
		mux.HandleFunc("GET /readyz/{check}", a.readyzCheck)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var ans answer
		if rec.Code != http.StatusNotFound {
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
				t.Fatalf("%s: %v: %s", path, err, rec.Body)
			}
		}
		return rec.Code, ans
	}

	tests := []struct {
		name             string
		redis            redis.UniversalClient
		pool             *pgxpool.Pool
		recovering       bool
		draining         bool
		status           int    // of /readyz
		reason           string // of /readyz
		postgres, redisC int    // of /readyz/postgres, /readyz/redis
	}{
		{"all up", redisUp, pgUp, false, false, 200, "", 200, 200},
		{"postgres down: still ready for ISO", redisUp, pgDown, false, false, 200, "", 503, 200},
		{"redis down", redisDown, pgUp, false, false, 503, "redis unreachable", 200, 503},
		{"recovering", redisUp, pgUp, true, false, 503, "recovering", 200, 200},
		{"draining", redisUp, pgDown, false, true, 503, "draining", 503, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &App{Redis: tt.redis, DB: pgstore.Postgres(tt.pool)}
			a.ready.Store(!tt.recovering)
			a.draining.Store(tt.draining)
			if code, ans := get(a, "/readyz"); code != tt.status || ans.Reason != tt.reason || ans.Checks != nil {
				t.Errorf("/readyz: %d %+v, want %d %q", code, ans, tt.status, tt.reason)
			}
			code, ans := get(a, "/readyz?verbose")
			if code != tt.status || ans.Reason != tt.reason || len(ans.Checks) != 4 {
				t.Errorf("/readyz?verbose: %d %+v, want %d %q and 4 checks", code, ans, tt.status, tt.reason)
			}
			if want := map[int]string{200: "ok", 503: "postgres unreachable"}[tt.postgres]; ans.Checks["postgres"] != want {
				t.Errorf("verbose postgres check %q, want %q", ans.Checks["postgres"], want)
			}
			if code, ans := get(a, "/readyz/postgres"); code != tt.postgres || (code == 503) != (ans.Reason == "postgres unreachable") {
				t.Errorf("/readyz/postgres: %d %+v, want %d", code, ans, tt.postgres)
			}
			if code, _ := get(a, "/readyz/redis"); code != tt.redisC {
				t.Errorf("/readyz/redis: %d, want %d", code, tt.redisC)
			}
		})
	}
	if code, _ := get(&App{Redis: redisUp, DB: pgstore.Postgres(pgUp)}, "/readyz/disk"); code != http.StatusNotFound {
		t.Errorf("unknown check: %d, want 404", code)
	}
}
