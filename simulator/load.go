package simulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/cardcrypto"
)

// Load message kinds of the mix.
const (
	KindAuth       = "auth"       // 0100 purchase
	KindFinancial  = "financial"  // 0200 purchase
	KindBalance    = "balance"    // 0100 balance inquiry
	KindReversal   = "reversal"   // 0400 of an earlier approved 0100
	KindCompletion = "completion" // 0120 completing an earlier approved 0100
	KindDecline    = "decline"    // a deliberate decline: unknown card, wrong expiry, zero amount
)

// Mix weighs the kinds of messages a load sends.
type Mix map[string]int

// DefaultMix is the mix `sim load` sends unless told otherwise.
var DefaultMix = Mix{KindAuth: 55, KindFinancial: 15, KindBalance: 10, KindReversal: 8, KindCompletion: 7, KindDecline: 5}

// ParseMix reads "auth=60,financial=20,decline=5".
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("mix entry %q: want kind=weight", part)
		}
		k = strings.TrimSpace(k)
		switch k {
		case KindAuth, KindFinancial, KindBalance, KindReversal, KindCompletion, KindDecline:
		default:
			return nil, fmt.Errorf("mix kind %q: want auth, financial, balance, reversal, completion or decline", k)
		}
		m[k] = n
	}
	total := 0
	for _, n := range m {
		total += n
	}
	if total == 0 {
		return nil, errors.New("mix has no weight")
	}
	return m, nil
}

func (m Mix) String() string {
	keys := sortedKeys(m)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, ",")
}

// LoadConfig configures an open-model load: messages are scheduled at a
// fixed rate (optionally ramped up linearly) whatever the answers do, and
// latency is measured from each message's scheduled send time, so a slow
// switch cannot hide its queueing delay (no coordinated omission).
type LoadConfig struct {
	// Rate is the target rate in messages per second.
	Rate float64
	// RampFrom, with RampDuration, ramps the rate linearly from RampFrom
	// to Rate over RampDuration, then holds Rate.
	RampFrom     float64
	RampDuration time.Duration
	// Duration or Count bounds the run (whichever is reached first; at
	// least one must be set).
	Duration time.Duration
	Count    int
	// Timeout is how long an answer may take (default 2s). A timed-out
	// authorization or financial message is reversed with 0400.
	Timeout time.Duration
	Mix     Mix
	// MinAmount and MaxAmount bound purchase amounts (defaults 100, 5000).
	MinAmount, MaxAmount int64
	// PINShare is the share of messages on PIN-capable cards that carry
	// DE52 with the right PIN (needs Keys).
	PINShare float64
	Keys     *cardcrypto.Keys
	// Cards are the cards to use (active cards of the cards file).
	Cards []Card
	// UnknownBIN builds PANs for deliberate unknown-card declines.
	UnknownBIN string
	// ReversalRetries is how often a reversal of a timed-out message is
	// repeated (0401) while unanswered or while the switch does not find
	// the original yet (default 5).
	ReversalRetries int
	// MaxInFlight bounds messages awaiting an answer (default 20000); a
	// message scheduled beyond it is counted as a client error.
	MaxInFlight int
	// Progress, when set, receives the run's progress: a bar redrawn in
	// place when it is a terminal, otherwise one short line every
	// ProgressInterval (default 5s); both end with a last report.
	Progress         io.Writer
	ProgressInterval time.Duration
	// Label names the run in the report.
	Label string
}

