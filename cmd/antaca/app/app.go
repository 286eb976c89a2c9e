// Package app wires Antaca's parts into one process: keys, Postgres
// (migrations, write-behind, recovery), Redis (the ledger), the decision
// engine, the ISO 8583 listener and the HTTP listener (REST API, health,
// metrics). Tests start it on 127.0.0.1:0 and stop it like `antaca serve`.
// NewOn runs the same parts on stores its caller opened: `antaca demo`
// gives it an in-process Redis and a SQLite file.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/api/decision"
	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
)

// App is a running Antaca.
type App struct {
	cfg      Config
	log      *slog.Logger
	Registry *prometheus.Registry

	Keys  *cardcrypto.Keys
	Redis redis.UniversalClient
	// DB is the durable store; Pool is its Postgres pool (nil on SQLite).
	DB      *pgstore.DB
	Pool    *pgxpool.Pool
	Ledger  *ledger.Ledger
	Issuing *issuing.Service
	Engine  *authz.Engine

	writeBehind *pgstore.WriteBehind
	// recent holds what the write-behind just committed, for the webhook
	// dispatcher.
	recent *pgstore.RecentJournal
	api    *api.Server
	engine *ledger.Engine
	iso    *iso.Server
	http   *http.Server
	httpLn net.Listener

	keysCreated bool // this start created the keys directory's keys

	ready       atomic.Bool
	draining    atomic.Bool
	rebuilds    prometheus.Counter
	rebuilt     atomic.Int64
	lastRebuild atomic.Pointer[pgstore.RebuildReport]
	recheck     chan struct{} // wakes watchRedis before its next tick
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	errs        chan error

	// expiryErrors counts the failures of the periodic hold expiry.
	expiryErrors prometheus.Counter
}

// Stores are what an App keeps its state in: Redis (the ledger) and the
// durable store. The App closes them when it stops.
type Stores struct {
	Redis redis.UniversalClient
	DB    *pgstore.DB
}

// New prepares an App: it loads keys, migrates Postgres, connects to Redis,
// rebuilds Redis from Postgres when Redis lost its state, and binds the
// listeners. Start begins serving. Without its stores it fails: it never
// falls back to others.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	return newApp(ctx, cfg, log, func(a *App) (Stores, error) {
		if err := pgstore.Migrate(ctx, cfg.DatabaseURL); err != nil {
			return Stores{}, fmt.Errorf("migrating: %w", err)
		}
		pool, err := pgstore.OpenPool(ctx, cfg.DatabaseURL)
		if err != nil {
			return Stores{}, fmt.Errorf("opening postgres: %w", err)
		}
		a.DB = pgstore.Postgres(pool) // closed with the App from here on
		rdb, err := newRedis(cfg)
		if err != nil {
			return Stores{}, err
		}
		return Stores{Redis: rdb, DB: a.DB}, nil
	})
}

// NewOn is New on stores the caller opened (cfg's store settings are not
// used). The App takes them over: it closes them on Shutdown, or when
// NewOn fails.
func NewOn(ctx context.Context, cfg Config, log *slog.Logger, st Stores) (*App, error) {
	taken := false
	a, err := newApp(ctx, cfg, log, func(*App) (Stores, error) { taken = true; return st, nil })
	if err != nil && !taken {
		_ = st.Redis.Close()
		st.DB.Close()
	}
	return a, err
}

