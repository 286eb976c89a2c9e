// Package api is Antaca's REST API: its three channels
// (/customers/me with a customer session token, /secure with a partner's
// x509 client certificate, /admin with an admin session token and roles),
// JWE for sensitive data, one table from domain errors to HTTP (errors.go),
// and the OpenAPI document (openapi.yaml, served at GET /openapi.yaml). The
// routes and their channel, roles and encryption are one table in
// routes.go; README.md describes them for people.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
)

// Config wires the API to its dependencies.
type Config struct {
	Ledger  *ledger.Ledger
	Issuing *issuing.Service
	Keys    *cardcrypto.Keys // the server's JWE key
	// Redis holds sessions, login counts, the bureau queue and async
	// card markers, under RedisPrefix (default "antaca-api", outside the
	// ledger's "antaca:*" so that a ledger wipe or rebuild leaves them).
	Redis       redis.UniversalClient
	RedisPrefix string
	// DB is the durable store: the admins table (migration 0002_admins),
	// the transaction history, the webhook outbox and the admin searches.
	// Postgres, or SQLite under `antaca demo`.
	DB *pgstore.DB

	// SessionTTL is the life of a customer session (default 10 minutes);
	// AdminSessionTTL of an admin session (default 30 minutes).
	SessionTTL      time.Duration
	AdminSessionTTL time.Duration

	// BootstrapAdminUser / BootstrapAdminPassword: an admin with role Admin
	// created at start when no admin of that name exists (an existing one
	// is left as it is). Both empty: none.
	BootstrapAdminUser     string
	BootstrapAdminPassword string
	// PasswordIterations is the PBKDF2-HMAC-SHA256 work factor of new
	// password hashes (default 600 000, OWASP 2023). Existing hashes keep
	// the count they were made with.
	PasswordIterations int
	// Login throttling (throttle.go, README.md): failed logins are counted
	// per (username, client address), per client address and per username
	// (the last only for addresses the username never logged in from).
	// A count allows LoginFreeFailures (default 3), LoginFreeFailuresPerIP
	// (default 10) or LoginFreeFailuresPerUser (default 10) failures; each
	// further one makes the next attempt wait LoginBaseDelay (default 1 s),
	// doubling, at most LoginMaxDelay (default 15 minutes), after the last
	// failure. Too early: 429 TOO_MANY_ATTEMPTS with Retry-After. A count
	// is forgotten LoginWindow (default 15 minutes) after its last failure.
	LoginFreeFailures        int
	LoginFreeFailuresPerIP   int
	LoginFreeFailuresPerUser int
	LoginBaseDelay           time.Duration
	LoginMaxDelay            time.Duration
	LoginWindow              time.Duration

	// LowBalanceWebhook, when set, is the operator's webhook endpoint for
	// partner_balance.low of every partner (notify.go): delivered through
	// the outbox like partner endpoints, signed with
	// LowBalanceWebhookSecret (unsigned when empty). It is the operator's
	// own URL, so private addresses are allowed.
	LowBalanceWebhook       string
	LowBalanceWebhookSecret string
	// WebhookTimeout bounds each webhook attempt (default 5 s);
	// WebhookBackoff is the first pause after a failed attempt (default
	// 1 s), also of notice e-mails.
	WebhookTimeout time.Duration
	WebhookBackoff time.Duration

	// Mailer sends the partners' notice e-mails (none when nil: no e-mail
	// is made). NoticeCheckInterval is how often every partner balance is
	// looked at (default 1 minute). OutboxRetention is how long finished
	// webhook deliveries, events and e-mails are kept (default 30 days).
	Mailer              Mailer
	NoticeCheckInterval time.Duration
	OutboxRetention     time.Duration

	// KYCProviderURL, when set, is where starting KYC sends the customer's
	// data (kyc.go), signed with KYCProviderSecret, which also signs the
	// provider's callbacks to POST /kyc/callback. KYCCallbackURL, when
	// set, is that callback's public URL, told to the provider in every
	// request. A request is retried for WebhookRetryFor.
	KYCProviderURL    string
	KYCProviderSecret string
	KYCCallbackURL    string

	// Partner webhook endpoints (webhooks.go). WebhookAllowPrivate allows
	// http URLs and loopback, link-local and private addresses (for
	// development and tests; off by default). A delivery is tried for
	// WebhookRetryFor (default 24 h) after it was made, waiting
	// WebhookBackoff doubled each attempt up to WebhookMaxBackoff (default
	// 1 h), with jitter; then the endpoint is marked failing. The
	// dispatcher looks for new journal entries every WebhookPoll (default
	// 250 ms) and waits WebhookGapTimeout (default 1 minute) for an entry
	// missing between committed ones before it gives it up.
	WebhookAllowPrivate bool
	WebhookRetryFor     time.Duration
	WebhookMaxBackoff   time.Duration
	WebhookPoll         time.Duration
	WebhookGapTimeout   time.Duration

	// ActionCode gives DE39 as the configured ISO profile answers a
	// reason, for transactions (no action_code when nil).
	ActionCode func(authz.Reason) string
	// JournalBarrier, when set, returns once every journal entry this
	// process queued before the call is committed in Postgres (the
	// write-behind's barrier): transaction listings call it first, so
	// that a decline answered a moment ago is listed too.
	JournalBarrier func(context.Context) error
	// RecentJournal, when set, holds the journal entries this process's
	// write-behind just committed: the webhook dispatcher makes events of
	// them without reading them back.
	RecentJournal *pgstore.RecentJournal

	// Ready, when set and false, makes every non-public route answer 503
	// NOT_READY and change nothing: the switch sets it while it rebuilds
	// Redis from Postgres.
	Ready func(context.Context) bool

	Registerer prometheus.Registerer // a private registry when nil
	Logger     *slog.Logger          // slog.Default() when nil
	Now        func() time.Time      // time.Now when nil
}