func (c *LoadConfig) defaults() error {
	if c.Rate <= 0 {
		return errors.New("load: rate must be positive")
	}
	if c.Duration <= 0 && c.Count <= 0 {
		return errors.New("load: give a duration or a count")
	}
	if c.RampFrom < 0 || c.RampDuration < 0 {
		return errors.New("load: negative ramp")
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if len(c.Mix) == 0 {
		c.Mix = DefaultMix
	}
	if c.MinAmount <= 0 {
		c.MinAmount = 100
	}
	if c.MaxAmount < c.MinAmount {
		c.MaxAmount = max(5000, c.MinAmount)
	}
	if c.ReversalRetries <= 0 {
		c.ReversalRetries = 5
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 20000
	}
	if len(c.Cards) == 0 {
		return errors.New("load: no cards (seed first)")
	}
	return nil
}

// scheduleOffset is when message i (from 0) is due, counted from the start.
func (c *LoadConfig) scheduleOffset(i int) time.Duration {
	n := float64(i)
	r := c.Rate
	if c.RampDuration > 0 && c.RampFrom != r {
		d := c.RampDuration.Seconds()
		r0 := c.RampFrom
		inRamp := (r0 + r) * d / 2
		if n < inRamp {
			a := (r - r0) / (2 * d)
			t := (-r0 + math.Sqrt(r0*r0+4*a*n)) / (2 * a)
			return time.Duration(t * float64(time.Second))
		}
		return c.RampDuration + time.Duration((n-inRamp)/r*float64(time.Second))
	}
	return time.Duration(n / r * float64(time.Second))
}

// Report is the outcome of a load run.
type Report struct {
	Label     string    `json:"label,omitempty"`
	Started   time.Time `json:"started"`
	Profile   string    `json:"profile"`
	Links     int       `json:"links"`
	Mix       string    `json:"mix"`
	TimeoutMS float64   `json:"timeout_ms"`
	// RequestedRate is what the schedule asked for on average over its
	// window; TargetRate the configured (final) rate.
	RequestedRate float64 `json:"requested_rate"`
	TargetRate    float64 `json:"target_rate"`
	// AchievedRate is messages actually sent per second of the send window.
	AchievedRate float64 `json:"achieved_rate"`
	// AnsweredRate is answers per second of the same window.
	AnsweredRate   float64 `json:"answered_rate"`
	WindowSeconds  float64 `json:"window_seconds"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// Requests = Answers + Timeouts + Errors.
	Requests int64 `json:"requests"`
	Answers  int64 `json:"answers"`
	Timeouts int64 `json:"timeouts"`
	Errors   int64 `json:"errors"`
	// Codes counts answers by DE39.
	Codes  map[string]int64      `json:"codes"`
	ByKind map[string]*KindStats `json:"by_kind"`
	// Latency of answered messages from their scheduled send time, ms.
	Latency Latency `json:"latency_ms"`
	// ScheduleLag is how late messages left against their schedule: the
	// load generator's (and the machine's timer) share of Latency.
	ScheduleLag Latency        `json:"schedule_lag_ms"`
	Reversals   ReversalStats  `json:"timeout_reversals"`
	Timeline    []SecondStats  `json:"timeline"`
	ErrorKind   map[string]int `json:"error_kinds,omitempty"`
	// Histogram is the latency distribution for plots (ms, cumulative share).
	Histogram []Percentile `json:"percentiles"`
}

// KindStats counts one kind of message.
type KindStats struct {
	Requests int64 `json:"requests"`
	Answers  int64 `json:"answers"`
	Timeouts int64 `json:"timeouts"`
	Errors   int64 `json:"errors"`
}

// Latency summarises a latency distribution in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// ReversalStats are the 0400s sent for timed-out messages.
type ReversalStats struct {
	// Sent counts reversals (first attempts); Attempts includes repeats.
	Sent     int64 `json:"sent"`
	Attempts int64 `json:"attempts"`
	Accepted int64 `json:"accepted"`
	// Unresolved reversals were never accepted within the retries.
	Unresolved int64 `json:"unresolved"`
}

// SecondStats is one second of the run, by scheduled time.
type SecondStats struct {
	Second   int     `json:"t"`
	Sent     int64   `json:"sent"`
	Answers  int64   `json:"answers"`
	Timeouts int64   `json:"timeouts"`
	Errors   int64   `json:"errors"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
}

// Percentile is one point of the latency distribution.
type Percentile struct {
	Percentile float64 `json:"percentile"`
	MS         float64 `json:"ms"`
}

// loadRun is the state of one run.
type loadRun struct {
	cfg   LoadConfig
	n     *Network
	start time.Time

	mu       sync.Mutex
	hist     *hdrhistogram.Histogram
	lag      *hdrhistogram.Histogram // scheduled -> actually sent
	seconds  []*second
	codes    map[string]int64
	byKind   map[string]*KindStats
	errKinds map[string]int

	requests, answers, timeouts, errs atomic.Int64
	inFlight                          atomic.Int64
	revSent, revAttempts, revOK       atomic.Int64
	revUnresolved                     atomic.Int64

	approved chan Txn // approved authorizations for reversals and completions
	pick     []string // kinds, weighted
	pinCards []int
	wg       sync.WaitGroup
}

type second struct {
	sent, answers, timeouts, errs int64
	hist                          *hdrhistogram.Histogram
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) } // µs, 1µs..60s

