package app_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/iso/isoclient"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/antaca/antaca/ledger/pgstore"
)

// harness is a switch started for one test on real Redis and Postgres.
type harness struct {
	t       *testing.T
	App     *app.App
	Config  app.Config
	ctx     context.Context
	stopped bool
	logs    *ledgertest.LogBuffer // everything the switch logged, as JSON lines, debug included
}

// startApp starts Antaca on 127.0.0.1:0 with its own Redis key prefix,
// Postgres database and keys directory.
func startApp(t *testing.T, mutate func(*app.Config)) *harness {
	t.Helper()
	_, prefix := ledgertest.MustRedis(t)
	cfg := app.DefaultConfig()
	cfg.RedisURL = ledgertest.RedisURL()
	cfg.DatabaseURL = ledgertest.MustDatabase(t)
	cfg.KeyPrefix = prefix
	cfg.KeysDir = t.TempDir()
	cfg.ISOAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	// Far above a decision's milliseconds: on a loaded machine under
	// -race a 9112 would fail tests about something else. Tests of the
	// deadline itself set their own.
	cfg.ISODeadline = 3 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	return startWith(t, cfg)
}

// startWith starts the switch with cfg. Unless the test stopped it with
// shutdown, the cleanup audits it (Redis against Postgres, money
// conserved) when the test passed so far, then drains it and fails the
// test when the drain or a background component reported an error. Cleanups run last registered
// first: whatever the test sets up after this (a Redis it restarts, a
// client) is torn down before the drain.
func startWith(t *testing.T, cfg app.Config) *harness {
	t.Helper()
	ctx := context.Background()
	logs := &ledgertest.LogBuffer{}
	a, err := app.New(ctx, cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("starting app: %v", err)
	}
	a.Start(ctx)
	h := &harness{t: t, App: a, Config: cfg, ctx: ctx, logs: logs}
	t.Cleanup(func() {
		if !h.stopped && !t.Failed() {
			if err := h.auditErr(); err != nil {
				t.Errorf("audit at the end of the test: %v", err)
			}
		}
		if err := h.stop(); err != nil {
			t.Errorf("stopping the switch at cleanup: %v", err)
		}
	})
	return h
}

// stop drains the switch like `antaca serve` on SIGTERM, once: later calls
// return nil. Its error joins the drain's error and every failure a
// background component delivered on App.Err.
func (h *harness) stop() error {
	if h.stopped {
		return nil
	}
	h.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if err := h.App.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	// Shutdown waited for every background goroutine: what they reported
	// is buffered in Err now.
	for {
		select {
		case err := <-h.App.Err():
			errs = append(errs, fmt.Errorf("background component: %w", err))
			continue
		default:
		}
		break
	}
	return errors.Join(errs...)
}

// shutdown stops the switch in the middle of a test and fails the test
// when the drain or a background component reported an error.
func (h *harness) shutdown(t *testing.T) {
	t.Helper()
	if err := h.stop(); err != nil {
		t.Fatalf("shutting down the switch: %v", err)
	}
}

// program is a partner with a funded deposit and one verified customer.
type program struct {
	h                  *harness
	partner, bin       string
	pbal               string
	customer           string
	balance            string
	balanceCurrencyNum string
	balances           []string // every balance of the customer
}

var binSeq atomic.Int64

func (h *harness) newProgram(model string, partnerFunds, userFunds int64) *program {
	t := h.t
	t.Helper()
	ctx := h.ctx
	l := h.App.Ledger
	n := binSeq.Add(1) + time.Now().UnixNano()%1_000_000
	p := &program{h: h, partner: ledgertest.UniqueName("prt"), bin: fmt.Sprintf("5%07d", n%10_000_000), balanceCurrencyNum: "978"}
	must(t, l.CreatePartner(ctx, ledger.Partner{ID: p.partner, Name: "Test program", BIN: p.bin, Currency: "EUR", FundingModel: model, DigitalFirst: true}))
	p.pbal = ledger.NewID("pbl")
	must(t, l.CreatePartnerBalance(ctx, p.partner, p.pbal, model, "EUR", 0))
	if partnerFunds > 0 {
		_, err := l.ReloadPartnerBalance(ctx, p.partner, p.pbal, partnerFunds, "")
		must(t, err)
	}
	p.customer = ledger.NewID("cus")
	must(t, l.CreateCustomer(ctx, ledger.Customer{ID: p.customer, PartnerID: p.partner, FirstName: "Ada", LastName: "Lovelace"}))
	must(t, l.SetKYC(ctx, p.partner, p.customer, "VERIFIED"))
	p.balance = p.newBalance(userFunds)
	return p
}