func newApp(ctx context.Context, cfg Config, log *slog.Logger, open func(*App) (Stores, error)) (*App, error) {
	if log == nil {
		log = slog.Default()
	}
	a := &App{cfg: cfg, log: log, Registry: prometheus.NewRegistry(), errs: make(chan error, 4), recheck: make(chan struct{}, 1)}
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.rebuilds = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "antaca_ledger_rebuilds_total",
		Help: "Times this instance rebuilt the Redis state from Postgres (at start or after Redis lost it).",
	})
	a.expiryErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "antaca_hold_expiry_errors_total",
		Help: "Failures of the periodic hold expiry (listing partners, or expiring one partner's holds); each is logged.",
	})
	a.Registry.MustRegister(a.rebuilds, a.expiryErrors)
	ok := false
	defer func() {
		if !ok {
			a.closeStores()
		}
	}()

	var err error
	a.keysCreated = !keysExist(cfg.KeysDir)
	if a.Keys, err = cardcrypto.LoadOrCreate(cfg.KeysDir); err != nil {
		return nil, fmt.Errorf("loading keys: %w", err)
	}
	st, err := open(a)
	if err != nil {
		return nil, err
	}
	a.Redis, a.DB, a.Pool = st.Redis, st.DB, st.DB.Pool()
	useRedisLogger(log)
	if err := a.Redis.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("connecting to redis: %w", err)
	}
	if a.Ledger, err = ledger.New(a.Redis, ledger.Options{Prefix: cfg.KeyPrefix, IdempotencyTTL: cfg.IdempotencyTTL, AutoPipeline: true}); err != nil {
		return nil, err
	}
	if err := a.Ledger.Preload(ctx); err != nil {
		return nil, err
	}
	mode, err := ledger.ParseAnswerAfter(cfg.AnswerAfter)
	if err != nil {
		return nil, err
	}
	a.recent = pgstore.NewRecentJournal(recentJournalEntries)
	a.writeBehind, err = pgstore.NewWriteBehind(pgstore.Options{
		Redis: a.Redis, Keys: a.Ledger.Keys(), Sink: a.DB.Sink(), Registerer: a.Registry, Logger: log,
		CommitInterval: cfg.CommitInterval, Committed: a.recent.Add,
	})
	if err != nil {
		return nil, fmt.Errorf("creating write-behind: %w", err)
	}
	a.Ledger.SetJournal(a.writeBehind, mode)
	a.reportMode(ctx, mode)
	if err := a.recover(ctx); err != nil {
		return nil, err
	}
	a.Issuing = &issuing.Service{Store: a.Ledger, Keys: a.Keys}
	ledgerEngine := &ledger.Engine{L: a.Ledger, Token: a.Keys.LookupToken, VelocityWindow: cfg.VelocityWindow, OnStateLost: a.wakeWatcher}
	if mode == ledger.AnswerAfterPostgres {
		// While Postgres cannot commit, answer issuer unavailable at once
		// instead of changing Redis for an answer that cannot be durable.
		ledgerEngine.Available = a.writeBehind.Healthy
	}
	a.engine = ledgerEngine
	decider := decision.New(decision.Config{MaxInFlight: cfg.DecisionMaxInFlight, BreakerFailures: cfg.DecisionBreakerFailures,
		BreakerCooldown: cfg.DecisionBreakerCooldown, Registerer: a.Registry, Logger: log})
	a.Engine = &authz.Engine{
		Programs: ledgerEngine, Decider: decider,
		Ledger: ledgerEngine, PIN: a.Keys, CVV: a.Keys, Velocity: ledgerEngine, Locks: ledgerEngine, MaxPerWindow: cfg.VelocityMax,
		Limits: authz.Limits{MaxAmount: cfg.MaxAmount, MaxCashAmount: cfg.MaxCashAmount, AllowPartial: cfg.AllowPartial},
		Logger: log,
	}

	if err := a.newISO(); err != nil {
		return nil, err
	}
	if err := a.newHTTP(); err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

// newRedis connects to one Redis or to a Redis Cluster. Deadlines of
// authorizations must reach the socket (ContextTimeoutEnabled): without it
// go-redis waits for its own read timeout, not the request's.
func newRedis(cfg Config) (redis.UniversalClient, error) {
	if cfg.RedisCluster {
		opts, err := redis.ParseClusterURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("parsing redis cluster url: %w", err)
		}
		opts.ContextTimeoutEnabled = true
		opts.PoolSize = 128
		opts.MinIdleConns = 8
		opts.DialTimeout = time.Second
		opts.MaxRetries = 0
		return redis.NewClusterClient(opts), nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("parsing redis url: %w", err)
	}
	opts.ContextTimeoutEnabled = true
	opts.PoolSize = 128
	opts.MinIdleConns = 8
	opts.DialTimeout = time.Second
	opts.MaxRetries = 0
	return redis.NewClient(opts), nil
}