// RunLoad runs an open-model load on n and reports it.
func RunLoad(ctx context.Context, n *Network, cfg LoadConfig) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	lr := &loadRun{cfg: cfg, n: n, hist: newHist(), lag: newHist(), codes: map[string]int64{}, byKind: map[string]*KindStats{},
		errKinds: map[string]int{}, approved: make(chan Txn, 4096)}
	for _, k := range sortedKeys(cfg.Mix) {
		for range cfg.Mix[k] {
			lr.pick = append(lr.pick, k)
		}
		lr.byKind[k] = &KindStats{}
	}
	for i, c := range cfg.Cards {
		if c.PIN != "" && cfg.Keys != nil {
			lr.pinCards = append(lr.pinCards, i)
		}
	}
	lr.start = time.Now().Add(20 * time.Millisecond)

	stopProgress := lr.progress()
	sent := 0
	var lastSend time.Time
	for i := 0; ctx.Err() == nil; i++ {
		if cfg.Count > 0 && i >= cfg.Count {
			break
		}
		off := cfg.scheduleOffset(i)
		if cfg.Duration > 0 && off >= cfg.Duration {
			break
		}
		due := lr.start.Add(off)
		if !waitUntil(ctx, due) {
			break
		}
		sent++
		lastSend = time.Now()
		lr.fire(ctx, due, lastSend.Sub(due))
	}
	window := time.Duration(0)
	if cfg.Duration > 0 {
		window = cfg.Duration
	} else if sent > 0 {
		window = cfg.scheduleOffset(sent-1) + time.Duration(float64(time.Second)/cfg.Rate)
	}
	if late := lastSend.Sub(lr.start); late > window {
		window = late
	}
	lr.wg.Wait()
	stopProgress()
	return lr.report(sent, window), nil
}

