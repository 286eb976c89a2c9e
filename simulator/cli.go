package simulator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
)

// Command is `antaca sim` with its subcommands seed, run, load and bureau.
// Output goes to os.Stdout, progress and logs to os.Stderr.
func Command() *ffcli.Command {
	return CommandWithOutput(os.Stdout, os.Stderr)
}

// CommandWithOutput is Command writing to stdout and stderr (tests).
func CommandWithOutput(stdout, stderr io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:       "sim",
		ShortUsage: "antaca sim <seed|run|load|bureau|kyc-provider|partner|webhooks> [flags]",
		ShortHelp:  "the bundled card network: provisioning, scenarios, load, bureau, KYC provider, a partner's decisioning backend and webhook endpoint",
		LongHelp: "The simulator connects to the switch as a processor does (sign-on, echo on idle,\n" +
			"reconnect with backoff, several links, optional TLS, either ISO profile and framing)\n" +
			"and provisions through the REST API (or in process with --direct).\n" +
			"Every flag has an environment variable ANTACA_<FLAG> (dashes as underscores).",
		FlagSet: flag.NewFlagSet("antaca sim", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{
			seedCommand(stdout, stderr), runCommand(stdout, stderr), loadCommand(stdout, stderr), bureauCommand(stdout, stderr),
			kycProviderCommand(stdout, stderr),
			partnerCommand(stdout, stderr),
			webhooksCommand(stdout, stderr),
		},
		Exec: func(context.Context, []string) error { return flag.ErrHelp },
	}
}

var envOptions = []ff.Option{ff.WithEnvVarPrefix("ANTACA")}

// netFlags are the ISO link flags.
type netFlags struct {
	addr, profile, framing string
	links                  int
	tls, insecure          bool
	tlsCA                  string
	echo                   time.Duration
}

func (f *netFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "iso-addr", "127.0.0.1:8583", "the switch's ISO 8583 address")
	fs.StringVar(&f.profile, "iso-profile", "cmf", "ISO profile: cmf or iso87")
	fs.StringVar(&f.framing, "iso-framing", "binary2", "length header: binary2 or ascii4")
	fs.IntVar(&f.links, "links", 2, "ISO connections to hold open")
	fs.BoolVar(&f.tls, "iso-tls", false, "speak TLS on the ISO links")
	fs.StringVar(&f.tlsCA, "iso-tls-ca", "", "PEM CA bundle verifying the switch's ISO certificate")
	fs.BoolVar(&f.insecure, "iso-tls-insecure", false, "do not verify the switch's ISO certificate (test setups only)")
	fs.DurationVar(&f.echo, "echo-interval", 30*time.Second, "send an 0800 echo on a link idle this long (0: never)")
}

func (f *netFlags) connect(ctx context.Context, log *slog.Logger) (*Network, error) {
	cfg := NetworkConfig{Addr: f.addr, Profile: f.profile, Framing: f.framing, Links: f.links, EchoInterval: f.echo, Logger: log}
	if f.tls {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.insecure} //nolint:gosec // explicit test-only flag
		if f.tlsCA != "" {
			pool, err := loadPool(f.tlsCA)
			if err != nil {
				return nil, err
			}
			tc.RootCAs = pool
		}
		cfg.TLS = tc
	}
	n, err := Connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = n.WaitUp(wctx, f.links) // links that are slow to come up keep retrying
	return n, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// issuerFlags choose how issuer actions are performed.
type issuerFlags struct {
	apiURL, apiCA, adminUser, adminPassword string
	partnerCACert, partnerCAKey, certDir    string
	direct                                  bool
	redisURL, keyPrefix                     string
}

