// Package decision asks a program's backend (its remote_url) about each
// authorization, within the program's decision timeout and inside the ISO
// deadline, and falls back to the program's stand-in policy when the
// backend is slow, failing, answers garbage, is busy or its circuit is
// open (docs/decisioning.md). It implements authz.Decider.
package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/antaca/antaca/api/signing"
	"github.com/antaca/antaca/authz"
)

// Config configures a Client; zero values take the defaults.
type Config struct {
	// HTTP is the client requests go out with (a dedicated one by default).
	HTTP *http.Client
	// MaxInFlight bounds the requests in flight to one program's backend
	// (default 64); one more goes to stand-in at once, so a slow partner
	// holds no more than this many of the switch's goroutines.
	MaxInFlight int
	// BreakerFailures is how many failures in a row open a program's
	// circuit (default 5); BreakerCooldown how long it stays open before
	// one request may try again (default 10s).
	BreakerFailures int
	BreakerCooldown time.Duration
	Registerer      prometheus.Registerer
	Logger          *slog.Logger
	Now             func() time.Time
}

// Client is the authz.Decider of the switch.
type Client struct {
	cfg      Config
	mu       sync.Mutex
	programs map[string]*programState

	latency  *prometheus.HistogramVec
	outcomes *prometheus.CounterVec
	standIn  *prometheus.CounterVec
	open     *prometheus.GaugeVec
}

var _ authz.Decider = (*Client)(nil)

type programState struct {
	sem       chan struct{}
	mu        sync.Mutex
	failures  int
	openUntil time.Time
}

// New returns a client.
func New(cfg Config) *Client {
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
			TLSHandshakeTimeout: 2 * time.Second}}
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	if cfg.BreakerFailures <= 0 {
		cfg.BreakerFailures = 5
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Client{cfg: cfg, programs: map[string]*programState{}}
	// Program ids are label values: programs are few and made by admins.
	c.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "antaca_partner_decision_seconds", Help: "Time a program's backend took to answer a decision request (answers and failures).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"program"})
	c.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "antaca_partner_decisions_total", Help: "Decisions by a program's backend, by outcome (approved, partial, funded, declined).",
	}, []string{"program", "outcome"})
	c.standIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "antaca_partner_stand_in_total", Help: "Authorizations the program's stand-in policy decided, by cause (timeout, error, status, garbage, circuit_open, busy) and result (approved, declined).",
	}, []string{"program", "cause", "result"})
	c.open = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "antaca_partner_circuit_open", Help: "1 while a program's backend circuit is open (every authorization goes to stand-in).",
	}, []string{"program"})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.latency, c.outcomes, c.standIn, c.open)
	}
	return c
}

func (c *Client) state(program string) *programState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.programs[program]
	if s == nil {
		s = &programState{sem: make(chan struct{}, c.cfg.MaxInFlight)}
		c.programs[program] = s
	}
	return s
}

// answer is the backend's reply.
type answer struct {
	Approved *bool  `json:"approved"`
	Amount   *int64 `json:"amount"`
	Fund     *int64 `json:"fund"`
	Reason   string `json:"reason"`
}

// Stand-in causes.
const (
	causeTimeout = "timeout"
	causeError   = "error"
	causeStatus  = "status"
	causeGarbage = "garbage"
	causeOpen    = "circuit_open"
	causeBusy    = "busy"
)

type failure struct {
	cause string
	err   error
}

func (f *failure) Error() string { return f.cause + ": " + f.err.Error() }

// Decide asks the program's backend, or applies its stand-in policy.
func (c *Client) Decide(ctx context.Context, p authz.Program, txn authz.PartnerTxn) authz.Verdict {
	st := c.state(p.ID)
	if st.isOpen(c.cfg.Now()) {
		return c.standInVerdict(p, txn, causeOpen)
	}
	select {
	case st.sem <- struct{}{}:
		defer func() { <-st.sem }()
	default:
		return c.standInVerdict(p, txn, causeBusy)
	}
	start := time.Now()
	v, err := c.ask(ctx, p, txn)
	c.latency.WithLabelValues(p.ID).Observe(time.Since(start).Seconds())
	if err != nil {
		var f *failure
		if !errors.As(err, &f) {
			f = &failure{causeError, err}
		}
		if st.fail(c.cfg.Now(), c.cfg.BreakerFailures, c.cfg.BreakerCooldown) {
			c.open.WithLabelValues(p.ID).Set(1)
			c.cfg.Logger.Warn("partner decision circuit opened: authorizations go to stand-in", "program", p.ID,
				"cooldown", c.cfg.BreakerCooldown, "err", err)
		}
		c.cfg.Logger.Warn("partner decision failed; stand-in decides", "program", p.ID, "cause", f.cause, "err", f.err)
		return c.standInVerdict(p, txn, f.cause)
	}
	if st.succeed() {
		c.open.WithLabelValues(p.ID).Set(0)
	}
	return v
}