// Server is the REST API; it is an http.Handler.
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	mux     *http.ServeMux
	metrics *metrics
	keys    redisKeys
	txns    *pgstore.Transactions
	// Webhooks: the outbox, their own HTTP client and metrics.
	outbox     *pgstore.Outbox
	hookClient *http.Client
	hooks      *hookMetrics
	hookWake   chan struct{}
	// opClient sends to the operator's own endpoints (LowBalanceWebhook):
	// private addresses allowed.
	opClient *http.Client
	// Notices (notify.go): the low-balance state, addresses and e-mails.
	notices    *pgstore.Notices
	notes      *noticeMetrics
	noticeWake chan struct{}
	// KYC at the provider (kyc.go).
	kyc  *pgstore.KYCChecks
	kycm *kycMetrics
	// dummyHash is verified against when a login names no admin, so that
	// unknown and known usernames take the same time.
	dummyHash string

	bg     sync.WaitGroup // async card creation
	mu     sync.Mutex
	closed bool
}

// New checks cfg, creates the bootstrap admin when absent and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.Ledger == nil || cfg.Issuing == nil || cfg.Keys == nil || cfg.Redis == nil || cfg.DB == nil {
		return nil, errors.New("api: Ledger, Issuing, Keys, Redis and DB are required")
	}
	if cfg.RedisPrefix == "" {
		cfg.RedisPrefix = "antaca-api"
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 10 * time.Minute
	}
	if cfg.AdminSessionTTL <= 0 {
		cfg.AdminSessionTTL = 30 * time.Minute
	}
	if cfg.PasswordIterations <= 0 {
		cfg.PasswordIterations = 600_000
	}
	if cfg.LoginFreeFailures <= 0 {
		cfg.LoginFreeFailures = 3
	}
	if cfg.LoginFreeFailuresPerIP <= 0 {
		cfg.LoginFreeFailuresPerIP = 10
	}
	if cfg.LoginFreeFailuresPerUser <= 0 {
		cfg.LoginFreeFailuresPerUser = 10
	}
	if cfg.LoginBaseDelay <= 0 {
		cfg.LoginBaseDelay = time.Second
	}
	if cfg.LoginMaxDelay <= 0 {
		cfg.LoginMaxDelay = 15 * time.Minute
	}
	if cfg.LoginWindow <= 0 {
		cfg.LoginWindow = 15 * time.Minute
	}
	if cfg.WebhookTimeout <= 0 {
		cfg.WebhookTimeout = 5 * time.Second
	}
	if cfg.WebhookBackoff <= 0 {
		cfg.WebhookBackoff = time.Second
	}
	if cfg.LowBalanceWebhook != "" {
		u, err := url.Parse(cfg.LowBalanceWebhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("api: low-balance webhook %q is not an http(s) URL", cfg.LowBalanceWebhook)
		}
	}
	if cfg.WebhookRetryFor <= 0 {
		cfg.WebhookRetryFor = 24 * time.Hour
	}
	if cfg.WebhookMaxBackoff <= 0 {
		cfg.WebhookMaxBackoff = time.Hour
	}
	if cfg.WebhookPoll <= 0 {
		cfg.WebhookPoll = 250 * time.Millisecond
	}
	if cfg.WebhookGapTimeout <= 0 {
		cfg.WebhookGapTimeout = time.Minute
	}
	if cfg.NoticeCheckInterval <= 0 {
		cfg.NoticeCheckInterval = time.Minute
	}
	if cfg.OutboxRetention <= 0 {
		cfg.OutboxRetention = 30 * 24 * time.Hour
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	hm, err := newHookMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	nm, err := newNoticeMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	km, err := newKYCMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	if cfg.KYCProviderURL != "" {
		u, err := url.Parse(cfg.KYCProviderURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("api: the KYC provider URL is not an http(s) URL")
		}
		if cfg.KYCProviderSecret == "" {
			return nil, errors.New("api: a KYC provider needs a secret (it signs requests and callbacks)")
		}
	}
	dummy, err := hashPassword("not a password", cfg.PasswordIterations)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, now: cfg.Now, metrics: m,
		keys: redisKeys{prefix: cfg.RedisPrefix}, dummyHash: dummy,
		txns: pgstore.NewTransactions(cfg.DB), outbox: pgstore.NewOutbox(cfg.DB), hooks: hm,
		hookClient: webhookClient(cfg.WebhookTimeout, cfg.WebhookAllowPrivate), hookWake: make(chan struct{}, 1),
		opClient: webhookClient(cfg.WebhookTimeout, true), notices: pgstore.NewNotices(cfg.DB.Pool()), notes: nm,
		noticeWake: make(chan struct{}, 1), kyc: pgstore.NewKYCChecks(cfg.DB.Pool()), kycm: km,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.outbox.SetOperatorEndpoint(ctx, operatorLowBalanceEndpoint, cfg.LowBalanceWebhook, cfg.LowBalanceWebhookSecret,
		[]string{"partner_balance.low"}); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if cfg.BootstrapAdminUser != "" || cfg.BootstrapAdminPassword != "" {
		if err := s.bootstrapAdmin(ctx, cfg.BootstrapAdminUser, cfg.BootstrapAdminPassword); err != nil {
			return nil, err
		}
	}
	s.mux = http.NewServeMux()
	for _, rt := range s.routes() {
		s.mux.Handle(rt.pattern, s.wrap(rt))
	}
	return s, nil
}