func (f *issuerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.apiURL, "api-url", DefaultAPIURL, "REST API base URL (https://... when the switch has ANTACA_TLS_CERT)")
	fs.StringVar(&f.apiCA, "api-ca", "", "PEM CA bundle verifying the API's HTTPS certificate (system roots when empty)")
	fs.StringVar(&f.adminUser, "admin-user", "", "admin user for /admin calls (partners, partner balances, bureau)")
	fs.StringVar(&f.adminPassword, "admin-password", "", "admin password")
	fs.StringVar(&f.partnerCACert, "partner-ca-cert", "", "partner CA certificate (PEM) to sign client certificates of created partners")
	fs.StringVar(&f.partnerCAKey, "partner-ca-key", "", "partner CA private key (PEM)")
	fs.StringVar(&f.certDir, "cert-dir", "sim-certs", "where partner client certificates are written")
	fs.BoolVar(&f.direct, "direct", false, "perform issuer actions in process on Redis (no REST API, no credentials; what to use with `make run`): needs --redis-url, --key-prefix and --keys-dir of the switch")
	fs.StringVar(&f.redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL of the switch (with --direct)")
	fs.StringVar(&f.keyPrefix, "key-prefix", "antaca", "Redis key prefix of the switch (with --direct)")
}

// DefaultAPIURL is what `antaca serve` listens on by default (`make run`):
// plain HTTP on port 8080.
const DefaultAPIURL = "http://127.0.0.1:8080"

// directHint is how to act without the REST API.
const directHint = "or act in process on the switch's Redis instead, with --direct (its --redis-url, --key-prefix and --keys-dir default to those of `make run`; give the switch's own otherwise)"

