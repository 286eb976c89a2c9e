package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/api/panel"
	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/ledger"
)

// mountAPI mounts the REST API on mux (health and metrics stay on their
// own patterns) and lets authorizations that lower a partner deposit below
// its threshold raise the same notification as REST operations.
func (a *App) mountAPI(mux *http.ServeMux, le *ledger.Engine) error {
	profile, err := iso.ProfileByName(a.cfg.ISOProfile)
	if err != nil {
		return err
	}
	var mailer api.Mailer
	if a.cfg.SMTPAddr != "" {
		sc, err := smtpConfig(&a.cfg)
		if err != nil {
			return err
		}
		if mailer, err = api.NewSMTPMailer(sc); err != nil {
			return err
		}
	}
	srv, err := api.New(api.Config{
		Ledger: a.Ledger, Issuing: a.Issuing, Keys: a.Keys, Redis: a.Redis, RedisPrefix: a.cfg.KeyPrefix + "-api",
		DB: a.DB, SessionTTL: a.cfg.SessionTTL, AdminSessionTTL: a.cfg.AdminSessionTTL,
		PasswordIterations: a.cfg.AdminPasswordIterations,
		BootstrapAdminUser: a.cfg.AdminUser, BootstrapAdminPassword: a.cfg.AdminPassword,
		LowBalanceWebhook: a.cfg.LowBalanceWebhook, LowBalanceWebhookSecret: a.cfg.LowBalanceWebhookSecret,
		NoticeCheckInterval: a.cfg.LowBalanceCheckInterval, OutboxRetention: a.cfg.OutboxRetention, Mailer: mailer,
		KYCProviderURL: a.cfg.KYCProviderURL, KYCProviderSecret: a.cfg.KYCProviderSecret, KYCCallbackURL: a.cfg.KYCCallbackURL,
		Registerer: a.Registry, Logger: a.log,
		Ready: a.restReady,
		ActionCode: func(r authz.Reason) string {
			c, _ := profile.Code(r)
			return c
		},
		JournalBarrier:      func(ctx context.Context) error { return a.writeBehind.Commit(ctx, nil, true) },
		RecentJournal:       a.recent,
		WebhookAllowPrivate: a.cfg.WebhookAllowPrivate, WebhookRetryFor: a.cfg.WebhookRetryFor, WebhookTimeout: a.cfg.WebhookTimeout,
	})
	if err != nil {
		return fmt.Errorf("creating REST API: %w", err)
	}
	a.api = srv
	le.OnPartnerBelowThreshold = func(ctx context.Context, partnerID string, ch ledger.BalanceChange) {
		srv.PartnerBalanceCrossed(ctx, partnerID, ch)
	}
	mux.Handle("/", srv)
	return a.mountPanel(mux, srv)
}

// mountPanel serves the administration panel at /panel/ on the same
// listener: it sends every request to srv as an /admin call.
func (a *App) mountPanel(mux *http.ServeMux, srv *api.Server) error {
	profile, err := iso.ProfileByName(a.cfg.ISOProfile)
	if err != nil {
		return err
	}
	p, err := panel.New(panel.Config{
		API:    srv,
		Logger: a.log,
		ActionCode: func(r authz.Reason) string {
			c, _ := profile.Code(r)
			return c
		},
		Status: func(ctx context.Context) panel.Status {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			st := panel.Status{Problem: a.problem(ctx)}
			st.Ready = st.Problem == ""
			st.LagEntries, st.LagAge, _ = a.writeBehind.Lag(ctx)
			return st
		},
	})
	if err != nil {
		return fmt.Errorf("creating the administration panel: %w", err)
	}
	mux.Handle(panel.Prefix, p)
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

// smtpConfig is the notice e-mails' SMTP configuration, checked.
func smtpConfig(c *Config) (api.SMTPConfig, error) {
	sc := api.SMTPConfig{Addr: c.SMTPAddr, From: c.SMTPFrom, Security: c.SMTPSecurity, Auth: c.SMTPAuth,
		Username: c.SMTPUsername, Password: c.SMTPPassword}
	if c.SMTPCA != "" {
		b, err := os.ReadFile(c.SMTPCA)
		if err != nil {
			return sc, fmt.Errorf("smtp: reading the CA bundle: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(b) {
			return sc, fmt.Errorf("smtp: %s holds no PEM certificate", c.SMTPCA)
		}
		sc.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	if _, err := api.NewSMTPMailer(sc); err != nil {
		return sc, err
	}
	return sc, nil
}
