package app

import (
	"flag"
	"fmt"
	"time"
)

// Config is everything `antaca serve` is configured with. Every field has a
// flag and an environment variable (ANTACA_ + the flag name in upper case
// with dashes as underscores), listed by `antaca serve --help`.
type Config struct {
	RedisURL     string
	RedisCluster bool
	DatabaseURL  string
	KeyPrefix    string
	// AnswerAfter is "postgres" (default: an answer that changed money or
	// state waits for its journal entry to be committed in Postgres) or
	// "redis" (answer once the script ran; for Redis with AOF and replicas).
	AnswerAfter string
	// CommitInterval is the shortest time between two group commits of
	// the journal (0: as soon as anything is queued).
	CommitInterval time.Duration

	ISOAddr     string
	ISOProfile  string
	ISOFraming  string
	ISOMaxConns int
	ISODeadline time.Duration
	// ISOQueueTarget caps the wait admission control lets an
	// authorization expect (iso.Config.QueueTarget); 0: half of
	// ISODeadline.
	ISOQueueTarget time.Duration
	ISOIdleTimeout time.Duration
	ISOTLSCert     string
	ISOTLSKey      string

	ISOMaxConnsPerIP int
	ISOAllow         string

	HTTPAddr  string
	TLSCert   string
	TLSKey    string
	PartnerCA string

	AdminUser       string
	AdminPassword   string
	SessionTTL      time.Duration
	AdminSessionTTL time.Duration
	// AdminPasswordIterations is the PBKDF2 work factor of new admin
	// password hashes; existing hashes keep theirs.
	AdminPasswordIterations int

	KeysDir string

	HoldMaxAge time.Duration
	// IdempotencyTTL is how long the ledger keeps the answer to a message
	// for its retransmissions, and a closed hold in Redis.
	IdempotencyTTL time.Duration
	MaxAmount      int64
	MaxCashAmount  int64
	AllowPartial   bool
	VelocityMax    int64
	VelocityWindow time.Duration

	// Partner notices (docs/notifications.md): the operator's low-balance
	// webhook and its signing secret, how often every partner balance is
	// looked at, the SMTP server of the notice e-mails, and how long the
	// outbox keeps finished deliveries and e-mails.
	LowBalanceWebhook       string
	LowBalanceWebhookSecret string
	LowBalanceCheckInterval time.Duration
	SMTPAddr                string
	SMTPFrom                string
	SMTPSecurity            string
	SMTPAuth                string
	SMTPUsername            string
	SMTPPassword            string
	SMTPCA                  string
	OutboxRetention         time.Duration

	// KYC provider (docs/kyc.md): where starting KYC sends the customer,
	// the secret signing requests and callbacks, and the callback's
	// public URL told to the provider.
	KYCProviderURL    string
	KYCProviderSecret string
	KYCCallbackURL    string

	// Real-time decisioning by programs' backends: requests in flight per
	// program, and the circuit breaker (failures in a row, cooldown).
	DecisionMaxInFlight     int
	DecisionBreakerFailures int
	DecisionBreakerCooldown time.Duration

	// Partner webhooks: http and private addresses allowed (development
	// only), how long a delivery is retried, and each attempt's timeout.
	WebhookAllowPrivate bool
	WebhookRetryFor     time.Duration
	WebhookTimeout      time.Duration

	LogLevel  string
	LogFormat string

	// DebugAddr serves net/http/pprof on its own listener when set (keep
	// it on loopback: profiles show internals).
	DebugAddr string

	// DrainTimeout bounds the drain on SIGTERM (`antaca serve`).
	DrainTimeout time.Duration
}

// DefaultConfig returns the defaults, as listed in the README's
// configuration table.
func DefaultConfig() Config {
	return Config{
		RedisURL:                "redis://127.0.0.1:6379/0",
		DatabaseURL:             "postgres://postgres@127.0.0.1:5432/antaca?sslmode=disable",
		KeyPrefix:               "antaca",
		AnswerAfter:             "postgres",
		CommitInterval:          2 * time.Millisecond,
		ISOAddr:                 ":8583",
		ISOProfile:              "cmf",
		ISOFraming:              "binary2",
		ISOMaxConns:             1024,
		ISOMaxConnsPerIP:        64,
		ISODeadline:             300 * time.Millisecond,
		ISOIdleTimeout:          60 * time.Second,
		HTTPAddr:                ":8080",
		SessionTTL:              10 * time.Minute,
		AdminSessionTTL:         30 * time.Minute,
		AdminPasswordIterations: 600_000,
		KeysDir:                 "./keys",
		HoldMaxAge:              7 * 24 * time.Hour,
		IdempotencyTTL:          7 * 24 * time.Hour,
		MaxAmount:               500_000,
		MaxCashAmount:           100_000,
		VelocityWindow:          time.Hour,
		LowBalanceCheckInterval: time.Minute,
		SMTPSecurity:            "starttls",
		OutboxRetention:         30 * 24 * time.Hour,
		DecisionMaxInFlight:     64,
		DecisionBreakerFailures: 5,
		DecisionBreakerCooldown: 10 * time.Second,
		WebhookRetryFor:         24 * time.Hour,
		WebhookTimeout:          5 * time.Second,
		LogLevel:                "info",
		LogFormat:               "json",
		DrainTimeout:            20 * time.Second,
	}
}