func (p *program) newBalance(funds int64) string {
	t := p.h.t
	t.Helper()
	id := ledger.NewID("bal")
	must(t, p.h.App.Ledger.CreateUserBalance(p.h.ctx, p.partner, p.customer, id, "EUR"))
	if funds > 0 {
		_, _, err := p.h.App.Ledger.ReloadUserBalance(p.h.ctx, p.partner, id, funds, "")
		must(t, err)
	}
	p.balances = append(p.balances, id)
	return id
}

// testCard is an issued card with its clear data (test data only).
type testCard struct {
	ID, PAN, Expiry string // Expiry YYMM
	Balance         string
}

func (p *program) virtualCard(balance string) testCard {
	t := p.h.t
	t.Helper()
	c, full, err := p.h.App.Issuing.CreateVirtual(p.h.ctx, p.partner, p.customer, balance)
	must(t, err)
	return testCard{ID: c.ID, PAN: full.CardNo, Expiry: full.Exp[2:4] + full.Exp[5:7], Balance: balance}
}

// physicalCard orders a physical card and moves it to status (ORDERED,
// LINKED or ACTIVE), setting pin when given.
func (p *program) physicalCard(balance string, status authz.CardStatus, pin string) testCard {
	t := p.h.t
	t.Helper()
	ctx, is := p.h.ctx, p.h.App.Issuing
	c, err := is.OrderPhysical(ctx, p.partner, p.customer, balance, `{"city":"Warsaw"}`)
	must(t, err)
	if status == authz.StatusLinked || status == authz.StatusActive {
		_, err = is.Personalise(ctx, p.partner, c.ID)
		must(t, err)
		_, err = is.Link(ctx, p.partner, c.ID)
		must(t, err)
	}
	if status == authz.StatusActive {
		_, err = is.Activate(ctx, p.partner, c.ID, "ADMIN")
		must(t, err)
	}
	if pin != "" {
		must(t, is.SetPIN(ctx, p.partner, c.ID, pin))
	}
	full, err := is.FullData(ctx, p.partner, c.ID)
	must(t, err)
	return testCard{ID: c.ID, PAN: full.CardNo, Expiry: full.Exp[2:4] + full.Exp[5:7], Balance: balance}
}

func (p *program) user(balance string) ledger.UserBalance {
	b, err := p.h.App.Ledger.UserBalance(p.h.ctx, p.partner, balance)
	must(p.h.t, err)
	return b
}

func (p *program) deposit() ledger.PartnerBalance {
	b, err := p.h.App.Ledger.PartnerBalance(p.h.ctx, p.partner, p.pbal)
	must(p.h.t, err)
	return b
}

