package simulator

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/iso"
)

// RunConfig is what scenarios run against.
type RunConfig struct {
	Network *Network
	Issuer  Issuer
	// Keys is the switch's keys directory content, for DE52 PIN blocks
	// under the zone PIN key; steps with a PIN fail without it.
	Keys *cardcrypto.Keys
	// Cards is the seeded cards file: its first partner is the default
	// partner of every scenario, its cards can be used by name.
	Cards *CardsFile
	// Timeout bounds the wait for one answer (default 5s).
	Timeout time.Duration
	// Out receives a line per step and the summary.
	Out io.Writer
}

// StepResult is the outcome of one step.
type StepResult struct {
	Scenario string
	Index    int
	Step     string
	Status   string // PASS, FAIL or SKIP
	Detail   string
}

// Summary counts the outcomes of a run.
type Summary struct {
	Scenarios, ScenariosFailed             int
	StepsPassed, StepsFailed, StepsSkipped int
	// Failures name step, field, want and got of every failure.
	Failures []string
	Results  []StepResult
}

// OK reports whether every step passed.
func (s Summary) OK() bool { return s.StepsFailed == 0 && s.ScenariosFailed == 0 }

// RunScenarios runs each scenario in order. A failing step ends its
// scenario (later steps depend on it) and the run goes on with the next.
func RunScenarios(ctx context.Context, cfg RunConfig, scenarios []*Scenario) Summary {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	var sum Summary
	for _, sc := range scenarios {
		sum.Scenarios++
		r := newRun(cfg, sc)
		defer r.close()
		failed := false
		for i := range sc.Steps {
			st := sc.Steps[i] // a copy: interpolation must not change the scenario
			res := StepResult{Scenario: sc.Name, Index: i + 1, Step: st.Name}
			if failed {
				res.Status = "SKIP"
				sum.StepsSkipped++
			} else if detail, err := r.step(ctx, &st); err != nil {
				res.Status, res.Detail = "FAIL", err.Error()
				failed = true
				sum.StepsFailed++
				sum.Failures = append(sum.Failures, fmt.Sprintf("%s: step %d %q (%s:%d): %v", sc.Name, i+1, st.Name, sc.File, st.Line, err))
			} else {
				res.Status, res.Detail = "PASS", detail
				sum.StepsPassed++
			}
			sum.Results = append(sum.Results, res)
			if res.Status != "SKIP" {
				fmt.Fprintf(cfg.Out, "%s  %s [%d] %s: %s\n", res.Status, sc.Name, res.Index, res.Step, res.Detail)
			}
		}
		if failed {
			sum.ScenariosFailed++
		}
	}
	fmt.Fprintf(cfg.Out, "\nscenarios: %d run, %d failed\n", sum.Scenarios, sum.ScenariosFailed)
	for _, f := range sum.Failures {
		fmt.Fprintf(cfg.Out, "FAILED %s\n", f)
	}
	fmt.Fprintf(cfg.Out, "steps: %d passed, %d failed, %d skipped\n", sum.StepsPassed, sum.StepsFailed, sum.StepsSkipped)
	return sum
}

// run is the state of one scenario: what its steps created and answered.
type run struct {
	cfg       RunConfig
	sc        *Scenario
	partner   Partner // the default partner
	partners  map[string]Partner
	customers map[string]custRef
	balances  map[string]balRef
	cards     map[string]Card
	msgs      map[string]*sentMsg
	vals      map[string]map[string]string
	// closers stop what the run started (partner backends).
	closers  []func()
	backends map[string]*PartnerBackend // by partner id
}

type custRef struct {
	partner Partner
	Customer
}

type balRef struct {
	partner    Partner
	customerID string
	Balance
}

type sentMsg struct {
	txn    Txn
	answer Answer
}

func newRun(cfg RunConfig, sc *Scenario) *run {
	r := &run{cfg: cfg, sc: sc, partners: map[string]Partner{}, customers: map[string]custRef{},
		balances: map[string]balRef{}, cards: map[string]Card{}, msgs: map[string]*sentMsg{}, vals: map[string]map[string]string{}}
	if cfg.Cards != nil {
		r.partner, _ = cfg.Cards.Partner("")
		for _, p := range cfg.Cards.Partners {
			r.partners[p.ID] = p
		}
	}
	return r
}