// checkREST tells, before anything is provisioned, why the REST API
// cannot serve a command: admin credentials, the partner CA, the scheme,
// reachability and (for partner calls, which identify the partner by its
// TLS client certificate) plain HTTP. It lists every problem at once and
// suggests --direct. With --direct it checks nothing.
func (f *issuerFlags) checkREST(ctx context.Context, cmd string, is Issuer, partnerCalls bool) error {
	r, ok := is.(*RESTIssuer)
	if f.direct || !ok {
		return nil
	}
	var problems []string
	if f.adminUser == "" || f.adminPassword == "" {
		problems = append(problems, "no admin credentials: give --admin-user and --admin-password (the switch's ANTACA_ADMIN_USER and ANTACA_ADMIN_PASSWORD)")
	}
	if partnerCalls && (f.partnerCACert == "" || f.partnerCAKey == "") {
		problems = append(problems, "no partner CA: give --partner-ca-cert and --partner-ca-key (the CA the switch trusts as ANTACA_PARTNER_CA) so that the new partner gets a client certificate")
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.Ping(pctx); err != nil {
		problems = append(problems, err.Error())
	} else if partnerCalls && r.PlainHTTP() {
		problems = append(problems, "the API serves plain HTTP, and partner calls (/secure) need HTTPS with a client certificate (serve with ANTACA_TLS_CERT, ANTACA_TLS_KEY and ANTACA_PARTNER_CA)")
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("sim %s cannot work through the REST API at %s:\n  - %s\n%s", cmd, r.URL(), strings.Join(problems, "\n  - "), directHint)
}

// issuer builds the Issuer (and BureauAPI) the flags ask for, and a close
// function.
func (f *issuerFlags) issuer(keys *cardcrypto.Keys) (interface {
	Issuer
	BureauAPI
}, func(), error) {
	if f.direct {
		if keys == nil {
			return nil, nil, errors.New("--direct needs the switch's --keys-dir")
		}
		opts, err := redis.ParseURL(f.redisURL)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing redis url: %w", err)
		}
		rdb := redis.NewClient(opts)
		l, err := ledger.New(rdb, ledger.Options{Prefix: f.keyPrefix})
		if err != nil {
			_ = rdb.Close()
			return nil, nil, err
		}
		return &DirectIssuer{Ledger: l, Issuing: &issuing.Service{Store: l, Keys: keys}}, func() { _ = rdb.Close() }, nil
	}
	cfg := RESTConfig{BaseURL: f.apiURL, AdminUser: f.adminUser, AdminPassword: f.adminPassword, CertDir: f.certDir}
	if f.apiCA != "" {
		pool, err := loadPool(f.apiCA)
		if err != nil {
			return nil, nil, err
		}
		cfg.RootCAs = pool
	}
	if f.partnerCACert != "" || f.partnerCAKey != "" {
		ca, err := LoadCA(f.partnerCACert, f.partnerCAKey)
		if err != nil {
			return nil, nil, err
		}
		cfg.PartnerCA = ca
	}
	r, err := NewRESTIssuer(cfg)
	if err != nil {
		return nil, nil, err
	}
	return r, func() {}, nil
}

// open loads the keys directory (required with --direct, which signs PIN
// blocks and issues cards in process) and returns the issuer to act with.
func (f *issuerFlags) open(keysDir string) (*cardcrypto.Keys, interface {
	Issuer
	BureauAPI
}, func(), error) {
	keys, err := loadKeys(keysDir, f.direct)
	if err != nil {
		return nil, nil, nil, err
	}
	is, closeFn, err := f.issuer(keys)
	if err != nil {
		return nil, nil, nil, err
	}
	return keys, is, closeFn, nil
}

// loadKeys reads the switch's keys directory; it never creates keys. An
// absent directory gives nil keys when optional.
func loadKeys(dir string, required bool) (*cardcrypto.Keys, error) {
	if _, err := os.Stat(filepath.Join(dir, cardcrypto.FileZPK)); err != nil {
		if required {
			return nil, fmt.Errorf("keys directory %s: %w", dir, err)
		}
		return nil, nil
	}
	return cardcrypto.LoadOrCreate(dir)
}

func logger(stderr io.Writer, verbose bool) *slog.Logger {
	lv := slog.LevelWarn
	if verbose {
		lv = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
}

func seedCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("antaca sim seed", flag.ContinueOnError)
	var iss issuerFlags
	iss.register(fs)
	var o SeedOptions
	out := fs.String("cards", "sim-cards.json", "cards file to write (.json, .yaml or .yml)")
	keysDir := fs.String("keys-dir", "./keys", "the switch's keys directory (with --direct)")
	fs.StringVar(&o.PartnerID, "partner-id", "", "id of the program to create (random when empty)")
	fs.StringVar(&o.BIN, "bin", "", "BIN of the program, 6-8 digits (random 9xxxxxxx when empty)")
	fs.StringVar(&o.Currency, "currency", "EUR", "program currency")
	fs.StringVar(&o.FundingModel, "funding", "DEPOSIT", "funding model: DEPOSIT or CREDIT")
	fs.Int64Var(&o.PartnerFunds, "partner-funds", 999_999_999_999, "partner balance to load (minor units, at most 999999999999)")
	fs.IntVar(&o.Customers, "customers", 10, "customers to register, each with one balance")
	fs.Int64Var(&o.Funds, "funds", 100_000_000, "money loaded into each customer balance (minor units)")
	fs.IntVar(&o.Virtual, "virtual", 2, "virtual cards per customer")
	fs.IntVar(&o.Physical, "physical", 1, "physical cards per customer (ordered, personalised, linked, activated, PIN set)")
	fs.IntVar(&o.DigitalFirst, "digital-first", 1, "digital-first copies per customer (PIN set)")
	fs.BoolVar(&o.ExternalBureau, "external-bureau", false, "wait for a running `sim bureau` to personalise physical cards")
	fs.IntVar(&o.Concurrency, "concurrency", 4, "customers provisioned at once")
	verbose := fs.Bool("v", false, "log every card (masked)")
	return &ffcli.Command{
		Name:       "seed",
		ShortUsage: "antaca sim seed [flags]",
		ShortHelp:  "provision a program, customers, balances and cards; write the cards file",
		LongHelp: "Provisions through the REST API: partner and partner balance (admin), customers with\n" +
			"KYC (partner mTLS), funded balances, and cards of each type: virtual (JWE), physical\n" +
			"(ordered -> bureau -> linked -> activated, PIN set over JWE) and digital-first.\n" +
			"The cards file is the only place PANs appear in clear: it is test data.",
		FlagSet: fs,
		Options: envOptions,
		Exec: func(ctx context.Context, _ []string) error {
			_, is, closeFn, err := iss.open(*keysDir)
			if err != nil {
				return err
			}
			defer closeFn()
			if err := iss.checkREST(ctx, "seed", is, true); err != nil {
				return err
			}
			o.Logger = logger(stderr, *verbose)
			f, err := Seed(ctx, is, o)
			if err != nil {
				return err
			}
			if !iss.direct {
				f.API = iss.apiURL
			}
			if err := f.Save(*out); err != nil {
				return err
			}
			counts := map[string]int{}
			for _, c := range f.Cards {
				counts[c.Type]++
			}
			fmt.Fprintf(stdout, "seeded partner %s (BIN %s): %d customers, %d virtual, %d physical, %d digital-first cards -> %s\n",
				f.Partners[0].ID, f.Partners[0].BIN, len(f.Customers), counts[TypeVirtual], counts[TypePhysical], counts[TypeDigitalFirst], *out)
			return nil
		},
	}
}

func runCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("antaca sim run", flag.ContinueOnError)
	var nf netFlags
	nf.register(fs)
	var iss issuerFlags
	iss.register(fs)
	cards := fs.String("cards", "sim-cards.json", "cards file from `sim seed` (its partner is the scenarios' default)")
	keysDir := fs.String("keys-dir", "./keys", "the switch's keys directory, for DE52 PIN blocks")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for one answer")
	verbose := fs.Bool("v", false, "log link events")
	return &ffcli.Command{
		Name:       "run",
		ShortUsage: "antaca sim run [flags] FILE|DIR...",
		ShortHelp:  "run scenario files; exit non-zero on any failed step",
		LongHelp:   "Runs YAML scenarios (see simulator/scenarios/README.md) and prints PASS/FAIL per step\nand a summary. A failing expectation names scenario, step, field, want and got.",
		FlagSet:    fs,
		Options:    envOptions,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) == 0 {
				return errors.New("give scenario files or directories")
			}
			scenarios, err := LoadScenarios(args...)
			if err != nil {
				return err
			}
			cf, err := LoadCardsFile(*cards)
			if err != nil {
				return err
			}
			keys, is, closeFn, err := iss.open(*keysDir)
			if err != nil {
				return err
			}
			defer closeFn()
			n, err := nf.connect(ctx, logger(stderr, *verbose))
			if err != nil {
				return err
			}
			defer n.Close()
			sum := RunScenarios(ctx, RunConfig{Network: n, Issuer: is, Keys: keys, Cards: cf, Timeout: *timeout, Out: stdout}, scenarios)
			if !sum.OK() {
				return fmt.Errorf("%d step(s) failed in %d scenario(s)", sum.StepsFailed, sum.ScenariosFailed)
			}
			return nil
		},
	}
}

func loadCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("antaca sim load", flag.ContinueOnError)
	var nf netFlags
	nf.register(fs)
	var cfg LoadConfig
	cards := fs.String("cards", "sim-cards.json", "cards file from `sim seed`")
	keysDir := fs.String("keys-dir", "./keys", "the switch's keys directory, for DE52 PIN blocks (optional)")
	fs.Float64Var(&cfg.Rate, "rate", 100, "messages per second (open model: scheduled regardless of answers)")
	fs.Float64Var(&cfg.RampFrom, "ramp-from", 0, "start rate of a linear ramp up to --rate (with --ramp)")
	fs.DurationVar(&cfg.RampDuration, "ramp", 0, "length of the linear ramp")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send (0: until --count)")
	fs.IntVar(&cfg.Count, "count", 0, "how many messages to send (0: until --duration)")
	fs.DurationVar(&cfg.Timeout, "timeout", 2*time.Second, "answer timeout; timed-out 0100/0200 are reversed with 0400")
	mix := fs.String("mix", DefaultMix.String(), "weights of auth, financial, balance, reversal, completion, decline")
	fs.Int64Var(&cfg.MinAmount, "min-amount", 100, "smallest amount (minor units)")
	fs.Int64Var(&cfg.MaxAmount, "max-amount", 5000, "largest amount (minor units)")
	fs.Float64Var(&cfg.PINShare, "pin-share", 0.2, "share of messages with DE52 on PIN cards (needs --keys-dir)")
	jsonOut := fs.String("json", "", "write the report as JSON to this file")
	plot := fs.String("plot", "", "write latency and rate over time: .svg or .png picture, or (any other name) an HTML page with the summary")
	quiet := fs.Bool("quiet", false, "no progress reports")
	fs.DurationVar(&cfg.ProgressInterval, "progress-interval", 5*time.Second, "one progress line this often when stderr is not a terminal (a terminal gets a live bar)")
	verbose := fs.Bool("v", false, "log link events")
	return &ffcli.Command{
		Name:       "load",
		ShortUsage: "antaca sim load [flags]",
		ShortHelp:  "open-model load at a fixed (or ramped) rate; latency from scheduled send time",
		FlagSet:    fs,
		Options:    envOptions,
		Exec: func(ctx context.Context, _ []string) error {
			m, err := ParseMix(*mix)
			if err != nil {
				return err
			}
			cfg.Mix = m
			cf, err := LoadCardsFile(*cards)
			if err != nil {
				return err
			}
			if cfg.Keys, err = loadKeys(*keysDir, false); err != nil {
				return err
			}
			cfg.Cards = ActiveCards(cf)
			cfg.UnknownBIN = cf.Partners[0].BIN
			if !*quiet {
				cfg.Progress = stderr
			}
			n, err := nf.connect(ctx, logger(stderr, *verbose))
			if err != nil {
				return err
			}
			defer n.Close()
			rep, err := RunLoad(ctx, n, cfg)
			if err != nil {
				return err
			}
			rep.WriteText(stdout)
			if *jsonOut != "" {
				if err := rep.WriteJSON(*jsonOut); err != nil {
					return err
				}
			}
			if *plot != "" {
				if err := rep.WritePlot(*plot); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// ActiveCards are the cards of a cards file that can transact.
func ActiveCards(f *CardsFile) []Card {
	var out []Card
	for _, c := range f.Cards {
		if c.PAN != "" && (c.Status == "" || strings.EqualFold(c.Status, "ACTIVE")) {
			out = append(out, c)
		}
	}
	return out
}

func bureauCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("antaca sim bureau", flag.ContinueOnError)
	var iss issuerFlags
	iss.register(fs)
	keysDir := fs.String("keys-dir", "./keys", "the switch's keys directory (with --direct)")
	var cfg BureauConfig
	fs.DurationVar(&cfg.Poll, "poll", 2*time.Second, "how often to ask for ordered cards")
	fs.DurationVar(&cfg.Delay, "delay", 2*time.Second, "personalisation time of one card")
	fs.BoolVar(&cfg.Once, "once", false, "personalise what is ordered now, then exit")
	return &ffcli.Command{
		Name:       "bureau",
		ShortUsage: "antaca sim bureau [flags]",
		ShortHelp:  "play the personalisation bureau: personalise ordered physical cards so they get linked",
		LongHelp:   "Polls GET " + BureauOrdersPath + " (admin) and reports each card personalised at\nPOST " + BureauReportPath + " after --delay; the platform then links the card.",
		FlagSet:    fs,
		Options:    envOptions,
		Exec: func(ctx context.Context, _ []string) error {
			_, is, closeFn, err := iss.open(*keysDir)
			if err != nil {
				return err
			}
			defer closeFn()
			if err := iss.checkREST(ctx, "bureau", is, false); err != nil {
				return err
			}
			cfg.Out = stdout
			n, err := RunBureau(ctx, is, cfg)
			fmt.Fprintf(stdout, "bureau: %d card(s) personalised\n", n)
			return err
		},
	}
}

func webhooksCommand(stdout, _ io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("antaca sim webhooks", flag.ContinueOnError)
	addr := fs.String("webhook-addr", "127.0.0.1:8092", "listen address (port 0: any free port; the address is printed)")
	secret := fs.String("webhook-secret", "", "the endpoint's signing secret (from POST /secure/webhooks)")
	report := fs.String("report", "", "write what was received as JSON to this file on exit")
	return &ffcli.Command{
		Name:       "webhooks",
		ShortUsage: "antaca sim webhooks --webhook-secret S [flags]",
		ShortHelp:  "play a partner's webhook endpoint: verify every delivery's signature, count, answer 204",
		LongHelp: "Serves http://<addr>/ (any path). Register it as an endpoint with\n" +
			"ANTACA_WEBHOOK_ALLOW_PRIVATE=true on the switch (http on loopback). A delivery whose\n" +
			"Antaca-Signature does not verify is refused with 400. On exit (SIGINT, SIGTERM) it prints,\n" +
			"and with --report writes, the deliveries, distinct events and refusals.",
		FlagSet: fs,
		Options: envOptions,
		Exec: func(ctx context.Context, _ []string) error {
			if *secret == "" {
				return errors.New("webhooks: --webhook-secret is required")
			}
			ln, err := net.Listen("tcp", *addr)
			if err != nil {
				return fmt.Errorf("webhooks: %w", err)
			}
			s := &WebhookSink{Secret: *secret}
			fmt.Fprintf(stdout, "webhooks: listening on http://%s/\n", ln.Addr())
			err = ServeWebhookSink(ctx, ln, s, *report)
			st := s.Stats()
			fmt.Fprintf(stdout, "webhooks: %d deliveries, %d events, %d refused\n", st.Deliveries, st.Events, st.Refused)
			return err
		},
	}
}

func kycProviderCommand(stdout, _ io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("antaca sim kyc-provider", flag.ContinueOnError)
	addr := fs.String("kyc-addr", "127.0.0.1:8091", "listen address (the switch's ANTACA_KYC_PROVIDER_URL is http://<this>/)")
	p := &KYCProvider{}
	fs.StringVar(&p.Secret, "kyc-secret", "", "shared secret: the switch's ANTACA_KYC_PROVIDER_SECRET")
	lastNames := fs.String("reject-last-names", "", "comma-separated last names to reject (case-insensitive)")
	holdNames := fs.String("hold-last-names", "", "comma-separated last names never answered (the check stays open)")
	fs.IntVar(&p.Rule.RejectPercent, "reject-percent", 0, "share of the other customers to reject, 0-100 (stable per customer id)")
	fs.BoolVar(&p.Rule.Sync, "sync", false, "answer the result in the answer to the request instead of a callback")
	fs.DurationVar(&p.Delay, "delay", time.Second, "time between a request and its callback")
	fs.StringVar(&p.CallbackURL, "callback-url", "", "callback URL (default: the request's callbackUrl, from the switch's ANTACA_KYC_CALLBACK_URL)")
	return &ffcli.Command{
		Name:       "kyc-provider",
		ShortUsage: "antaca sim kyc-provider --kyc-secret S [flags]",
		ShortHelp:  "play the KYC provider: verify or reject customers by a rule, and call the switch back",
		LongHelp: "Takes the switch's signed KYC requests (POST /), answers 202 with a reference and,\n" +
			"after --delay, POSTs {id, reference, status} signed with the same secret to the callback URL.\n" +
			"Customers whose last name is in --reject-last-names, and --reject-percent of the others,\n" +
			"are REJECTED.",
		FlagSet: fs,
		Options: envOptions,
		Exec: func(ctx context.Context, _ []string) error {
			if p.Secret == "" {
				return errors.New("kyc-provider: --kyc-secret is required (the switch's ANTACA_KYC_PROVIDER_SECRET)")
			}
			if p.Rule.RejectPercent < 0 || p.Rule.RejectPercent > 100 {
				return errors.New("kyc-provider: --reject-percent must be 0 to 100")
			}
			for _, n := range strings.Split(*lastNames, ",") {
				if n = strings.TrimSpace(n); n != "" {
					p.Rule.RejectLastNames = append(p.Rule.RejectLastNames, n)
				}
			}
			for _, n := range strings.Split(*holdNames, ",") {
				if n = strings.TrimSpace(n); n != "" {
					p.Rule.HoldLastNames = append(p.Rule.HoldLastNames, n)
				}
			}
			p.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
			fmt.Fprintf(stdout, "kyc-provider: listening on %s (reject last names %v, %d%% of the others)\n", *addr, p.Rule.RejectLastNames, p.Rule.RejectPercent)
			return ServeKYCProvider(ctx, *addr, p)
		},
	}
}
