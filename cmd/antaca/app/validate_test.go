package app

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// TestValidateSettings changes one setting of the defaults at a time: a
// wrong value is refused with a problem naming its flag and environment
// variable, an edge value that is allowed passes.
func TestValidateSettings(t *testing.T) {
	if err := func() error { c := DefaultConfig(); return c.Validate() }(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" when valid; else a substring of the only problem
	}{
		{"redis url", func(c *Config) { c.RedisURL = "http://x" }, "--redis-url (env ANTACA_REDIS_URL): got"},
		{"redis cluster url", func(c *Config) { c.RedisCluster = true; c.RedisURL = "redis://h1:6379?addr=h2:6379" }, ""},
		{"database url", func(c *Config) { c.DatabaseURL = "postgres://u:pw@h:notaport/db" }, "--database-url (env ANTACA_DATABASE_URL): got"},
		{"key prefix empty", func(c *Config) { c.KeyPrefix = "" }, "--key-prefix (env ANTACA_KEY_PREFIX): got \"\""},
		{"key prefix brace", func(c *Config) { c.KeyPrefix = "a{b" }, "--key-prefix"},
		{"iso addr", func(c *Config) { c.ISOAddr = "8583" }, `--iso-addr (env ANTACA_ISO_ADDR): got "8583", want host:port`},
		{"iso profile", func(c *Config) { c.ISOProfile = "iso93" }, `--iso-profile (env ANTACA_ISO_PROFILE): got "iso93", want cmf or iso87`},
		{"iso framing", func(c *Config) { c.ISOFraming = "ascii2" }, `--iso-framing (env ANTACA_ISO_FRAMING): got "ascii2"`},
		{"iso max conns zero", func(c *Config) { c.ISOMaxConns = 0 }, "--iso-max-conns (env ANTACA_ISO_MAX_CONNS): got 0, want 1 or more"},
		{"iso max conns one", func(c *Config) { c.ISOMaxConns = 1 }, ""},
		{"iso deadline zero", func(c *Config) { c.ISODeadline = 0 }, "--iso-deadline (env ANTACA_ISO_DEADLINE): got 0s, want a duration above 0"},
		{"iso deadline negative", func(c *Config) { c.ISODeadline = -time.Second }, "--iso-deadline"},
		{"iso queue target over the deadline", func(c *Config) { c.ISOQueueTarget = time.Second }, "--iso-queue-target (env ANTACA_ISO_QUEUE_TARGET): got 1s, want 0"},
		{"iso queue target negative", func(c *Config) { c.ISOQueueTarget = -time.Millisecond }, "--iso-queue-target"},
		{"iso queue target 50ms", func(c *Config) { c.ISOQueueTarget = 50 * time.Millisecond }, ""},
		{"iso idle timeout", func(c *Config) { c.ISOIdleTimeout = 0 }, "--iso-idle-timeout (env ANTACA_ISO_IDLE_TIMEOUT): got 0s"},
		{"iso tls cert alone", func(c *Config) { c.ISOTLSCert = "c.pem" }, "--iso-tls-key (env ANTACA_ISO_TLS_KEY): set it together with --iso-tls-cert"},
		{"iso tls key alone", func(c *Config) { c.ISOTLSKey = "k.pem" }, "--iso-tls-key"},
		{"iso tls pair", func(c *Config) { c.ISOTLSCert, c.ISOTLSKey = "c.pem", "k.pem" }, ""},
		{"http addr", func(c *Config) { c.HTTPAddr = "" }, `--http-addr (env ANTACA_HTTP_ADDR): got ""`},
		{"tls cert alone", func(c *Config) { c.TLSCert = "c.pem" }, "--tls-key (env ANTACA_TLS_KEY): set it together with --tls-cert"},
		{"admin password short", func(c *Config) { c.AdminUser, c.AdminPassword = "admin", "secret" },
			"--admin-password (env ANTACA_ADMIN_PASSWORD): too short (6 characters): the API requires at least 12"},
		{"admin password 12", func(c *Config) { c.AdminUser, c.AdminPassword = "admin", "twelve-chars" }, ""},
		{"admin password long", func(c *Config) { c.AdminUser, c.AdminPassword = "admin", strings.Repeat("p", 1025) }, "--admin-password"},
		{"admin user without password", func(c *Config) { c.AdminUser = "admin" }, "--admin-password (env ANTACA_ADMIN_PASSWORD): missing"},
		{"admin password without user", func(c *Config) { c.AdminPassword = "long enough secret" }, "--admin-user (env ANTACA_ADMIN_USER): missing"},
		{"session ttl", func(c *Config) { c.SessionTTL = 0 }, "--session-ttl (env ANTACA_SESSION_TTL): got 0s"},
		{"hold max age", func(c *Config) { c.HoldMaxAge = -time.Hour }, "--hold-max-age (env ANTACA_HOLD_MAX_AGE): got -1h0m0s"},
		{"max amount negative", func(c *Config) { c.MaxAmount = -5 }, "--max-amount (env ANTACA_MAX_AMOUNT): got -5, want 0 or more (0 means no limit)"},
		{"max amount no limit", func(c *Config) { c.MaxAmount = 0 }, ""},
		{"max cash amount negative", func(c *Config) { c.MaxCashAmount = -1 }, "--max-cash-amount (env ANTACA_MAX_CASH_AMOUNT): got -1, want 0 or more"},
		{"velocity max negative", func(c *Config) { c.VelocityMax = -1 }, "--velocity-max (env ANTACA_VELOCITY_MAX): got -1"},
		{"velocity window", func(c *Config) { c.VelocityWindow = 0 }, "--velocity-window (env ANTACA_VELOCITY_WINDOW): got 0s"},
		{"webhook scheme", func(c *Config) { c.LowBalanceWebhook = "ftp://h/x?token=s3cr3t" }, "--low-balance-webhook (env ANTACA_LOW_BALANCE_WEBHOOK): want an http"},
		{"webhook ok", func(c *Config) { c.LowBalanceWebhook = "https://partner.example/hook" }, ""},
		{"log level", func(c *Config) { c.LogLevel = "verbose" }, `--log-level (env ANTACA_LOG_LEVEL): got "verbose"`},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, `--log-format (env ANTACA_LOG_FORMAT): got "xml", want json or text`},
		{"answer after", func(c *Config) { c.AnswerAfter = "disk" }, `--answer-after (env ANTACA_ANSWER_AFTER): got "disk", want postgres or redis`},
		{"debug addr", func(c *Config) { c.DebugAddr = "6060" }, `--debug-addr (env ANTACA_DEBUG_ADDR): got "6060"`},
		{"debug addr off", func(c *Config) { c.DebugAddr = "" }, ""},
		{"drain timeout", func(c *Config) { c.DrainTimeout = 0 }, "--drain-timeout (env ANTACA_DRAIN_TIMEOUT): got 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var se *SettingsError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a *SettingsError", err)
			}
			if len(se.Problems) != 1 || !strings.Contains(se.Problems[0], tt.want) {
				t.Fatalf("problems %q, want exactly one containing %q", se.Problems, tt.want)
			}
		})
	}
}