func (r *run) close() {
	for _, c := range r.closers {
		c()
	}
	r.closers = nil
}

func (r *run) set(name string, kv ...string) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	r.vals[name] = m
}

func (r *run) step(ctx context.Context, st *Step) (string, error) {
	if err := interpolate(st, r.vals); err != nil {
		return "", err
	}
	if st.Action != "" {
		return r.action(ctx, st)
	}
	if st.MTI == "0302" || st.MTI == "0303" {
		return r.fileUpdate(ctx, st)
	}
	return r.message(ctx, st)
}

// ---- issuer actions ----

func (r *run) partnerOf(name string) (Partner, error) {
	if name == "" {
		if r.partner.ID == "" {
			return Partner{}, errors.New("no default partner: run with a cards file from `sim seed`")
		}
		return r.partner, nil
	}
	if p, ok := r.partners[name]; ok {
		return p, nil
	}
	return Partner{}, fmt.Errorf("unknown partner %q", name)
}

func (r *run) balanceOf(name string) (balRef, error) {
	if b, ok := r.balances[name]; ok {
		return b, nil
	}
	return balRef{}, fmt.Errorf("unknown balance %q (create it with new_account or create_balance)", name)
}

func (r *run) cardOf(name string) (Card, Partner, error) {
	c, ok := r.cards[name]
	if !ok && r.cfg.Cards != nil {
		c, ok = r.cfg.Cards.Card(name)
	}
	if !ok {
		return Card{}, Partner{}, fmt.Errorf("unknown card %q", name)
	}
	p, err := r.partnerOf(c.PartnerID)
	if err != nil {
		p, err = r.partnerOf("")
	}
	return c, p, err
}

func parseInt(field, s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a whole number", field, s)
	}
	return n, nil
}

func optInt(field, s string, def int64) (int64, error) {
	if strings.TrimSpace(s) == "" {
		return def, nil
	}
	return parseInt(field, s)
}

func (r *run) action(ctx context.Context, st *Step) (string, error) {
	detail, err := r.doAction(ctx, st)
	want := st.Expect
	if want.Status == "" && want.Error == "" {
		return detail, err
	}
	wantDesc := strings.TrimSpace(want.Status + " " + want.Error)
	ae, ok := AsAPIError(err)
	if err == nil {
		return "", fmt.Errorf("refusal: want %s, got success (%s)", wantDesc, detail)
	}
	if !ok {
		return "", fmt.Errorf("refusal: want %s, got error %v", wantDesc, err)
	}
	if want.Status != "" && !statusMatches(want.Status, ae.Status) {
		return "", fmt.Errorf("HTTP status: want %s, got %d (%s)", want.Status, ae.Status, ae.Code)
	}
	if want.Error != "" && want.Error != ae.Code {
		return "", fmt.Errorf("error code: want %s, got %s (status %d)", want.Error, ae.Code, ae.Status)
	}
	return fmt.Sprintf("%s refused as expected: %d %s", st.Action, ae.Status, ae.Code), nil
}

// statusMatches compares an HTTP status with an expectation such as "409"
// or "4xx".
func statusMatches(want string, got int) bool {
	if len(want) == 3 && strings.HasSuffix(want, "xx") {
		return strconv.Itoa(got/100) == want[:1]
	}
	return want == strconv.Itoa(got)
}

// actionFunc performs one issuer action of a scenario step and describes
// what it did.
type actionFunc func(r *run, ctx context.Context, st *Step) (string, error)

// action is a named step action; a local one needs no issuer.
type action struct {
	name  string
	do    actionFunc
	local bool
}

