package app

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/ledger"
)

// MinAdminPasswordLen is the shortest bootstrap admin password accepted:
// the same floor the REST API puts on every admin password it sets.
const MinAdminPasswordLen = 12

// maxAdminPasswordLen is the REST API's ceiling on admin passwords.
const maxAdminPasswordLen = 1024

// SettingsError lists every setting that is wrong, each as
// "--flag (env ANTACA_FLAG): what is wrong".
type SettingsError struct {
	Problems []string
}

func (e *SettingsError) Error() string {
	return "invalid settings:\n  " + strings.Join(e.Problems, "\n  ")
}

// settingCheck checks one setting: problem returns "" when the value is
// valid, otherwise what is wrong with it ("got X, want Y"; a secret's
// value is never shown).
type settingCheck struct {
	flag    string
	problem func(c *Config) string
}

// settingChecks is every check Validate makes, one row per setting (a
// setting may have several rows). A new numeric or duration setting needs
// a row here: TestEveryNumericSettingIsChecked fails until it has one.
var settingChecks = []settingCheck{
	{"redis-url", func(c *Config) string {
		parse := func(u string) error { _, err := redis.ParseURL(u); return err }
		if c.RedisCluster {
			parse = func(u string) error { _, err := redis.ParseClusterURL(u); return err }
		}
		if err := parse(c.RedisURL); err != nil {
			return fmt.Sprintf("got %q: %v", redactURL(c.RedisURL), err)
		}
		return ""
	}},
	{"database-url", func(c *Config) string {
		if _, err := pgx.ParseConfig(c.DatabaseURL); err != nil {
			return fmt.Sprintf("got %q, want a PostgreSQL URL (postgres://user@host:port/db)", redactURL(c.DatabaseURL))
		}
		return ""
	}},
	{"key-prefix", func(c *Config) string {
		if c.KeyPrefix == "" || strings.ContainsAny(c.KeyPrefix, "{}: \t\r\n") {
			return fmt.Sprintf("got %q, want a non-empty name without braces, colons or spaces", c.KeyPrefix)
		}
		return ""
	}},
	{"iso-addr", func(c *Config) string { return listenAddr(c.ISOAddr, false) }},
	{"iso-profile", func(c *Config) string {
		if _, err := iso.ProfileByName(c.ISOProfile); err != nil {
			return fmt.Sprintf("got %q, want %s", c.ISOProfile, strings.Join(iso.ProfileNames(), " or "))
		}
		return ""
	}},
	{"iso-framing", func(c *Config) string {
		if _, err := iso.ParseFraming(c.ISOFraming); err != nil {
			return fmt.Sprintf("got %q, want binary2 or ascii4", c.ISOFraming)
		}
		return ""
	}},
	{"iso-max-conns", func(c *Config) string { return atLeast(int64(c.ISOMaxConns), 1, "") }},
	{"iso-max-conns-per-ip", func(c *Config) string {
		if c.ISOMaxConnsPerIP == 0 {
			return "got 0, want at least 1 (or negative: no limit per address)"
		}
		return ""
	}},
	{"iso-allow", func(c *Config) string {
		if _, err := iso.ParseAllowList(c.ISOAllow); err != nil {
			return err.Error()
		}
		return ""
	}},
	{"iso-deadline", func(c *Config) string { return positive(c.ISODeadline) }},
	{"iso-queue-target", func(c *Config) string {
		if c.ISOQueueTarget < 0 || c.ISODeadline > 0 && c.ISOQueueTarget > c.ISODeadline {
			return fmt.Sprintf("got %v, want 0 (half the deadline) up to the deadline (%v)", c.ISOQueueTarget, c.ISODeadline)
		}
		return ""
	}},
	{"iso-idle-timeout", func(c *Config) string { return positive(c.ISOIdleTimeout) }},
	{"iso-tls-key", func(c *Config) string { return pair(c.ISOTLSCert, c.ISOTLSKey, "--iso-tls-cert") }},
	{"http-addr", func(c *Config) string { return listenAddr(c.HTTPAddr, false) }},
	{"tls-key", func(c *Config) string { return pair(c.TLSCert, c.TLSKey, "--tls-cert") }},
	{"admin-user", func(c *Config) string {
		if c.AdminUser == "" && c.AdminPassword != "" {
			return "missing: the bootstrap admin needs both a user and a password"
		}
		return ""
	}},
	{"admin-password", func(c *Config) string { // never echoes the password
		switch n := len(c.AdminPassword); {
		case c.AdminUser != "" && n == 0:
			return "missing: the bootstrap admin needs both a user and a password"
		case n > 0 && n < MinAdminPasswordLen:
			return fmt.Sprintf("too short (%d characters): the API requires at least %d", n, MinAdminPasswordLen)
		case n > maxAdminPasswordLen:
			return fmt.Sprintf("too long (%d characters): the API accepts at most %d", n, maxAdminPasswordLen)
		}
		return ""
	}},
	{"session-ttl", func(c *Config) string { return positive(c.SessionTTL) }},
	{"admin-session-ttl", func(c *Config) string { return positive(c.AdminSessionTTL) }},
	{"admin-password-iterations", func(c *Config) string {
		return atLeast(int64(c.AdminPasswordIterations), 10_000, "PBKDF2 iterations; fewer make stolen hashes cheap to guess")
	}},
	{"hold-max-age", func(c *Config) string { return positive(c.HoldMaxAge) }},
	{"idempotency-ttl", func(c *Config) string { return positive(c.IdempotencyTTL) }},
	{"max-amount", func(c *Config) string { return atLeast(c.MaxAmount, 0, "0 means no limit") }},
	{"max-cash-amount", func(c *Config) string { return atLeast(c.MaxCashAmount, 0, "0 means --max-amount") }},
	{"velocity-max", func(c *Config) string { return atLeast(c.VelocityMax, 0, "0 means no limit") }},
	{"velocity-window", func(c *Config) string { return positive(c.VelocityWindow) }},
	{"decision-max-in-flight", func(c *Config) string {
		return atLeast(int64(c.DecisionMaxInFlight), 1, "requests in flight per program's backend")
	}},
	{"decision-breaker-failures", func(c *Config) string {
		return atLeast(int64(c.DecisionBreakerFailures), 1, "failures in a row that open a backend's circuit")
	}},
	{"decision-breaker-cooldown", func(c *Config) string { return positive(c.DecisionBreakerCooldown) }},
	{"low-balance-webhook", func(c *Config) string {
		if c.LowBalanceWebhook == "" {
			return ""
		}
		u, err := url.Parse(c.LowBalanceWebhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "want an http or https URL (the value is not shown: it may hold a token)"
		}
		return ""
	}},
	{"low-balance-check-interval", func(c *Config) string { return positive(c.LowBalanceCheckInterval) }},
	{"smtp-addr", func(c *Config) string {
		if c.SMTPAddr == "" {
			return ""
		}
		if _, err := smtpConfig(c); err != nil {
			return strings.TrimPrefix(err.Error(), "smtp: ")
		}
		return ""
	}},
	{"smtp-security", func(c *Config) string {
		if !slices.Contains(api.SMTPSecurities, c.SMTPSecurity) {
			return fmt.Sprintf("got %q, want %s", c.SMTPSecurity, strings.Join(api.SMTPSecurities, ", "))
		}
		return ""
	}},
	{"smtp-auth", func(c *Config) string {
		if !slices.Contains(api.SMTPAuths, c.SMTPAuth) {
			return fmt.Sprintf("got %q, want %s or empty", c.SMTPAuth, strings.Join(api.SMTPAuths[1:], ", "))
		}
		return ""
	}},
	{"outbox-retention", func(c *Config) string { return positive(c.OutboxRetention) }},
	{"kyc-provider-url", func(c *Config) string { return optionalHTTPURL(c.KYCProviderURL) }},
	{"kyc-provider-secret", func(c *Config) string {
		if c.KYCProviderURL != "" && c.KYCProviderSecret == "" {
			return "missing: a KYC provider needs a shared secret (it signs the requests and the provider's callbacks)"
		}
		return ""
	}},
	{"kyc-callback-url", func(c *Config) string { return optionalHTTPURL(c.KYCCallbackURL) }},
	{"webhook-retry-for", func(c *Config) string { return positive(c.WebhookRetryFor) }},
	{"webhook-timeout", func(c *Config) string { return positive(c.WebhookTimeout) }},
	{"log-level", func(c *Config) string {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(c.LogLevel)); err != nil {
			return fmt.Sprintf("got %q, want debug, info, warn or error", c.LogLevel)
		}
		return ""
	}},
	{"log-format", func(c *Config) string {
		if c.LogFormat != "json" && c.LogFormat != "text" {
			return fmt.Sprintf("got %q, want json or text", c.LogFormat)
		}
		return ""
	}},
	{"answer-after", func(c *Config) string {
		if _, err := ledger.ParseAnswerAfter(c.AnswerAfter); err != nil || c.AnswerAfter == "" {
			return fmt.Sprintf("got %q, want postgres or redis", c.AnswerAfter)
		}
		return ""
	}},
	{"commit-interval", func(c *Config) string {
		if c.CommitInterval < 0 || c.CommitInterval > time.Second {
			return fmt.Sprintf("got %v, want 0 to 1s (such as 2ms)", c.CommitInterval)
		}
		return ""
	}},
	{"debug-addr", func(c *Config) string { return listenAddr(c.DebugAddr, true) }},
	{"drain-timeout", func(c *Config) string { return positive(c.DrainTimeout) }},
}