// ServeHTTP serves the API. Unmatched paths and methods answer JSON 404 / 405.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	_, pattern := s.mux.Handler(r)
	rec := &statusRecorder{ResponseWriter: w}
	if pattern == "" {
		s.unmatched(rec, r)
		pattern = "unmatched"
	} else {
		s.mux.ServeHTTP(rec, r)
	}
	s.metrics.observe(pattern, rec.status(), time.Since(start))
}

// unmatched answers what the mux would (404, 405 with Allow, or a
// redirect) but as JSON errors.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	probe := &headerProbe{header: http.Header{}}
	s.mux.ServeHTTP(probe, r)
	switch probe.code {
	case http.StatusMethodNotAllowed:
		if allow := probe.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		writeError(w, errMethodNotAllowed)
	case http.StatusMovedPermanently, http.StatusPermanentRedirect, http.StatusTemporaryRedirect, http.StatusFound:
		w.Header().Set("Location", probe.header.Get("Location"))
		w.WriteHeader(probe.code)
	default:
		writeError(w, errNotFound)
	}
}

// Close waits for background work (async card creation) to finish, or
// for ctx. Webhook deliveries, notice e-mails and KYC requests need no
// waiting: they are rows in Postgres, sent by RunWebhooks and RunNotices
// on whichever switch runs next. Call it after the HTTP server stopped
// accepting.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.bg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// goBackground runs f in a goroutine Close waits for; false when closing.
func (s *Server) goBackground(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
	return true
}

// redisKeys names the API's own Redis keys.
type redisKeys struct{ prefix string }

func (k redisKeys) session(tokenHash string) string { return k.prefix + ":sess:" + tokenHash }
func (k redisKeys) bureauQueue() string             { return k.prefix + ":bureau:orders" }
func (k redisKeys) createIdem(hash string) string   { return k.prefix + ":idemreq:" + hash }
func (k redisKeys) pendingCard(id string) string    { return k.prefix + ":pending:" + id }

// statusRecorder remembers the status written, for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// headerProbe captures what the mux answers for an unmatched request.
type headerProbe struct {
	header http.Header
	code   int
}

func (p *headerProbe) Header() http.Header { return p.header }
func (p *headerProbe) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}
func (p *headerProbe) Write(b []byte) (int, error) {
	if p.code == 0 {
		p.code = http.StatusOK
	}
	return len(b), nil
}