// actions are the actions a scenario step can name, in the order an
// unknown action's error lists them.
var actions = []action{
	{name: "create_partner", do: (*run).createPartner},
	{name: "reload_partner", do: (*run).reloadPartner},
	{name: "new_account", do: (*run).newAccount},
	{name: "create_customer", do: (*run).createCustomer},
	{name: "create_balance", do: (*run).createBalanceAction},
	{name: "reload", do: (*run).reload},
	{name: "check_balance", do: (*run).checkBalance},
	{name: "start_kyc", do: (*run).startKYC},
	{name: "wait_kyc", do: (*run).waitKYC},
	{name: "issue_virtual", do: issueCard(Issuer.IssueVirtual)},
	{name: "order_physical", do: issueCard(Issuer.OrderPhysical)},
	{name: "personalise", do: cardAction(func(r *run, ctx context.Context, _ *Step, c Card, p Partner) error {
		return r.cfg.Issuer.Personalise(ctx, p, c.ID)
	})},
	{name: "activate", do: cardAction(func(r *run, ctx context.Context, _ *Step, c Card, p Partner) error {
		return r.cfg.Issuer.Activate(ctx, p, c.CustomerID, c.ID)
	})},
	{name: "print", do: (*run).print},
	{name: "set_pin", do: cardAction((*run).setPIN)},
	{name: "lock", do: cardAction(func(r *run, ctx context.Context, st *Step, c Card, p Partner) error {
		reason, err := parseInt("reason", st.Reason)
		if err != nil {
			return err
		}
		return r.cfg.Issuer.Lock(ctx, p, c.CustomerID, c.ID, int(reason))
	})},
	{name: "external_lock", do: cardAction(func(r *run, ctx context.Context, st *Step, c Card, p Partner) error {
		reason, err := parseInt("reason", st.Reason)
		if err != nil {
			return err
		}
		source := st.Source
		if source == "" {
			source = "NETWORK"
		}
		return r.cfg.Issuer.ExternalLock(ctx, p, c.CustomerID, c.ID, int(reason), source, st.Reference)
	})},
	{name: "replace", do: (*run).replace},
	{name: "unlock", do: cardAction(func(r *run, ctx context.Context, _ *Step, c Card, p Partner) error {
		return r.cfg.Issuer.Unlock(ctx, p, c.CustomerID, c.ID)
	})},
	{name: "remove", do: cardAction(func(r *run, ctx context.Context, _ *Step, c Card, p Partner) error {
		return r.cfg.Issuer.Remove(ctx, p, c.CustomerID, c.ID)
	})},
	{name: "set_controls", do: cardAction(func(r *run, ctx context.Context, st *Step, c Card, p Partner) error {
		return r.cfg.Issuer.SetCardControls(ctx, p, c.CustomerID, c.ID, st.Controls)
	})},
	{name: "partner_backend", do: (*run).partnerBackend},
	{name: "sleep", do: (*run).sleep, local: true},
}

