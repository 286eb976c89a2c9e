// Package demo runs `antaca demo`: the switch, the REST API, the panel,
// the simulator and the bureau in one process, on embedded stores — the
// ledger's Lua scripts in an in-process Redis (miniredis) and the journal
// and rows in one SQLite file — so that nothing needs installing. The
// production code paths run unchanged on them (docs/ledger.md, "Embedded
// stores").
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/simulator"
)

// retention is how long the demo keeps a closed hold, and the answer to a
// message, in its in-memory Redis, and how long a hold may stay open: the
// background load would otherwise fill memory with a week of holds (the
// production default). The SQLite file keeps every one.
const retention = 30 * time.Minute

// Options configure a demo. Zero values take the defaults named.
type Options struct {
	// Dir keeps the demo's state (default ./antaca-demo).
	Dir string
	// ISOAddr and HTTPAddr are loopback addresses (a missing host is
	// 127.0.0.1; defaults 127.0.0.1:8583 and 127.0.0.1:8080, the ports of
	// `antaca serve`).
	ISOAddr, HTTPAddr string
	// KeysDir holds the server's keys (default Dir/keys).
	KeysDir string
	// AdminUser (default admin) and AdminPassword: the admin the demo
	// creates on its first start. Without a password the demo makes one
	// and keeps it in Dir/admin-password.
	AdminUser, AdminPassword string
	// Load is the background load in messages per second (0: none).
	Load float64
	// LogLevel of the switch's log on Stderr (default warn).
	LogLevel string
	// Self is how the printed commands call antaca (default antaca).
	Self string

	Stdout, Stderr io.Writer
}

func (o *Options) defaults() error {
	if o.Dir == "" {
		o.Dir = "antaca-demo"
	}
	if o.ISOAddr == "" {
		o.ISOAddr = "127.0.0.1:8583"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = "127.0.0.1:8080"
	}
	var err error
	if o.ISOAddr, err = loopback("iso-addr", o.ISOAddr); err != nil {
		return err
	}
	if o.HTTPAddr, err = loopback("http-addr", o.HTTPAddr); err != nil {
		return err
	}
	if o.KeysDir == "" {
		o.KeysDir = filepath.Join(o.Dir, "keys")
	}
	if o.AdminUser == "" {
		o.AdminUser = "admin"
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	if o.Self == "" {
		o.Self = "antaca"
	}
	if o.Load < 0 {
		return fmt.Errorf("--load %g: want a rate of 0 or more messages per second", o.Load)
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	return nil
}

// SettingsError is a wrong option: the command line's fault.
type SettingsError struct{ msg string }

func (e *SettingsError) Error() string { return e.msg }

// loopback checks that addr listens on this machine only.
func loopback(flag, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", &SettingsError{fmt.Sprintf("--%s %q: want host:port", flag, addr)}
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", &SettingsError{fmt.Sprintf("--%s %q: the demo listens on loopback only (127.0.0.1, ::1); run `antaca serve` to serve a network", flag, addr)}
	}
	return net.JoinHostPort(host, port), nil
}

// Run runs the demo until ctx ends (Ctrl-C), then drains and flushes the
// journal to the SQLite file.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", o.Dir, err)
	}
	unlock, err := lockDir(o.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	if o.AdminPassword == "" {
		if o.AdminPassword, err = demoPassword(o.Dir); err != nil {
			return err
		}
	}

	cfg := app.DefaultConfig()
	cfg.ISOAddr, cfg.HTTPAddr, cfg.KeysDir = o.ISOAddr, o.HTTPAddr, o.KeysDir
	cfg.AdminUser, cfg.AdminPassword = o.AdminUser, o.AdminPassword
	cfg.LogLevel, cfg.LogFormat = o.LogLevel, "text"
	cfg.HoldMaxAge, cfg.IdempotencyTTL = retention, retention
	// Webhooks may go to a receiver on this machine (docs/webhook-receiver).
	cfg.WebhookAllowPrivate = true
	if err := cfg.Validate(); err != nil {
		return &SettingsError{err.Error()}
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(o.Stderr, &slog.HandlerOptions{Level: level}))

	started := time.Now()
	stores, err := OpenStores(ctx, o.Dir)
	if err != nil {
		return err
	}
	defer stores.Close()
	urlPath := filepath.Join(o.Dir, redisURLFile)
	if err := os.WriteFile(urlPath, []byte(stores.URL+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(urlPath)

	a, err := app.NewOn(ctx, cfg, log, stores.AppStores())
	if err != nil {
		return err
	}
	a.Start(context.WithoutCancel(ctx))
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
		defer cancel()
		return a.Shutdown(sctx)
	}
	defer func() { _ = stop() }()

	prog, seeded, err := ensureProgram(ctx, a, o.Dir)
	if err != nil {
		return err
	}
	showcase, ok := showcaseCard(prog)
	if !ok {
		return fmt.Errorf("%s holds no active virtual card", filepath.Join(o.Dir, cardsFile))
	}
	if err := writeScenario(o.Dir, showcase); err != nil {
		return err
	}
	loginOK := adminLogin(ctx, a.HTTPAddr(), o.AdminUser, o.AdminPassword)
	printBanner(o, a, prog, showcase, seeded, loginOK, time.Since(started))

	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		iss := &simulator.DirectIssuer{Ledger: a.Ledger, Issuing: a.Issuing}
		if _, err := simulator.RunBureau(bg, iss, simulator.BureauConfig{Poll: 5 * time.Second, Delay: 2 * time.Second}); err != nil && bg.Err() == nil {
			log.Warn("demo bureau stopped", "err", err)
		}
	}()
	if o.Load > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runLoad(bg, o, cfg, a, prog, log)
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
		fmt.Fprintln(o.Stdout, "\nstopping: draining the switch and flushing the journal ...")
	case runErr = <-a.Err():
		log.Error("component failed; stopping", "err", runErr)
	}
	stopBG()
	wg.Wait()
	if err := stop(); err != nil {
		return errors.Join(runErr, fmt.Errorf("stopping: %w", err))
	}
	if runErr == nil {
		fmt.Fprintf(o.Stdout, "stopped; the state is in %s and the next start picks it up\n", o.Dir)
	}
	return runErr
}