// recover rebuilds Redis from Postgres when Redis lacks the state (a
// restart without persistence, a failover to an empty replica).
func (a *App) recover(ctx context.Context) error {
	ready, err := a.Ledger.Ready(ctx)
	if err != nil {
		return fmt.Errorf("checking redis state: %w", err)
	}
	if ready {
		return nil
	}
	if a.writeBehind != nil {
		// What this switch still holds for Postgres goes there first, so
		// the rebuild reads it back.
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.writeBehind.CommitQueued(fctx)
		cancel()
		if err != nil {
			return fmt.Errorf("committing the queued journal before the rebuild: %w", err)
		}
	}
	opts := []pgstore.RebuildOption{pgstore.WithIdempotencyTTL(a.cfg.IdempotencyTTL)}
	if a.cfg.VelocityMax > 0 {
		opts = append(opts, pgstore.WithVelocityWindow(a.cfg.VelocityWindow))
	}
	rep, err := pgstore.Rebuild(ctx, a.Redis, a.Ledger.Keys(), a.DB, opts...)
	if err != nil {
		return fmt.Errorf("rebuilding redis from %s: %w", a.DB.Engine(), err)
	}
	if !rep.Skipped {
		a.rebuilds.Inc()
		a.rebuilt.Add(1)
		a.lastRebuild.Store(&rep)
	}
	a.log.Info("rebuilt redis state from "+a.DB.Engine(), "report", rep.String())
	return nil
}

// reportMode shows when answers leave (metric antaca_answer_after_info and
// a start-up line) and warns when the mode's recovery point depends on a
// Redis that keeps nothing.
func (a *App) reportMode(ctx context.Context, mode ledger.AnswerAfter) {
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "antaca_answer_after_info",
		Help: "When an answer that changed money or state leaves: after the Postgres commit (mode=postgres) or after the Redis script (mode=redis).",
	}, []string{"mode"})
	info.WithLabelValues(string(mode)).Set(1)
	a.Registry.MustRegister(info)
	aof := "unknown"
	if c, ok := a.Redis.(*redis.Client); ok {
		if v, err := c.ConfigGet(ctx, "appendonly").Result(); err == nil {
			aof = v["appendonly"]
		}
	}
	switch {
	case mode == ledger.AnswerAfterPostgres:
		a.log.Info("answers wait for the journal commit in postgres", "answer_after", mode, "redis_appendonly", aof)
	case aof == "yes":
		a.log.Warn("answers leave after the redis script; the recovery point is redis's (AOF and replicas)",
			"answer_after", mode, "redis_appendonly", aof)
	default:
		a.log.Error("answers leave after the redis script, but redis keeps no append-only file: a redis restart loses every approval not yet in postgres",
			"answer_after", mode, "redis_appendonly", aof)
	}
}

// Rebuilds is how many times this instance rebuilt Redis from Postgres.
func (a *App) Rebuilds() int64 { return a.rebuilt.Load() }

// LastRebuild is the report of this instance's latest rebuild of Redis;
// false when it has made none.
func (a *App) LastRebuild() (pgstore.RebuildReport, bool) {
	if r := a.lastRebuild.Load(); r != nil {
		return *r, true
	}
	return pgstore.RebuildReport{}, false
}