// RegisterFlags defines every Config field on fs, with its environment
// variable named in the usage text.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	env := func(name, usage string) string {
		return fmt.Sprintf("%s (env ANTACA_%s)", usage, envName(name))
	}
	str := func(p *string, name, usage string) { fs.StringVar(p, name, *p, env(name, usage)) }
	dur := func(p *time.Duration, name, usage string) { fs.DurationVar(p, name, *p, env(name, usage)) }

	str(&c.RedisURL, "redis-url", "Redis URL; with --redis-cluster, redis://host:port?addr=host2:port2&addr=... (seed nodes)")
	fs.BoolVar(&c.RedisCluster, "redis-cluster", c.RedisCluster, env("redis-cluster", "Redis is a Redis Cluster (every partner's keys share one slot)"))
	str(&c.DatabaseURL, "database-url", "PostgreSQL URL")
	str(&c.KeyPrefix, "key-prefix", "prefix of every Redis key")
	str(&c.AnswerAfter, "answer-after", "postgres: answer after the journal entry is committed in Postgres; redis: after the Redis script (needs Redis with AOF and replicas)")
	dur(&c.CommitInterval, "commit-interval", "shortest time between two group commits of the journal; under load what arrives meanwhile shares one Postgres transaction (0: no wait)")
	str(&c.ISOAddr, "iso-addr", "ISO 8583 listen address")
	str(&c.ISOProfile, "iso-profile", "ISO 8583 profile: cmf (4-digit action codes) or iso87 (2-digit)")
	str(&c.ISOFraming, "iso-framing", "ISO 8583 length header: binary2 or ascii4")
	fs.IntVar(&c.ISOMaxConns, "iso-max-conns", c.ISOMaxConns, env("iso-max-conns", "most ISO connections open at once"))
	fs.IntVar(&c.ISOMaxConnsPerIP, "iso-max-conns-per-ip", c.ISOMaxConnsPerIP, env("iso-max-conns-per-ip", "most ISO connections open at once from one source address (negative: no limit)"))
	str(&c.ISOAllow, "iso-allow", "addresses and CIDR networks allowed to connect to the ISO listener, comma-separated (empty: any)")
	dur(&c.ISODeadline, "iso-deadline", "deadline of one authorization; past it the answer is issuer unavailable")
	dur(&c.ISOQueueTarget, "iso-queue-target", "longest wait admission control lets an authorization expect before it is decided; past it the answer is issuer unavailable at once (0: half the deadline)")
	dur(&c.ISOIdleTimeout, "iso-idle-timeout", "silence after which the switch sends an 0800 echo")
	str(&c.ISOTLSCert, "iso-tls-cert", "certificate for TLS on the ISO listener (optional)")
	str(&c.ISOTLSKey, "iso-tls-key", "key for TLS on the ISO listener (optional)")
	str(&c.HTTPAddr, "http-addr", "REST, health and metrics listen address")
	str(&c.TLSCert, "tls-cert", "HTTPS server certificate; when set the HTTP listener serves TLS")
	str(&c.TLSKey, "tls-key", "HTTPS server key")
	str(&c.PartnerCA, "partner-ca", "PEM bundle of the CAs that sign partner client certificates")
	str(&c.AdminUser, "admin-user", "bootstrap admin user (role Admin), created at start when absent")
	str(&c.AdminPassword, "admin-password", "bootstrap admin password")
	dur(&c.SessionTTL, "session-ttl", "lifetime of customer session tokens")
	dur(&c.AdminSessionTTL, "admin-session-ttl", "lifetime of admin sessions (/admin tokens and the /panel/ sign-in)")
	fs.IntVar(&c.AdminPasswordIterations, "admin-password-iterations", c.AdminPasswordIterations,
		env("admin-password-iterations", "PBKDF2-HMAC-SHA256 iterations of new admin password hashes"))
	str(&c.KeysDir, "keys-dir", "directory of the server's keys (JWE, PAN, lookup, PIN, ZPK); filled on first start")
	dur(&c.HoldMaxAge, "hold-max-age", "age after which an unresolved hold expires and its funds return")
	dur(&c.IdempotencyTTL, "idempotency-ttl", "how long the answer to a message is kept for its retransmissions, and a closed hold stays in Redis")
	fs.Int64Var(&c.MaxAmount, "max-amount", c.MaxAmount, env("max-amount", "largest purchase in minor units (0: no limit)"))
	fs.Int64Var(&c.MaxCashAmount, "max-cash-amount", c.MaxCashAmount, env("max-cash-amount", "largest cash withdrawal in minor units (0: max-amount)"))
	fs.BoolVar(&c.AllowPartial, "allow-partial", c.AllowPartial, env("allow-partial", "approve partial amounts of purchases when funds are short"))
	fs.Int64Var(&c.VelocityMax, "velocity-max", c.VelocityMax, env("velocity-max", "most authorizations per card per velocity window (0: no limit)"))
	dur(&c.VelocityWindow, "velocity-window", "window of the per-card frequency limit")
	str(&c.LowBalanceWebhook, "low-balance-webhook", "the operator's webhook URL for partner_balance.low of every partner, delivered through the webhook outbox (optional)")
	str(&c.LowBalanceWebhookSecret, "low-balance-webhook-secret", "secret signing the low-balance webhook's deliveries (Antaca-Signature); unsigned when empty")
	dur(&c.LowBalanceCheckInterval, "low-balance-check-interval", "how often every partner balance is looked at for the low-balance notice")
	str(&c.SMTPAddr, "smtp-addr", "SMTP server host:port of the partners' notice e-mails (no e-mail when empty)")
	str(&c.SMTPFrom, "smtp-from", "sender address of the notice e-mails")
	str(&c.SMTPSecurity, "smtp-security", "starttls (required), starttls-optional, tls (implicit, port 465) or none")
	str(&c.SMTPAuth, "smtp-auth", "SMTP authentication: plain, login, cram-md5, scram-sha-256, auto or none (empty: plain with a username, else none)")
	str(&c.SMTPUsername, "smtp-username", "SMTP user name")
	str(&c.SMTPPassword, "smtp-password", "SMTP password")
	str(&c.SMTPCA, "smtp-ca", "PEM CA bundle verifying the SMTP server's certificate (system roots when empty)")
	dur(&c.OutboxRetention, "outbox-retention", "how long finished webhook deliveries, events and notice e-mails are kept")
	str(&c.KYCProviderURL, "kyc-provider-url", "KYC provider URL: starting KYC POSTs the customer's data there (optional; without it the partner sets the KYC status)")
	str(&c.KYCProviderSecret, "kyc-provider-secret", "secret signing the KYC requests and verifying the provider's callbacks (required with --kyc-provider-url)")
	str(&c.KYCCallbackURL, "kyc-callback-url", "public URL of POST /kyc/callback, sent to the provider in every request (optional)")
	fs.IntVar(&c.DecisionMaxInFlight, "decision-max-in-flight", c.DecisionMaxInFlight,
		env("decision-max-in-flight", "most decision requests in flight to one program's backend; more go to its stand-in policy"))
	fs.IntVar(&c.DecisionBreakerFailures, "decision-breaker-failures", c.DecisionBreakerFailures,
		env("decision-breaker-failures", "failures in a row of a program's backend that open its circuit (stand-in at once)"))
	dur(&c.DecisionBreakerCooldown, "decision-breaker-cooldown", "how long an open circuit sends a program's authorizations to stand-in before trying its backend again")
	fs.BoolVar(&c.WebhookAllowPrivate, "webhook-allow-private", c.WebhookAllowPrivate,
		env("webhook-allow-private", "allow partner webhook URLs over http and to loopback, link-local and private addresses (development and tests only)"))
	dur(&c.WebhookRetryFor, "webhook-retry-for", "how long a partner webhook delivery is retried before its endpoint is marked failing")
	dur(&c.WebhookTimeout, "webhook-timeout", "longest webhook delivery attempt; a receiver that does not answer by then is cut off")
	str(&c.LogLevel, "log-level", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "json or text")
	str(&c.DebugAddr, "debug-addr", "pprof listen address, e.g. 127.0.0.1:6060 (off when empty)")
	dur(&c.DrainTimeout, "drain-timeout", "longest SIGTERM drain")
}

func envName(flagName string) string {
	b := []byte(flagName)
	for i, ch := range b {
		switch {
		case ch == '-':
			b[i] = '_'
		case ch >= 'a' && ch <= 'z':
			b[i] = ch - 'a' + 'A'
		}
	}
	return string(b)
}