// ask makes one request within the program's timeout, itself inside the
// caller's deadline (the ISO deadline, keeping a quarter of what is left
// for the reservation and the answer).
func (c *Client) ask(ctx context.Context, p authz.Program, txn authz.PartnerTxn) (authz.Verdict, error) {
	timeout := p.DecisionTimeout()
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) * 3 / 4; left < timeout {
			timeout = left
		}
	}
	if timeout <= 0 {
		return authz.Verdict{}, &failure{causeTimeout, errors.New("no time left before the deadline")}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body, err := json.Marshal(txn)
	if err != nil {
		return authz.Verdict{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.RemoteURL, bytes.NewReader(body))
	if err != nil {
		return authz.Verdict{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "antaca-decisions/1")
	req.Header.Set(signing.Header, signing.Sign(p.RemoteSecret, c.cfg.Now(), body))
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return authz.Verdict{}, &failure{causeTimeout, err}
		}
		return authz.Verdict{}, &failure{causeError, err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		if ctx.Err() != nil {
			return authz.Verdict{}, &failure{causeTimeout, err}
		}
		return authz.Verdict{}, &failure{causeError, err}
	}
	if resp.StatusCode != http.StatusOK {
		return authz.Verdict{}, &failure{causeStatus, fmt.Errorf("HTTP %d", resp.StatusCode)}
	}
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil || a.Approved == nil {
		return authz.Verdict{}, &failure{causeGarbage, fmt.Errorf("not an answer (want {\"approved\": ...})")}
	}
	v := authz.Verdict{DecidedBy: authz.DecidedByPartner, Approve: *a.Approved}
	if !v.Approve {
		v.Reason = authz.ReasonPartnerDeclined
		v.PartnerReason = clip(a.Reason, 64)
		c.outcomes.WithLabelValues(p.ID, "declined").Inc()
		return v, nil
	}
	outcome := "approved"
	if a.Amount != nil {
		if *a.Amount <= 0 || *a.Amount > txn.Amount {
			return authz.Verdict{}, &failure{causeGarbage, fmt.Errorf("partial amount %d outside 1..%d", *a.Amount, txn.Amount)}
		}
		if *a.Amount < txn.Amount {
			v.Cap, outcome = *a.Amount, "partial"
		}
	}
	if a.Fund != nil {
		if *a.Fund <= 0 || *a.Fund > authz.MaxAmount {
			return authz.Verdict{}, &failure{causeGarbage, fmt.Errorf("fund %d outside 1..%d", *a.Fund, authz.MaxAmount)}
		}
		v.Fund, outcome = fmt.Sprint(*a.Fund), "funded"
	}
	c.outcomes.WithLabelValues(p.ID, outcome).Inc()
	return v, nil
}

// standInVerdict applies the program's stand-in policy.
func (c *Client) standInVerdict(p authz.Program, txn authz.PartnerTxn, cause string) authz.Verdict {
	v := authz.Verdict{DecidedBy: authz.DecidedByStandIn, Reason: authz.ReasonStandInDeclined}
	switch p.StandIn.Policy {
	case authz.StandInApproveIfFunded:
		v.Approve = true
	case authz.StandInApprove:
		if txn.Amount <= p.StandIn.Amount {
			v.Approve, v.Fund = true, "shortfall"
		}
	}
	result := "declined"
	if v.Approve {
		result = "approved"
	}
	c.standIn.WithLabelValues(p.ID, cause, result).Inc()
	return v
}

func (s *programState) isOpen(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Before(s.openUntil)
}

// fail counts a failure; it reports whether the circuit opened now. After
// a cooldown one failure opens it again (half-open).
func (s *programState) fail(now time.Time, threshold int, cooldown time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures++
	if s.failures >= threshold {
		s.openUntil = now.Add(cooldown)
		s.failures = threshold - 1
		return true
	}
	return false
}

// succeed resets the count; it reports whether the circuit had been open.
func (s *programState) succeed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.failures > 0 || !s.openUntil.IsZero()
	s.failures, s.openUntil = 0, time.Time{}
	return was
}

func clip(s string, n int) string {
	out := make([]rune, 0, n)
	for _, r := range s {
		if len(out) == n {
			break
		}
		if r >= 0x20 && r != 0x7f {
			out = append(out, r)
		}
	}
	return string(out)
}