func (a *App) newISO() error {
	profile, err := iso.ProfileByName(a.cfg.ISOProfile)
	if err != nil {
		return err
	}
	framing, err := iso.ParseFraming(a.cfg.ISOFraming)
	if err != nil {
		return err
	}
	allow, err := iso.ParseAllowList(a.cfg.ISOAllow)
	if err != nil {
		return fmt.Errorf("reading the ISO allow-list: %w", err)
	}
	var tlsCfg *tls.Config
	if a.cfg.ISOTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.ISOTLSCert, a.cfg.ISOTLSKey)
		if err != nil {
			return fmt.Errorf("loading ISO TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	a.iso, err = iso.New(iso.Config{
		Addr: a.cfg.ISOAddr, Profile: profile, Framing: framing, MaxConnections: a.cfg.ISOMaxConns,
		MaxConnsPerAddr: a.cfg.ISOMaxConnsPerIP, Allow: allow,
		TLSConfig: tlsCfg, ReadTimeout: a.cfg.ISOIdleTimeout, RequestTimeout: a.cfg.ISODeadline, QueueTarget: a.cfg.ISOQueueTarget,
		Logger: a.log, Registerer: a.Registry,
	}, gate{a})
	if err != nil {
		return fmt.Errorf("creating ISO server: %w", err)
	}
	if err := a.iso.Listen(); err != nil {
		return fmt.Errorf("listening for ISO 8583: %w", err)
	}
	return nil
}

// gate answers issuer unavailable while Redis is being rebuilt, so that no
// card looks unknown during recovery.
type gate struct{ a *App }

// Abandon undoes an approval the listener could not deliver in time.
func (g gate) Abandon(ctx context.Context, req *authz.Request, d authz.Decision) {
	g.a.Engine.Abandon(ctx, req, d)
}

func (g gate) Authorize(ctx context.Context, req *authz.Request) authz.Decision {
	if !g.a.ready.Load() {
		return authz.Decision{Reason: authz.ReasonIssuerUnavailable}
	}
	return g.a.Engine.Authorize(ctx, req)
}

func (a *App) newHTTP() error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /readyz/{check}", a.readyzCheck)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{Registry: a.Registry}))
	if err := a.mountAPI(mux, a.engine); err != nil {
		return err
	}
	a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listening for HTTP: %w", err)
	}
	if a.cfg.TLSCert != "" {
		tlsCfg, err := serverTLS(a.cfg)
		if err != nil {
			_ = ln.Close()
			return err
		}
		ln = tls.NewListener(ln, tlsCfg)
	}
	a.httpLn = ln
	return nil
}

// problem says why the switch is not ready to answer the network ("" when
// it is), by the same gates as /readyz.
func (a *App) problem(ctx context.Context) string {
	for _, name := range readyGates {
		if p := a.readyCheck(ctx, name); p != "" {
			return p
		}
	}
	return ""
}

// serveDebug serves pprof on its own mux and listener, never the HTTP one.
func (a *App) serveDebug(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: a.cfg.DebugAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	a.log.Info("pprof serving", "addr", a.cfg.DebugAddr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving pprof: %w", err)
	}
	return nil
}

// ISOAddr is the address the ISO listener is bound to.
func (a *App) ISOAddr() string { return a.iso.Addr().String() }

// API is the REST API (for tests that call it in-process).
func (a *App) API() *api.Server { return a.api }

// HTTPAddr is the address the HTTP listener is bound to.
func (a *App) HTTPAddr() string { return a.httpLn.Addr().String() }

// Start serves until Shutdown; background failures arrive on Err.
func (a *App) Start(ctx context.Context) {
	ctx, a.cancel = context.WithCancel(ctx)
	a.logStartup(ctx)
	a.ready.Store(true)
	a.goBackground(func() error { return a.writeBehind.Run(ctx) })
	a.goBackground(func() error { a.ensureDefaultPrograms(ctx); return nil })
	a.goBackground(func() error { return a.iso.Serve(ctx) })
	a.goBackground(func() error {
		if err := a.http.Serve(a.httpLn); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	a.goBackground(func() error { a.expireHolds(ctx); return nil })
	a.goBackground(func() error { return a.api.RunWebhooks(ctx) })
	a.goBackground(func() error { return a.api.RunNotices(ctx) })
	if a.cfg.DebugAddr != "" {
		a.goBackground(func() error { return a.serveDebug(ctx) })
	}
	a.goBackground(func() error { a.watchRedis(ctx); return nil })
	a.log.Info("antaca serving", "iso", a.ISOAddr(), "http", a.HTTPAddr(), "profile", a.cfg.ISOProfile)
}

// ensureDefaultPrograms gives partners that predate programs, in a Redis
// that kept its state, the default program migration 0020 gave them in
// Postgres. Until it has, their cards route by the partner's BIN.
func (a *App) ensureDefaultPrograms(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := a.Ledger.EnsureDefaultPrograms(ctx)
	if err != nil {
		a.log.Error("giving partners their default program failed; their cards still route by BIN", "err", err)
		return
	}
	if n > 0 {
		a.log.Info("default programs created for partners that predate programs", "programs", n)
	}
}

func (a *App) goBackground(f func() error) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := f(); err != nil && !errors.Is(err, context.Canceled) {
			select {
			case a.errs <- err:
			default:
			}
		}
	}()
}