// checkMoney asserts conservation for the program: money in from outside
// equals what its balances hold, keep held and have posted.
func (p *program) checkMoney() {
	t := p.h.t
	t.Helper()
	in, err := p.h.App.Ledger.Funding(p.h.ctx, p.partner, "EUR")
	must(t, err)
	d := p.deposit()
	sum := d.Available + d.Reserved + d.Settled
	for _, b := range p.balances {
		u := p.user(b)
		sum += u.Available + u.Held + u.Posted
	}
	if sum != in {
		t.Fatalf("money not conserved: in %d, held by balances %d", in, sum)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// client dials the harness's ISO listener with the given profile.
func (h *harness) client(profile string) *isoclient.Client {
	t := h.t
	t.Helper()
	p, err := iso.ProfileByName(profile)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := isoclient.Dial(ctx, isoclient.Config{Addr: h.App.ISOAddr(), Profile: p, SignOn: true})
	must(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// txn describes one message to send.
type txn struct {
	MTI      string
	PAN      string
	Proc     string // DE3 first two digits
	Amount   int64
	Currency string
	Expiry   string
	PINBlock []byte
	CVV2     string
	RRN      string
	STAN     string
	DE7      string
	Original *sent  // for DE90
	Replace  *int64 // DE95 actual amount
	Billing  *[2]string
}

// sent is a message as it went out, to refer to from reversals.
type sent struct {
	MTI, STAN, DE7, RRN string
	Resp                *iso8583.Message
}

const acquirer = "123456"

var rrnSeq atomic.Int64

// cvv2Pattern is what a CVV2 must look like before it goes into DE48.
var cvv2Pattern = regexp.MustCompile(`^\d{3}$`)

func newRRN() string { return fmt.Sprintf("%012d", time.Now().UnixNano()%1e9*1000+rrnSeq.Add(1)%1000) }

func (h *harness) send(c *isoclient.Client, x txn) *sent {
	t := h.t
	t.Helper()
	m := c.NewMessage(x.MTI)
	if x.Proc == "" {
		x.Proc = "00"
	}
	if x.Currency == "" {
		x.Currency = "978"
	}
	if x.RRN == "" {
		x.RRN = newRRN()
	}
	if x.STAN == "" {
		x.STAN = c.NextSTAN()
	}
	if x.DE7 == "" {
		x.DE7 = time.Now().UTC().Format("0102150405")
	}
	set := func(id int, v string) {
		if err := m.Field(id, v); err != nil {
			t.Fatalf("setting DE%d: %v", id, err)
		}
	}
	set(2, x.PAN)
	set(3, x.Proc+"0000")
	set(4, fmt.Sprintf("%012d", x.Amount))
	set(7, x.DE7)
	set(11, x.STAN)
	set(12, x.DE7[4:])
	set(13, x.DE7[:4])
	if x.Expiry != "" {
		set(14, x.Expiry)
	}
	set(18, "5411")
	set(22, "051")
	set(32, acquirer)
	set(37, x.RRN)
	set(41, "TERM0001")
	set(42, "MERCHANT0000001")
	set(49, x.Currency)
	if x.Billing != nil {
		set(6, x.Billing[0])
		set(51, x.Billing[1])
	}
	if x.CVV2 != "" {
		set(48, "R92"+fmt.Sprintf("%02d", len(x.CVV2))+x.CVV2)
	}
	if x.PINBlock != nil {
		set(52, fmt.Sprintf("%X", x.PINBlock))
	}
	if x.Original != nil {
		set(90, x.Original.MTI+x.Original.STAN+x.Original.DE7+fmt.Sprintf("%011s", acquirer)+"00000000000")
	}
	if x.Replace != nil {
		set(95, fmt.Sprintf("%012d", *x.Replace)+"000000000000"+"000000000000"+"000000")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Send(ctx, m)
	if err != nil {
		t.Fatalf("sending %s: %v", x.MTI, err)
	}
	return &sent{MTI: x.MTI, STAN: x.STAN, DE7: x.DE7, RRN: x.RRN, Resp: resp}
}

func field(t *testing.T, m *iso8583.Message, id int) string {
	t.Helper()
	s, err := m.GetString(id)
	if err != nil {
		t.Fatalf("reading DE%d: %v", id, err)
	}
	return s
}

// available reads the available amount of DE54 ("" when absent).
func available(t *testing.T, m *iso8583.Message) string {
	t.Helper()
	s := field(t, m, 54)
	if len(s) < 20 {
		return ""
	}
	v, err := strconv.ParseInt(s[8:20], 10, 64)
	if err != nil {
		t.Fatalf("DE54 %q: %v", s, err)
	}
	if s[7] == 'D' {
		v = -v
	}
	return strconv.FormatInt(v, 10)
}

// audit flushes the write-behind and requires Redis and Postgres to agree
// (pgstore.Audit: rows, held and reserved against open holds, money).
func (h *harness) audit(what string) {
	h.t.Helper()
	if err := h.auditErr(); err != nil {
		h.t.Fatalf("audit %s: %v", what, err)
	}
}

func (h *harness) auditErr() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := h.App.FlushJournal(ctx); err != nil {
		return fmt.Errorf("flushing the journal: %w", err)
	}
	rep, err := pgstore.Audit(ctx, h.App.Redis, h.App.Ledger.Keys(), h.App.DB)
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("redis and postgres disagree:\n%s", rep)
	}
	return nil
}
