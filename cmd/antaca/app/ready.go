package app

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// Readiness means "this pod can answer the ISO network": not draining,
// recovery done, Redis reachable. Postgres is not part of it: without it
// authorizations go on (the journal waits in Redis, or, when answers wait
// for Postgres, the network gets a quick issuer-unavailable), and taking
// every pod out of service would turn that into refused connections.
// Postgres has its own check, /readyz/postgres, for monitoring.
//
//	GET /readyz            200 {"status":"ready"} or 503 {"status":"unavailable","reason":...}
//	GET /readyz?verbose    the same status, with every check's result, Postgres included
//	GET /readyz/{check}    one check: draining, recovery, redis or postgres
var readyChecks = []string{"draining", "recovery", "redis", "postgres"}

// readyGates are the checks /readyz answers by.
var readyGates = []string{"draining", "recovery", "redis"}

// readyCheck runs one check: "" when it passes, else the reason.
func (a *App) readyCheck(ctx context.Context, name string) string {
	switch name {
	case "draining":
		if a.draining.Load() {
			return "draining"
		}
	case "recovery":
		if !a.ready.Load() {
			return "recovering"
		}
	case "redis":
		if a.Redis.Ping(ctx).Err() != nil {
			return "redis unreachable"
		}
	case "postgres":
		if a.DB.Ping(ctx) != nil {
			return "postgres unreachable"
		}
	}
	return ""
}

type readyAnswer struct {
	Status string            `json:"status"`
	Reason string            `json:"reason,omitempty"`
	Checks map[string]string `json:"checks,omitempty"`
}

func writeReady(w http.ResponseWriter, ans readyAnswer) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if ans.Status != "ready" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(ans)
}

func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	_, verbose := r.URL.Query()["verbose"]
	checks := readyGates
	ans := readyAnswer{Status: "ready"}
	if verbose {
		checks, ans.Checks = readyChecks, map[string]string{}
	}
	for _, name := range checks {
		problem := a.readyCheck(ctx, name)
		if verbose {
			ans.Checks[name] = cmp.Or(problem, "ok")
		}
		if problem != "" && ans.Reason == "" && slices.Contains(readyGates, name) {
			ans.Status, ans.Reason = "unavailable", problem
			if !verbose {
				break
			}
		}
	}
	writeReady(w, ans)
}

func (a *App) readyzCheck(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("check")
	if !slices.Contains(readyChecks, name) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"code":"NOT_FOUND","message":"no such check: draining, recovery, redis or postgres"}`))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	ans := readyAnswer{Status: "ready"}
	if problem := a.readyCheck(ctx, name); problem != "" {
		ans.Status, ans.Reason = "unavailable", problem
	}
	writeReady(w, ans)
}