// waitUntil sleeps until due on a runtime timer. It reports false when
// ctx ended first. The timer's own lateness (on virtual machines a median
// of ~0.6 ms) is part of the measured latency and reported as send lag.
// A spin or a nanosleep on a locked thread would be more punctual, but on
// a small machine it takes a processor away from the switch under test.
func waitUntil(ctx context.Context, due time.Time) bool {
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (lr *loadRun) sec(due time.Time) *second {
	i := max(int(due.Sub(lr.start)/time.Second), 0)
	for len(lr.seconds) <= i {
		lr.seconds = append(lr.seconds, &second{hist: hdrhistogram.New(1, 60_000_000, 2)})
	}
	return lr.seconds[i]
}

// fire sends one scheduled message in its own goroutine.
func (lr *loadRun) fire(ctx context.Context, due time.Time, lag time.Duration) {
	kind := lr.pick[rand.N(len(lr.pick))]
	lr.requests.Add(1)
	lr.mu.Lock()
	_ = lr.lag.RecordValue(max(lag.Microseconds(), 1))
	lr.sec(due).sent++
	lr.byKind[kind].Requests++
	lr.mu.Unlock()
	if lr.inFlight.Load() >= int64(lr.cfg.MaxInFlight) {
		lr.fail(kind, due, "client in-flight limit reached")
		return
	}
	lr.inFlight.Add(1)
	lr.wg.Add(1)
	go func() {
		defer lr.wg.Done()
		defer lr.inFlight.Add(-1)
		lr.send(ctx, kind, due)
	}()
}

func (lr *loadRun) fail(kind string, due time.Time, why string) {
	lr.errs.Add(1)
	lr.mu.Lock()
	lr.sec(due).errs++
	lr.byKind[kind].Errors++
	lr.errKinds[why]++
	lr.mu.Unlock()
}

// txnFor builds the message of a kind.
func (lr *loadRun) txnFor(kind string) Txn {
	cards := lr.cfg.Cards
	ci := rand.N(len(cards))
	card := cards[ci]
	amount := lr.cfg.MinAmount + rand.N(lr.cfg.MaxAmount-lr.cfg.MinAmount+1)
	cur := authz.NumericCurrency(card.Currency)
	t := Txn{MTI: "0100", PAN: card.PAN, Amount: amount, Currency: cur, Expiry: card.Expiry}
	switch kind {
	case KindFinancial:
		t.MTI = "0200"
	case KindBalance:
		t.ProcessingCode, t.Amount = PCBalanceInquiry, 0
	case KindReversal, KindCompletion:
		select {
		case orig := <-lr.approved:
			mti := "0400"
			if kind == KindCompletion {
				mti = "0120"
				orig.Amount = max(1, orig.Amount-rand.N(orig.Amount/2+1))
			}
			return Txn{MTI: mti, PAN: orig.PAN, Amount: orig.Amount, Currency: orig.Currency, Expiry: orig.Expiry,
				Original: orig.AsOriginal(), RRN: orig.RRN, Acquirer: orig.Acquirer}
		default: // nothing to reverse yet: authorize instead
		}
	case KindDecline:
		switch rand.N(3) {
		case 0:
			if pan, err := unissuedPAN(lr.cfg.UnknownBIN); err == nil {
				t.PAN = pan
			}
		case 1:
			t.Expiry = "0001" // January 2000: wrong expiry
		default:
			t.Amount = 0 // invalid amount
		}
		return t
	}
	if len(lr.pinCards) > 0 && lr.cfg.PINShare > 0 && rand.Float64() < lr.cfg.PINShare {
		c := cards[lr.pinCards[rand.N(len(lr.pinCards))]]
		if block, err := lr.cfg.Keys.EncodePINBlock(c.PIN, c.PAN); err == nil {
			t.PAN, t.Expiry, t.Currency, t.PINBlock = c.PAN, c.Expiry, authz.NumericCurrency(c.Currency), block
		}
	}
	return t
}

func (lr *loadRun) send(ctx context.Context, kind string, due time.Time) {
	t := lr.txnFor(kind)
	msg, err := lr.n.Build(&t)
	if err != nil {
		lr.fail(kind, due, "building message")
		return
	}
	sctx, cancel := context.WithTimeout(ctx, lr.cfg.Timeout)
	resp, err := lr.n.Send(sctx, msg)
	cancel()
	lat := time.Since(due)
	switch {
	case err != nil && IsTimeout(err):
		lr.timeouts.Add(1)
		lr.mu.Lock()
		lr.sec(due).timeouts++
		lr.byKind[kind].Timeouts++
		lr.mu.Unlock()
		if t.MTI == "0100" || t.MTI == "0200" {
			lr.reverse(ctx, t)
		}
		return
	case err != nil:
		why := "send failed"
		if errors.Is(err, ErrNoLink) {
			why = "no ISO link"
		}
		lr.fail(kind, due, why)
		return
	}
	a, err := ParseAnswer(resp)
	if err != nil {
		lr.fail(kind, due, "unreadable answer")
		return
	}
	lr.answers.Add(1)
	us := lat.Microseconds()
	lr.mu.Lock()
	_ = lr.hist.RecordValue(max(us, 1))
	s := lr.sec(due)
	s.answers++
	_ = s.hist.RecordValue(max(us, 1))
	lr.codes[a.Code]++
	lr.byKind[kind].Answers++
	lr.mu.Unlock()
	if t.MTI == "0100" && t.ProcessingCode == PCPurchase && a.Approval != "" {
		select {
		case lr.approved <- t:
		default:
		}
	}
}

// reverse sends the 0400 a network sends for an authorization that got no
// answer, repeating it (0401) while it is unanswered or the switch does not
// know the original yet (the original may still be on its way).
func (lr *loadRun) reverse(ctx context.Context, orig Txn) {
	lr.revSent.Add(1)
	rev := Txn{MTI: "0400", PAN: orig.PAN, Amount: orig.Amount, Currency: orig.Currency, Expiry: orig.Expiry,
		Original: orig.AsOriginal(), RRN: orig.RRN, Acquirer: orig.Acquirer}
	notFound, _ := expectedCode(lr.n.Profile(), "", string(authz.ReasonOriginalNotFound))
	accepted, _ := expectedCode(lr.n.Profile(), "", string(authz.ReasonReversalAccepted))
	backoff := 100 * time.Millisecond
	for attempt := 0; attempt <= lr.cfg.ReversalRetries; attempt++ {
		if attempt > 0 {
			rev.MTI = "0401"
			select {
			case <-ctx.Done():
				lr.revUnresolved.Add(1)
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
		lr.revAttempts.Add(1)
		msg, err := lr.n.Build(&rev)
		if err != nil {
			break
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lr.cfg.Timeout)
		resp, err := lr.n.Send(sctx, msg)
		cancel()
		if err != nil {
			continue
		}
		a, err := ParseAnswer(resp)
		if err != nil {
			continue
		}
		if a.Code == accepted {
			lr.revOK.Add(1)
			return
		}
		if a.Code != notFound {
			break // refused for another reason: repeating will not help
		}
	}
	lr.revUnresolved.Add(1)
}

func ms(us int64) float64 { return float64(us) / 1000 }

func (lr *loadRun) report(sent int, window time.Duration) *Report {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	r := &Report{
		Label: lr.cfg.Label, Started: lr.start, Profile: lr.n.Profile().Name, Links: len(lr.n.links), Mix: lr.cfg.Mix.String(),
		TimeoutMS: float64(lr.cfg.Timeout) / float64(time.Millisecond), TargetRate: lr.cfg.Rate,
		WindowSeconds: window.Seconds(), ElapsedSeconds: time.Since(lr.start).Seconds(),
		Requests: lr.requests.Load(), Answers: lr.answers.Load(), Timeouts: lr.timeouts.Load(), Errors: lr.errs.Load(),
		Codes: lr.codes, ByKind: lr.byKind, ErrorKind: lr.errKinds,
		Reversals: ReversalStats{Sent: lr.revSent.Load(), Attempts: lr.revAttempts.Load(), Accepted: lr.revOK.Load(), Unresolved: lr.revUnresolved.Load()},
	}
	if window > 0 {
		r.AchievedRate = float64(sent) / window.Seconds()
		r.AnsweredRate = float64(r.Answers) / window.Seconds()
		// The schedule's own average over the same window.
		r.RequestedRate = float64(lr.scheduled(window)) / window.Seconds()
	}
	h := lr.hist
	if h.TotalCount() > 0 {
		r.Latency = Latency{P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
			P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: h.Mean() / 1000}
		for _, q := range []float64{0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100} {
			r.Histogram = append(r.Histogram, Percentile{Percentile: q, MS: ms(h.ValueAtQuantile(q))})
		}
	}
	if l := lr.lag; l.TotalCount() > 0 {
		r.ScheduleLag = Latency{P50: ms(l.ValueAtQuantile(50)), P90: ms(l.ValueAtQuantile(90)), P99: ms(l.ValueAtQuantile(99)),
			P999: ms(l.ValueAtQuantile(99.9)), Max: ms(l.Max()), Mean: l.Mean() / 1000}
	}
	for i, s := range lr.seconds {
		ss := SecondStats{Second: i, Sent: s.sent, Answers: s.answers, Timeouts: s.timeouts, Errors: s.errs}
		if s.hist.TotalCount() > 0 {
			ss.P50, ss.P99, ss.Max = ms(s.hist.ValueAtQuantile(50)), ms(s.hist.ValueAtQuantile(99)), ms(s.hist.Max())
		}
		r.Timeline = append(r.Timeline, ss)
	}
	return r
}

// scheduled counts messages the schedule places inside window.
func (lr *loadRun) scheduled(window time.Duration) int {
	lo, hi := 0, 1
	for lr.cfg.scheduleOffset(hi) < window && (lr.cfg.Count == 0 || hi < lr.cfg.Count) {
		hi *= 2
	}
	if lr.cfg.Count > 0 {
		hi = min(hi, lr.cfg.Count)
	}
	// The first index at or past the window.
	n := lo + sort.Search(hi-lo+1, func(i int) bool { return lr.cfg.scheduleOffset(lo+i) >= window })
	if lr.cfg.Count > 0 {
		n = min(n, lr.cfg.Count)
	}
	return n
}

// CodeNames lists the answered codes in order, for reports.
func (r *Report) CodeNames() []string {
	names := sortedKeys(r.Codes)
	slices.SortStableFunc(names, func(a, b string) int { return int(r.Codes[b] - r.Codes[a]) })
	return names
}