// FlushJournal waits until the write-behind has written every journal
// entry to Postgres.
func (a *App) FlushJournal(ctx context.Context) error { return a.writeBehind.Flush(ctx) }

// Err delivers a background component's failure.
func (a *App) Err() <-chan error { return a.errs }

// expireHolds releases holds older than the configured age, every partner,
// every half minute.
func (a *App) expireHolds(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.expireHoldsOnce(ctx)
	}
}

// expireHoldsOnce is one round of the hold expiry. A failure is logged and
// counted (antaca_hold_expiry_errors_total); the next round tries again.
func (a *App) expireHoldsOnce(ctx context.Context) {
	partners, err := a.Ledger.PartnerIDs(ctx)
	if err != nil {
		a.expiryErrors.Inc()
		a.log.Warn("expiring holds: listing partners", "err", err)
		return
	}
	for _, p := range partners {
		for {
			n, err := a.Ledger.ExpireHolds(ctx, p, a.cfg.HoldMaxAge, 500)
			if err != nil {
				a.expiryErrors.Inc()
				a.log.Warn("expiring holds", "partner", p, "err", err)
			}
			if err != nil || n < 500 {
				break
			}
		}
	}
}

// watchRedis notices when Redis lost its state while running (a restart
// without persistence) and rebuilds it from Postgres; authorizations answer
// issuer unavailable meanwhile.
func (a *App) watchRedis(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.recheck:
		}
		ready, err := a.Ledger.Ready(ctx)
		if err != nil || ready {
			continue
		}
		a.ready.Store(false)
		a.log.Warn("redis lost its state; rebuilding from postgres")
		if err := a.recover(ctx); err != nil {
			a.log.Error("rebuilding redis", "err", err)
			continue
		}
		a.ready.Store(true)
	}
}

// Shutdown drains: readiness goes false, the ISO listener stops accepting
// and answers what is in flight, HTTP finishes its requests, the
// write-behind flushes the journal to Postgres, and the stores close.
func (a *App) Shutdown(ctx context.Context) error {
	a.draining.Store(true)
	var errs []error
	if err := a.iso.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("draining ISO: %w", err))
	}
	if err := a.http.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("draining HTTP: %w", err))
	}
	if err := a.api.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("finishing REST background work: %w", err))
	}
	if err := a.writeBehind.Flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("flushing write-behind: %w", err))
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	a.closeStores()
	return errors.Join(errs...)
}

func (a *App) closeStores() {
	if a.Redis != nil {
		_ = a.Redis.Close()
	}
	if a.DB != nil {
		a.DB.Close()
	}
}

// UpdateFile applies a card network's file update (0302), gated like
// authorizations.
func (g gate) UpdateFile(ctx context.Context, u *authz.FileUpdate) authz.FileUpdateResult {
	if !g.a.ready.Load() {
		return authz.FileUpdateResult{Reason: authz.ReasonIssuerUnavailable}
	}
	return g.a.Engine.UpdateFile(ctx, u)
}

// recentJournalEntries bounds the committed entries kept for the webhook
// dispatcher, shared among the partners it follows (tens of MB at most):
// a dispatcher further behind reads the older ones back from the store.
const recentJournalEntries = 20_000
