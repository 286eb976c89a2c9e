package app

import (
	"context"
	"fmt"
	"net/http"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/ledger"
)

// mountAPI mounts the REST API on mux (health and metrics stay on their
// own patterns) and lets authorizations that lower a partner deposit below
// its threshold raise the same notification as REST operations.
func (a *App) mountAPI(mux *http.ServeMux, le *ledger.Engine) error {
	srv, err := api.New(api.Config{
		Ledger: a.Ledger, Issuing: a.Issuing, Keys: a.Keys, Redis: a.Redis, RedisPrefix: a.cfg.KeyPrefix + "-api",
		DB: a.Pool, SessionTTL: a.cfg.SessionTTL,
		BootstrapAdminUser: a.cfg.AdminUser, BootstrapAdminPassword: a.cfg.AdminPassword,
		LowBalanceWebhook: a.cfg.LowBalanceWebhook, Registerer: a.Registry, Logger: a.log,
		Ready: a.restReady,
	})
	if err != nil {
		return fmt.Errorf("creating REST API: %w", err)
	}
	a.api = srv
	le.OnPartnerBelowThreshold = func(ctx context.Context, partnerID string, ch ledger.BalanceChange) {
		srv.PartnerBalanceCrossed(ctx, partnerID, ch)
	}
	mux.Handle("/", srv)
	return nil
}

// restReady gates the REST API: not while a rebuild runs, and not on a
// Redis that lost its state the watcher has not noticed yet (that costs
// one EXISTS per request, and wakes the watcher at once). When Redis does
// not answer, the request goes on and fails on its own.
func (a *App) restReady(ctx context.Context) bool {
	if !a.ready.Load() {
		return false
	}
	ok, err := a.Ledger.Ready(ctx)
	if err == nil && !ok {
		a.wakeWatcher()
		return false
	}
	return true
}

// wakeWatcher makes watchRedis check Redis now rather than at its next tick.
func (a *App) wakeWatcher() {
	select {
	case a.recheck <- struct{}{}:
	default:
	}
}