// demoPassword reads the admin password the demo made on its first start,
// or makes one.
func demoPassword(dir string) (string, error) {
	path := filepath.Join(dir, passwordFile)
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= app.MinAdminPasswordLen {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	pw := "demo-" + randomHex(8)
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", err
	}
	return pw, nil
}

// ensureProgram returns the program of the cards file when the ledger
// still has it; otherwise it seeds one (first start) and writes the file.
func ensureProgram(ctx context.Context, a *app.App, dir string) (*simulator.CardsFile, bool, error) {
	path := filepath.Join(dir, cardsFile)
	if f, err := simulator.LoadCardsFile(path); err == nil && len(f.Partners) > 0 {
		p := f.Partners[0]
		if _, err := a.Ledger.PartnerBalance(ctx, p.ID, p.BalanceID); err == nil {
			return f, false, nil
		}
	}
	iss := &simulator.DirectIssuer{Ledger: a.Ledger, Issuing: a.Issuing}
	opts := simulator.SeedOptions{
		PartnerID: "demo-bank", BIN: "99999901", Currency: "EUR", FundingModel: ledger.FundingDeposit,
		PartnerFunds: 999_999_999_999, Customers: 5, Funds: 1_000_000_000, Virtual: 2, Physical: 1, DigitalFirst: 1,
		Concurrency: 2,
	}
	f, err := simulator.Seed(ctx, iss, opts)
	if e, ok := simulator.AsAPIError(err); ok && e.Code == "ALREADY_EXISTS" || errors.Is(err, ledger.ErrBINInUse) {
		// The store has the demo's program but the cards file is gone: a
		// program of its own, with a random id and BIN (simulator.Seed's defaults).
		opts.PartnerID, opts.BIN = "", ""
		f, err = simulator.Seed(ctx, iss, opts)
	}
	if err != nil {
		return nil, false, fmt.Errorf("seeding the demo program: %w", err)
	}
	if err := f.Save(path); err != nil {
		return nil, false, err
	}
	return f, true, nil
}

// showcaseCard is the card the printed commands use: the first active
// virtual card.
func showcaseCard(f *simulator.CardsFile) (simulator.Card, bool) {
	cards := simulator.ActiveCards(f)
	sort.SliceStable(cards, func(i, j int) bool { return cards[i].Name < cards[j].Name })
	for _, c := range cards {
		if c.Type == simulator.TypeVirtual {
			return c, true
		}
	}
	return simulator.Card{}, false
}

// writeScenario writes the one-step scenario the first printed command runs.
func writeScenario(dir string, c simulator.Card) error {
	s := fmt.Sprintf(`# Written by antaca demo: one purchase authorization (0100) of 12.34 EUR
# on the demo's first virtual card. Run it with the command the demo prints.
name: demo-authorization
steps:
  - name: purchase
    mti: "0100"
    card: %s
    amount: 1234
`, c.Name)
	return os.WriteFile(filepath.Join(dir, scenarioFile), []byte(s), 0o600)
}

// adminLogin checks the printed admin login works (it may have been made
// with another password on an earlier start).
func adminLogin(ctx context.Context, httpAddr, user, password string) bool {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/admin/login", bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// runLoad sends the background load through the simulator, in runs of
// half a minute (a run's report is printed as one line, and its memory
// freed), until ctx ends.
func runLoad(ctx context.Context, o Options, cfg app.Config, a *app.App, f *simulator.CardsFile, log *slog.Logger) {
	n, err := simulator.Connect(ctx, simulator.NetworkConfig{Addr: a.ISOAddr(), Profile: cfg.ISOProfile, Framing: cfg.ISOFraming,
		Links: 2, Logger: log})
	if err != nil {
		log.Warn("demo load: cannot connect to the ISO listener", "err", err)
		return
	}
	defer n.Close()
	for ctx.Err() == nil {
		rep, err := simulator.RunLoad(ctx, n, simulator.LoadConfig{Rate: o.Load, Duration: 30 * time.Second, Cards: simulator.ActiveCards(f),
			Keys: a.Keys, PINShare: 0.2, UnknownBIN: f.Partners[0].BIN, Label: "demo load"})
		if err != nil {
			log.Warn("demo load stopped", "err", err)
			return
		}
		if ctx.Err() != nil {
			return
		}
		var codes []string
		for _, c := range rep.CodeNames() {
			codes = append(codes, fmt.Sprintf("%s×%d", c, rep.Codes[c]))
		}
		fmt.Fprintf(o.Stdout, "%s load: %d messages in %.0fs, %d answered (DE39 %s), %d timed out; p50 %.1f ms, p99 %.1f ms\n",
			time.Now().Format("15:04:05"), rep.Requests, rep.WindowSeconds, rep.Answers, strings.Join(codes, " "), rep.Timeouts,
			rep.Latency.P50, rep.Latency.P99)
	}
}