// Validate checks every setting and reports all that are wrong at once,
// as a *SettingsError. `antaca serve` refuses to start on one.
func (c *Config) Validate() error {
	var problems []string
	for _, ch := range settingChecks {
		if p := ch.problem(c); p != "" {
			problems = append(problems, fmt.Sprintf("--%s (env ANTACA_%s): %s", ch.flag, envName(ch.flag), p))
		}
	}
	if len(problems) > 0 {
		return &SettingsError{Problems: problems}
	}
	return nil
}

func atLeast(v, lowest int64, note string) string {
	if v >= lowest {
		return ""
	}
	if note != "" {
		return fmt.Sprintf("got %d, want %d or more (%s)", v, lowest, note)
	}
	return fmt.Sprintf("got %d, want %d or more", v, lowest)
}

func positive(d time.Duration) string {
	if d > 0 {
		return ""
	}
	return fmt.Sprintf("got %v, want a duration above 0 (such as 300ms, 10m or 1h)", d)
}

func listenAddr(addr string, optional bool) string {
	if addr == "" && optional {
		return ""
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Sprintf("got %q, want host:port or :port", addr)
	}
	return ""
}

func pair(cert, key, certFlag string) string {
	if (cert == "") != (key == "") {
		return "set it together with " + certFlag + " (both or neither)"
	}
	return ""
}

// redactURL hides a password in a URL before it is shown.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if err != nil {
			return "(unparsable URL)"
		}
		return s
	}
	return u.Redacted()
}

// optionalHTTPURL checks a URL that may be empty; its value is never
// shown (it may hold a token).
func optionalHTTPURL(v string) string {
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "want an http or https URL (the value is not shown: it may hold a token)"
	}
	return ""
}