// TestValidateNeverShowsSecrets: the admin password and the password in
// a URL stay out of the message.
func TestValidateNeverShowsSecrets(t *testing.T) {
	c := DefaultConfig()
	c.AdminUser, c.AdminPassword = "admin", "hunter2"
	c.DatabaseURL = "postgres://u:pg-secret@h:notaport/db"
	c.RedisURL = "http://u:redis-secret@h/0"
	c.LowBalanceWebhook = "ftp://h/x?token=hook-secret"
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, secret := range []string{"hunter2", "pg-secret", "redis-secret", "hook-secret"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("message shows %q:\n%v", secret, err)
		}
	}
	if n := len(err.(*SettingsError).Problems); n != 4 {
		t.Errorf("%d problems, want 4 (all reported at once):\n%v", n, err)
	}
}

// TestEveryNumericSettingIsChecked: each int, int64 and duration flag of
// serve has a row in settingChecks, so a new one cannot be forgotten.
func TestEveryNumericSettingIsChecked(t *testing.T) {
	checked := map[string]bool{}
	for _, ch := range settingChecks {
		checked[ch.flag] = true
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c := DefaultConfig()
	c.RegisterFlags(fs)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		if !checked[f.Name] {
			if typ, _ := flag.UnquoteUsage(f); typ == "int" || typ == "duration" || typ == "float" || typ == "uint" {
				t.Errorf("--%s (%s) has no row in settingChecks", f.Name, typ)
			}
			return
		}
		n++
	})
	for name := range checked {
		if fs.Lookup(name) == nil {
			t.Errorf("settingChecks names --%s, which is not a flag", name)
		}
	}
	if n == 0 {
		t.Fatal("no flag checked")
	}
}