// partnerBackend starts a simulated decisioning backend for the run and
// makes it the partner's default program's remoteUrl.
func (r *run) partnerBackend(ctx context.Context, st *Step) (string, error) {
	p, err := r.partnerOf(st.Partner)
	if err != nil {
		return "", err
	}
	var cfg PartnerConfig
	if st.Latency != "" {
		if cfg.Latency, err = time.ParseDuration(st.Latency); err != nil {
			return "", fmt.Errorf("latency %q: %w", st.Latency, err)
		}
	}
	for _, f := range []struct {
		name, v string
		dst     *float64
	}{{"fail", st.Fail, &cfg.Fail}, {"garbage", st.Garbage, &cfg.Garbage}} {
		if f.v != "" {
			if *f.dst, err = strconv.ParseFloat(f.v, 64); err != nil {
				return "", fmt.Errorf("%s %q: %w", f.name, f.v, err)
			}
		}
	}
	if cfg.DeclineOver, err = optInt("declineOver", st.DeclineOver, 0); err != nil {
		return "", err
	}
	standIn := authz.StandIn{Policy: st.StandIn}
	if standIn.Amount, err = optInt("standInAmount", st.StandInAmount, 0); err != nil {
		return "", err
	}
	if b := r.backends[p.ID]; b != nil {
		// A program's stand-in policy and timeout reach the switch within
		// its program cache's TTL: a running backend only changes knobs.
		b.SetKnobs(cfg)
		return fmt.Sprintf("partner backend of %s now: latency %s, fail %.2f, garbage %.2f", p.ID, cfg.Latency, cfg.Fail, cfg.Garbage), nil
	}
	timeout := 500 * time.Millisecond
	if st.DecisionTimeout != "" {
		if timeout, err = time.ParseDuration(st.DecisionTimeout); err != nil {
			return "", fmt.Errorf("decisionTimeout %q: %w", st.DecisionTimeout, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("starting the partner backend: %w", err)
	}
	url := "http://" + ln.Addr().String() + "/"
	secret, err := r.cfg.Issuer.SetRemote(ctx, p, url, standIn, timeout.Milliseconds())
	if err != nil {
		_ = ln.Close()
		return "", err
	}
	cfg.Secret = secret
	b := NewPartnerBackend(cfg)
	if r.backends == nil {
		r.backends = map[string]*PartnerBackend{}
	}
	r.backends[p.ID] = b
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.closers = append(r.closers, cancel)
	go func() { _ = ServePartner(bctx, ln, b) }()
	return fmt.Sprintf("partner backend %s for %s (latency %s, fail %.2f, garbage %.2f, stand-in %s)", url, p.ID,
		cfg.Latency, cfg.Fail, cfg.Garbage, standIn.Policy), nil
}

// actionNames are the names of actions, in their order.
var actionNames = func() []string {
	names := make([]string, len(actions))
	for i, a := range actions {
		names[i] = a.name
	}
	return names
}()

func (r *run) doAction(ctx context.Context, st *Step) (string, error) {
	i := slices.IndexFunc(actions, func(a action) bool { return a.name == st.Action })
	if i < 0 {
		return "", fmt.Errorf("unknown action %q", st.Action)
	}
	if r.cfg.Issuer == nil && !actions[i].local {
		return "", errors.New("issuer actions need the REST API (--api-url) or --direct")
	}
	return actions[i].do(r, ctx, st)
}

func (r *run) sleep(ctx context.Context, st *Step) (string, error) {
	d, err := time.ParseDuration(st.Duration)
	if err != nil {
		return "", fmt.Errorf("duration %q: %w", st.Duration, err)
	}
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(d):
	}
	return "slept " + d.String(), nil
}

func (r *run) createPartner(ctx context.Context, st *Step) (string, error) {
	funds, err := optInt("funds", st.Funds, 0)
	if err != nil {
		return "", err
	}
	spec := PartnerSpec{ID: "sim-" + randomDigits(10), BIN: st.BIN, Currency: st.Currency, FundingModel: st.Funding, Funds: funds,
		DigitalFirst: st.DigitalFirst != "false"}
	if spec.BIN == "" {
		spec.BIN = "9" + randomDigits(7)
	}
	if spec.Currency == "" {
		spec.Currency = "EUR"
	}
	if spec.FundingModel == "" {
		spec.FundingModel = "DEPOSIT"
	}
	p, err := r.cfg.Issuer.CreatePartner(ctx, spec)
	if err != nil {
		return "", err
	}
	r.partners[st.As] = p
	r.partners[p.ID] = p
	r.set(st.As, "id", p.ID, "bin", p.BIN, "balance", p.BalanceID)
	return fmt.Sprintf("partner %s (%s, BIN %s, funds %d)", p.ID, p.FundingModel, p.BIN, funds), nil
}

func (r *run) reloadPartner(ctx context.Context, st *Step) (string, error) {
	p, err := r.partnerOf(st.Partner)
	if err != nil {
		return "", err
	}
	amount, err := parseInt("amount", st.Amount)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("partner %s reloaded with %d", p.ID, amount), r.cfg.Issuer.ReloadPartnerBalance(ctx, p, amount)
}

// customer registers a customer of the step's partner (KYC verified
// unless verified: false) and names it after the step.
func (r *run) customer(ctx context.Context, st *Step) (custRef, error) {
	p, err := r.partnerOf(st.Partner)
	if err != nil {
		return custRef{}, err
	}
	c, err := r.cfg.Issuer.CreateCustomer(ctx, p, "sim-"+randomDigits(12), st.LastName, st.Verified != "false")
	if err != nil {
		return custRef{}, err
	}
	ref := custRef{partner: p, Customer: c}
	r.customers[st.As] = ref
	r.set(st.As, "id", c.ID, "customer", c.ID)
	return ref, nil
}

func (r *run) createCustomer(ctx context.Context, st *Step) (string, error) {
	c, err := r.customer(ctx, st)
	if err != nil {
		return "", err
	}
	return "customer " + c.ID, nil
}

// newAccount is a customer with a (funded) balance in one step.
func (r *run) newAccount(ctx context.Context, st *Step) (string, error) {
	c, err := r.customer(ctx, st)
	if err != nil {
		return "", err
	}
	return r.createBalance(ctx, st, c)
}

func (r *run) createBalanceAction(ctx context.Context, st *Step) (string, error) {
	c, ok := r.customers[st.Customer]
	if !ok {
		return "", fmt.Errorf("unknown customer %q", st.Customer)
	}
	return r.createBalance(ctx, st, c)
}

// startKYC starts a customer's KYC; expect.kyc checks the status answered.
func (r *run) startKYC(ctx context.Context, st *Step) (string, error) {
	c, ok := r.customers[st.Customer]
	if !ok {
		return "", fmt.Errorf("unknown customer %q", st.Customer)
	}
	got, err := r.cfg.Issuer.StartKYC(ctx, c.partner, c.ID)
	if err != nil {
		return "", err
	}
	r.set(st.As, "kyc", got.KYCStatus)
	if st.Expect.KYC != "" && got.KYCStatus != st.Expect.KYC {
		return "", fmt.Errorf("KYC status: want %s, got %s", st.Expect.KYC, got.KYCStatus)
	}
	return "KYC started: " + got.KYCStatus, nil
}

// waitKYC waits (up to timeout, default 30s) for a customer's KYC status
// to become expect.kyc, as a provider's callback sets it.
func (r *run) waitKYC(ctx context.Context, st *Step) (string, error) {
	c, ok := r.customers[st.Customer]
	if !ok {
		return "", fmt.Errorf("unknown customer %q", st.Customer)
	}
	if st.Expect.KYC == "" {
		return "", errors.New("wait_kyc needs expect: {kyc: STATUS}")
	}
	wait := 30 * time.Second
	if st.Timeout != "" {
		d, err := time.ParseDuration(st.Timeout)
		if err != nil {
			return "", fmt.Errorf("timeout %q: %w", st.Timeout, err)
		}
		wait = d
	}
	deadline := time.Now().Add(wait)
	for {
		got, err := r.cfg.Issuer.GetCustomer(ctx, c.partner, c.ID)
		if err != nil {
			return "", err
		}
		if got.KYCStatus == st.Expect.KYC {
			r.set(st.As, "kyc", got.KYCStatus)
			return "KYC " + got.KYCStatus, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("KYC status: want %s within %s, still %s (is the switch's ANTACA_KYC_PROVIDER_URL the simulator's kyc-provider?)",
				st.Expect.KYC, wait, got.KYCStatus)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *run) reload(ctx context.Context, st *Step) (string, error) {
	b, err := r.balanceOf(st.Balance)
	if err != nil {
		return "", err
	}
	amount, err := parseInt("amount", st.Amount)
	if err != nil {
		return "", err
	}
	if err := r.cfg.Issuer.Reload(ctx, b.partner, b.customerID, b.ID, amount); err != nil {
		return "", err
	}
	return fmt.Sprintf("balance %s reloaded with %d", b.ID, amount), nil
}

func (r *run) checkBalance(ctx context.Context, st *Step) (string, error) {
	b, err := r.balanceOf(st.Balance)
	if err != nil {
		return "", err
	}
	got, err := r.cfg.Issuer.GetBalance(ctx, b.partner, b.customerID, b.ID)
	if err != nil {
		return "", err
	}
	r.set(st.As, "id", got.ID, "available", strconv.FormatInt(got.Available, 10), "held", strconv.FormatInt(got.Held, 10))
	for _, c := range []struct {
		field, want string
		got         int64
	}{{"available", st.Expect.Available, got.Available}, {"held", st.Expect.Held, got.Held}} {
		if c.want == "" {
			continue
		}
		w, err := parseInt("expected "+c.field, c.want)
		if err != nil {
			return "", err
		}
		if w != c.got {
			return "", fmt.Errorf("balance %s: want %d, got %d", c.field, w, c.got)
		}
	}
	return fmt.Sprintf("balance available %d held %d", got.Available, got.Held), nil
}

// issueCard is an action that creates a card on the step's balance with
// one Issuer method (IssueVirtual or OrderPhysical).
func issueCard(create func(Issuer, context.Context, Partner, string, string) (Card, error)) actionFunc {
	return func(r *run, ctx context.Context, st *Step) (string, error) {
		b, err := r.balanceOf(st.Balance)
		if err != nil {
			return "", err
		}
		c, err := create(r.cfg.Issuer, ctx, b.partner, b.customerID, b.ID)
		if err != nil {
			return "", err
		}
		return r.keepCard(st, c, b), nil
	}
}

func (r *run) print(ctx context.Context, st *Step) (string, error) {
	orig, p, err := r.cardOf(st.Card)
	if err != nil {
		return "", err
	}
	c, err := r.cfg.Issuer.Print(ctx, p, orig.CustomerID, orig.ID)
	if err != nil {
		return "", err
	}
	if c.PAN == "" {
		c.PAN, c.Expiry = orig.PAN, orig.Expiry
	}
	return r.keepCard(st, c, balRef{partner: p, customerID: orig.CustomerID, Balance: Balance{ID: orig.BalanceID, Currency: orig.Currency}}), nil
}

// replace replaces the step's card; the new card is named after the step.
func (r *run) replace(ctx context.Context, st *Step) (string, error) {
	old, p, err := r.cardOf(st.Card)
	if err != nil {
		return "", err
	}
	c, err := r.cfg.Issuer.Replace(ctx, p, old.CustomerID, old.ID, st.KeepOld == "true")
	if err != nil {
		return "", err
	}
	return "replaced " + old.ID + " by " + r.keepCard(st, c, balRef{partner: p, customerID: old.CustomerID,
		Balance: Balance{ID: old.BalanceID, Currency: old.Currency}}), nil
}

// cardAction is an action on the step's existing card: do performs it,
// and the detail names the action and the card (masked).
func cardAction(do func(r *run, ctx context.Context, st *Step, c Card, p Partner) error) actionFunc {
	return func(r *run, ctx context.Context, st *Step) (string, error) {
		c, p, err := r.cardOf(st.Card)
		if err != nil {
			return "", err
		}
		if err := do(r, ctx, st, c, p); err != nil {
			return "", err
		}
		detail := fmt.Sprintf("%s card %s (%s)", st.Action, c.ID, c.Masked())
		if st.Action == "lock" {
			detail += " reason " + st.Reason
		}
		return detail, nil
	}
}

// setPIN sets the card's PIN and remembers it for later PIN messages.
func (r *run) setPIN(ctx context.Context, st *Step, c Card, p Partner) error {
	if err := r.cfg.Issuer.SetPIN(ctx, p, c.CustomerID, c.ID, st.PIN); err != nil {
		return err
	}
	c.PIN = st.PIN
	r.cards[st.Card] = c
	return nil
}

func (r *run) createBalance(ctx context.Context, st *Step, c custRef) (string, error) {
	cur := st.Currency
	if cur == "" {
		cur = c.partner.Currency
	}
	b, err := r.cfg.Issuer.CreateBalance(ctx, c.partner, c.ID, cur)
	if err != nil {
		return "", err
	}
	amount, err := optInt("amount", st.Amount, 0)
	if err != nil {
		return "", err
	}
	if amount > 0 {
		if err := r.cfg.Issuer.Reload(ctx, c.partner, c.ID, b.ID, amount); err != nil {
			return "", err
		}
	}
	r.balances[st.As] = balRef{partner: c.partner, customerID: c.ID, Balance: b}
	r.set(st.As, "id", b.ID, "customer", c.ID)
	return fmt.Sprintf("customer %s, balance %s (%s) with %d", c.ID, b.ID, cur, amount), nil
}

func (r *run) keepCard(st *Step, c Card, b balRef) string {
	c.PartnerID, c.CustomerID, c.BalanceID = b.partner.ID, b.customerID, b.ID
	if c.Currency == "" {
		c.Currency = b.Currency
	}
	if c.Currency == "" {
		c.Currency = b.partner.Currency
	}
	r.cards[st.As] = c
	last4 := ""
	if len(c.PAN) >= 4 {
		last4 = c.PAN[len(c.PAN)-4:]
	}
	r.set(st.As, "id", c.ID, "type", c.Type, "last4", last4, "expiry", c.Expiry)
	return fmt.Sprintf("%s card %s %s", c.Type, c.ID, c.Masked())
}

// ---- network messages ----

var txnTypes = map[string]string{
	"": PCPurchase, "purchase": PCPurchase, "cash": PCCash, "refund": PCRefund, "balance": PCBalanceInquiry,
}

// buildTxn turns a step into the message it sends.
func (r *run) buildTxn(st *Step) (Txn, Card, error) {
	if ref := st.Repeat + st.Duplicate; ref != "" {
		prev, ok := r.msgs[ref]
		if !ok {
			return Txn{}, Card{}, fmt.Errorf("no earlier message %q", ref)
		}
		t := prev.txn
		if st.Repeat != "" {
			t.MTI = RepeatMTI(t.MTI)
		}
		if st.MTI != "" {
			t.MTI = st.MTI
		}
		return t, Card{PAN: t.PAN}, nil
	}
	var card Card
	var partner Partner
	if st.Card != "" {
		var err error
		if card, partner, err = r.cardOf(st.Card); err != nil {
			return Txn{}, Card{}, err
		}
	} else if p, err := r.partnerOf(st.Partner); err == nil {
		partner = p
	}
	t := Txn{MTI: st.MTI, PAN: card.PAN, STAN: st.STAN, RRN: st.RRN, Acquirer: st.Acquirer, MCC: st.MCC, POSEntry: st.Entry, Country: st.Country}
	switch st.PAN {
	case "":
	case "unknown":
		pan, err := unissuedPAN(partner.BIN)
		if err != nil {
			return Txn{}, Card{}, err
		}
		t.PAN = pan
	default:
		t.PAN = st.PAN
	}
	if t.PAN == "" {
		return Txn{}, Card{}, errors.New("message without a card: give card or pan")
	}
	pc, ok := txnTypes[st.Txn]
	if !ok {
		return Txn{}, Card{}, fmt.Errorf("txn %q: want purchase, cash, refund or balance", st.Txn)
	}
	if st.Processing != "" {
		pc = st.Processing
	}
	t.ProcessingCode = pc
	var err error
	if t.Amount, err = optInt("amount", st.Amount, 0); err != nil {
		return Txn{}, Card{}, err
	}
	cur := st.Currency
	if cur == "" {
		cur = card.Currency
	}
	if cur == "" {
		cur = partner.Currency
	}
	if n := authz.NumericCurrency(cur); n != "" {
		cur = n
	}
	t.Currency = cur
	switch st.Expiry {
	case "", "card":
		t.Expiry = card.Expiry
	case "none":
	default:
		t.Expiry = st.Expiry
	}
	switch {
	case st.PINBlock != "":
		if t.PINBlock, err = hex.DecodeString(st.PINBlock); err != nil {
			return Txn{}, Card{}, fmt.Errorf("pinBlock: %w", err)
		}
	case st.PIN != "":
		pin := st.PIN
		if pin == "card" {
			pin = card.PIN
		}
		if r.cfg.Keys == nil {
			return Txn{}, Card{}, errors.New("a PIN needs the switch's keys directory (--keys-dir) to build DE52")
		}
		if t.PINBlock, err = r.cfg.Keys.EncodePINBlock(pin, t.PAN); err != nil {
			return Txn{}, Card{}, fmt.Errorf("building PIN block: %w", err)
		}
	}
	if st.Original != "" {
		orig, ok := r.msgs[st.Original]
		if !ok {
			return Txn{}, Card{}, fmt.Errorf("original %q is not an earlier message", st.Original)
		}
		t.Original = orig.txn.AsOriginal()
		if t.RRN == "" {
			t.RRN = orig.txn.RRN
		}
		if st.Amount == "" {
			t.Amount = orig.txn.Amount
		}
		if t.Acquirer == "" {
			t.Acquirer = orig.txn.Acquirer
		}
	}
	if st.Replacement != "" {
		v, err := parseInt("replacement", st.Replacement)
		if err != nil {
			return Txn{}, Card{}, err
		}
		t.Replacement = &v
	}
	return t, card, nil
}

func (r *run) message(ctx context.Context, st *Step) (string, error) {
	if r.cfg.Network == nil {
		return "", errors.New("no ISO link")
	}
	t, _, err := r.buildTxn(st)
	if err != nil {
		return "", err
	}
	msg, err := r.cfg.Network.Build(&t)
	if err != nil {
		return "", err
	}
	timeout := r.cfg.Timeout
	if st.Timeout != "" {
		if timeout, err = time.ParseDuration(st.Timeout); err != nil {
			return "", fmt.Errorf("timeout %q: %w", st.Timeout, err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	resp, err := r.cfg.Network.Send(sctx, msg)
	cancel()
	if err != nil {
		return "", fmt.Errorf("%s %s: no answer: %w", t.MTI, MaskPAN(t.PAN), err)
	}
	a, err := ParseAnswer(resp)
	if err != nil {
		return "", err
	}
	r.msgs[st.As] = &sentMsg{txn: t, answer: a}
	r.set(st.As, "mti", t.MTI, "stan", t.STAN, "rrn", t.RRN, "de7", t.TransmissionTime, "acquirer", t.Acquirer,
		"code", a.Code, "approval", a.Approval, "available", strconv.FormatInt(a.Available, 10),
		"amount", strconv.FormatInt(t.Amount, 10))
	detail := fmt.Sprintf("%s %s %s %d -> %s", t.MTI, MaskPAN(t.PAN), t.ProcessingCode[:2], t.Amount, a.Code)
	if a.Approval != "" {
		detail += " approval " + a.Approval
	}
	if a.HasAvailable {
		detail += fmt.Sprintf(" available %d", a.Available)
	}
	return detail, r.checkAnswer(st, a, detail)
}

func (r *run) checkAnswer(st *Step, a Answer, detail string) error {
	e := st.Expect
	if e.Code != "" || e.Reason != "" {
		want, err := expectedCode(r.cfg.Network.Profile(), e.Code, e.Reason)
		if err != nil {
			return err
		}
		if a.Code != want {
			return fmt.Errorf("DE39: want %s, got %s (%s)", want, a.Code, detail)
		}
	}
	switch e.Approval {
	case "":
	case "present":
		if len(a.Approval) != 6 {
			return fmt.Errorf("DE38: want an approval code, got %q (%s)", a.Approval, detail)
		}
	case "absent":
		if a.Approval != "" {
			return fmt.Errorf("DE38: want none, got %q (%s)", a.Approval, detail)
		}
	default:
		prev, ok := r.msgs[e.Approval]
		if !ok {
			return fmt.Errorf("expect approval: %q is neither present, absent nor an earlier message", e.Approval)
		}
		if a.Approval != prev.answer.Approval || a.Approval == "" {
			return fmt.Errorf("DE38: want %q (the approval of %s), got %q (%s)", prev.answer.Approval, e.Approval, a.Approval, detail)
		}
	}
	if e.Available != "" {
		want, err := parseInt("expected available", e.Available)
		if err != nil {
			return err
		}
		if !a.HasAvailable {
			return fmt.Errorf("DE54: want available %d, got no DE54 (%s)", want, detail)
		}
		if a.Available != want {
			return fmt.Errorf("DE54: want available %d, got %d (%s)", want, a.Available, detail)
		}
	}
	if e.Amount != "" {
		want, err := parseInt("expected amount", e.Amount)
		if err != nil {
			return err
		}
		if a.Amount != want {
			return fmt.Errorf("DE4: want %d, got %d (%s)", want, a.Amount, detail)
		}
	}
	return nil
}

// expectedCode is the DE39 a link of profile p answers for an expectation
// written as a cmf code and/or a reason.
func expectedCode(p *iso.Profile, code, reason string) (string, error) {
	cmf, _ := iso.ProfileByName(iso.ProfileCMF)
	if reason != "" {
		want, ok := p.Code(authz.Reason(reason))
		if !ok {
			return "", fmt.Errorf("expect reason %q: not a reason the switch knows", reason)
		}
		if code != "" && p.Name == iso.ProfileCMF && code != want {
			return "", fmt.Errorf("expectation is inconsistent: reason %s answers %s, code says %s", reason, want, code)
		}
		return want, nil
	}
	if p.Name == iso.ProfileCMF {
		return code, nil
	}
	// Translate the cmf code; refuse when reasons sharing it differ here.
	want := ""
	for r, c := range cmf.Codes {
		if c != code {
			continue
		}
		pc, _ := p.Code(r)
		if want != "" && pc != want {
			return "", fmt.Errorf("expect code %s: ambiguous in profile %s (%s or %s); add reason:", code, p.Name, want, pc)
		}
		want = pc
	}
	if want == "" {
		return "", fmt.Errorf("expect code %s: not a cmf action code", code)
	}
	return want, nil
}
