package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/simulator"
)

// Profile is the shape of the load: which messages, which amounts.
type Profile struct {
	Name string
	Mix  simulator.Mix
	// MinAmount and MaxAmount bound purchase amounts (minor units).
	MinAmount, MaxAmount int64
}

// Profiles are the loads `antaca bench --profile` knows.
var Profiles = map[string]Profile{
	// auth: 0100 purchases of amount 1 only, every one of which should be
	// approved; the load the hot path is judged by.
	"auth": {Name: "auth", Mix: simulator.Mix{simulator.KindAuth: 1}, MinAmount: 1, MaxAmount: 1},
	// mixed: the simulator's default mix (0100, 0200, balance inquiries,
	// 0400, 0120 and deliberate declines), amounts 1.00 to 50.00.
	"mixed": {Name: "mixed", Mix: simulator.DefaultMix, MinAmount: 100, MaxAmount: 5000},
}

// Approved action codes (cmf profile): approved, approved for a partial amount.
const (
	codeApproved        = "0000"
	codeApprovedPartial = "0002"
)

// unavailableCodes are the answers that mean the switch failed the
// network rather than declined the card: issuer unavailable, system error
// (cmf and iso87).
var unavailableCodes = map[string]bool{"9112": true, "9109": true, "91": true, "96": true}

// driver sends the bench's own loads over the simulator's ISO links: the
// closed loop (N messages in flight) and open loops in phases (a fixed
// schedule whatever the answers, latency from each message's scheduled
// time). It remembers the reference (RRN and card id) of every approved
// purchase, so that the run can check afterwards that each one's hold is
// in Postgres.
type driver struct {
	n          *simulator.Network
	cards      []simulator.Card
	prof       Profile
	timeout    time.Duration
	unknownBIN string

	approved chan simulator.Txn // for reversals and completions (mixed)

	mu   sync.Mutex
	refs []string // RRN|card id of approved 0100/0200 purchases
}

func newDriver(n *simulator.Network, cards []simulator.Card, prof Profile, timeout time.Duration, unknownBIN string) *driver {
	return &driver{n: n, cards: cards, prof: prof, timeout: timeout, unknownBIN: unknownBIN, approved: make(chan simulator.Txn, 4096)}
}

// approvedRefs returns (and forgets) the references collected so far.
func (d *driver) approvedRefs() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.refs
	d.refs = nil
	return r
}

func (d *driver) pickKind() string {
	total := 0
	for _, w := range d.prof.Mix {
		total += w
	}
	n := rand.N(total)
	keys := make([]string, 0, len(d.prof.Mix))
	for k := range d.prof.Mix {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if n < d.prof.Mix[k] {
			return k
		}
		n -= d.prof.Mix[k]
	}
	return simulator.KindAuth
}

// txnFor builds a message of kind on a random card; cardID is the card it
// was issued on ("" for messages that create no hold).
func (d *driver) txnFor(kind string) (t simulator.Txn, cardID string) {
	c := d.cards[rand.N(len(d.cards))]
	amount := d.prof.MinAmount
	if d.prof.MaxAmount > d.prof.MinAmount {
		amount += rand.N(d.prof.MaxAmount - d.prof.MinAmount + 1)
	}
	t = simulator.Txn{MTI: "0100", PAN: c.PAN, Amount: amount, Currency: authz.NumericCurrency(c.Currency), Expiry: c.Expiry}
	switch kind {
	case simulator.KindFinancial:
		t.MTI = "0200"
	case simulator.KindBalance:
		t.ProcessingCode, t.Amount = simulator.PCBalanceInquiry, 0
		return t, ""
	case simulator.KindReversal, simulator.KindCompletion:
		select {
		case orig := <-d.approved:
			mti := "0400"
			if kind == simulator.KindCompletion {
				mti = "0120"
			}
			return simulator.Txn{MTI: mti, PAN: orig.PAN, Amount: orig.Amount, Currency: orig.Currency, Expiry: orig.Expiry,
				Original: orig.AsOriginal(), RRN: orig.RRN, Acquirer: orig.Acquirer}, ""
		default: // nothing to refer to yet: authorize instead
		}
	case simulator.KindDecline:
		if rand.N(2) == 0 {
			t.Expiry = "0001" // January 2000: wrong expiry
		} else {
			t.Amount = 0 // invalid amount
		}
		return t, ""
	}
	return t, c.ID
}

// exchange sends one message and records its outcome in rec, by due.
func (d *driver) exchange(ctx context.Context, rec *recorder, due time.Time) {
	kind := d.pickKind()
	t, cardID := d.txnFor(kind)
	msg, err := d.n.Build(&t)
	if err != nil {
		rec.fail(due, "building message")
		return
	}
	sctx, cancel := context.WithTimeout(ctx, d.timeout)
	resp, err := d.n.Send(sctx, msg)
	cancel()
	lat := time.Since(due)
	switch {
	case err != nil && simulator.IsTimeout(err):
		rec.timeout(due)
		return
	case errors.Is(err, simulator.ErrNoLink):
		rec.fail(due, "no ISO link")
		return
	case err != nil:
		rec.fail(due, "send failed")
		return
	}
	a, err := simulator.ParseAnswer(resp)
	if err != nil {
		rec.fail(due, "unreadable answer")
		return
	}
	approved := a.Approval != "" && (a.Code == codeApproved || a.Code == codeApprovedPartial)
	rec.answer(due, lat, a.Code)
	if approved && cardID != "" {
		d.mu.Lock()
		d.refs = append(d.refs, t.RRN+"|"+cardID)
		d.mu.Unlock()
		if t.MTI == "0100" {
			select {
			case d.approved <- t:
			default:
			}
		}
	}
}

// closedLoop keeps inFlight messages outstanding for dur: each worker
// sends its next message as soon as the previous one is answered. Latency
// is measured from each send.
func (d *driver) closedLoop(ctx context.Context, inFlight int, dur time.Duration, label string) *simulator.Report {
	rec := newRecorder(time.Now(), label)
	end := rec.start.Add(dur)
	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) {
				d.exchange(ctx, rec, time.Now())
			}
		})
	}
	wg.Wait()
	rep := rec.report(d.n, d.prof, d.timeout, dur, 0)
	rep.Links = d.n.Up()
	return rep
}

// Phase is one stretch of an open loop at a fixed rate.
type Phase struct {
	Name     string        `json:"name"`
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"-"`
	// Start, when set, is called when the phase's first message is due.
	Start func() `json:"-"`
}

// openLoop sends at each phase's rate for its duration, one after the
// other without a pause, whatever the answers do, and reports each phase
// (by scheduled time: a message belongs to the phase it was due in).
func (d *driver) openLoop(ctx context.Context, phases []Phase) []*simulator.Report {
	start := time.Now().Add(20 * time.Millisecond)
	recs := make([]*recorder, len(phases))
	var wg sync.WaitGroup
	at := start
	for pi, ph := range phases {
		rec := newRecorder(at, ph.Name)
		recs[pi] = rec
		interval := time.Duration(float64(time.Second) / ph.Rate)
		n := int(ph.Rate * ph.Duration.Seconds())
		if ph.Start != nil && sleepUntil(ctx, at) {
			ph.Start()
		}
		for i := range n {
			due := at.Add(time.Duration(i) * interval)
			if !sleepUntil(ctx, due) {
				break
			}
			rec.sent(due, time.Since(due))
			wg.Go(func() { d.exchange(ctx, rec, due) })
		}
		at = at.Add(ph.Duration)
	}
	wg.Wait()
	out := make([]*simulator.Report, len(phases))
	for i, rec := range recs {
		out[i] = rec.report(d.n, d.prof, d.timeout, phases[i].Duration, phases[i].Rate)
		out[i].Links = d.n.Up()
	}
	return out
}

func sleepUntil(ctx context.Context, due time.Time) bool {
	dd := time.Until(due)
	if dd <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(dd)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// recorder accumulates one run's outcomes into a simulator.Report, so the
// bench's own loads read (and plot) like `sim load`'s.
type recorder struct {
	start time.Time
	label string

	mu                                sync.Mutex
	hist, lag                         *hdrhistogram.Histogram
	seconds                           []*secStats
	codes                             map[string]int64
	errKinds                          map[string]int
	requests, answers, timeouts, errs int64
	explicitSends                     bool
}

type secStats struct {
	sent, answers, timeouts, errs int64
	hist                          *hdrhistogram.Histogram
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) } // µs

func newRecorder(start time.Time, label string) *recorder {
	return &recorder{start: start, label: label, hist: newHist(), lag: newHist(), codes: map[string]int64{}, errKinds: map[string]int{}}
}

func (r *recorder) sec(due time.Time) *secStats {
	i := max(int(due.Sub(r.start)/time.Second), 0)
	for len(r.seconds) <= i {
		r.seconds = append(r.seconds, &secStats{hist: hdrhistogram.New(1, 60_000_000, 2)})
	}
	return r.seconds[i]
}

// sent records a scheduled message leaving lag after its due time (open
// loops); closed loops count a message when its outcome arrives.
func (r *recorder) sent(due time.Time, lag time.Duration) {
	r.mu.Lock()
	r.explicitSends = true
	r.requests++
	r.sec(due).sent++
	_ = r.lag.RecordValue(max(lag.Microseconds(), 1))
	r.mu.Unlock()
}

func (r *recorder) countSend(due time.Time) {
	if !r.explicitSends {
		r.requests++
		r.sec(due).sent++
	}
}

func (r *recorder) answer(due time.Time, lat time.Duration, code string) {
	us := max(lat.Microseconds(), 1)
	r.mu.Lock()
	r.countSend(due)
	r.answers++
	r.codes[code]++
	_ = r.hist.RecordValue(us)
	s := r.sec(due)
	s.answers++
	_ = s.hist.RecordValue(us)
	r.mu.Unlock()
}

func (r *recorder) timeout(due time.Time) {
	r.mu.Lock()
	r.countSend(due)
	r.timeouts++
	r.sec(due).timeouts++
	r.mu.Unlock()
}

func (r *recorder) fail(due time.Time, why string) {
	r.mu.Lock()
	r.countSend(due)
	r.errs++
	r.sec(due).errs++
	r.errKinds[why]++
	r.mu.Unlock()
}

func ms(us int64) float64 { return float64(us) / 1000 }

func latencyOf(h *hdrhistogram.Histogram) simulator.Latency {
	if h.TotalCount() == 0 {
		return simulator.Latency{}
	}
	return simulator.Latency{P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: h.Mean() / 1000}
}

// report summarises the run over window; rate is the scheduled rate (0
// for a closed loop).
func (r *recorder) report(n *simulator.Network, prof Profile, timeout, window time.Duration, rate float64) *simulator.Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &simulator.Report{
		Label: r.label, Started: r.start, Profile: n.Profile().Name, Mix: prof.Mix.String(),
		TimeoutMS: float64(timeout) / float64(time.Millisecond), TargetRate: rate, RequestedRate: rate,
		WindowSeconds: window.Seconds(), ElapsedSeconds: time.Since(r.start).Seconds(),
		Requests: r.requests, Answers: r.answers, Timeouts: r.timeouts, Errors: r.errs,
		Codes: r.codes, ErrorKind: r.errKinds, ByKind: map[string]*simulator.KindStats{},
		Latency: latencyOf(r.hist), ScheduleLag: latencyOf(r.lag),
	}
	if window > 0 {
		rep.AchievedRate = float64(r.requests) / window.Seconds()
		rep.AnsweredRate = float64(r.answers) / window.Seconds()
	}
	if rate == 0 {
		rep.RequestedRate, rep.TargetRate = rep.AchievedRate, rep.AchievedRate
	}
	if r.hist.TotalCount() > 0 {
		for _, q := range []float64{0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100} {
			rep.Histogram = append(rep.Histogram, simulator.Percentile{Percentile: q, MS: ms(r.hist.ValueAtQuantile(q))})
		}
	}
	for i, s := range r.seconds {
		ss := simulator.SecondStats{Second: i, Sent: s.sent, Answers: s.answers, Timeouts: s.timeouts, Errors: s.errs}
		if s.hist.TotalCount() > 0 {
			ss.P50, ss.P99, ss.Max = ms(s.hist.ValueAtQuantile(50)), ms(s.hist.ValueAtQuantile(99)), ms(s.hist.Max())
		}
		rep.Timeline = append(rep.Timeline, ss)
	}
	return rep
}

// approvalsOf counts approved answers in a report.
func approvalsOf(rep *simulator.Report) int64 {
	return rep.Codes[codeApproved] + rep.Codes[codeApprovedPartial]
}

// failuresOf counts what failed the network, by DE39 code, plus
// "timeout" and "error" (no answer): with the auth profile every answer
// but an approval is a failure (each card has funds for the whole run);
// with the mixed profile, which declines on purpose, only issuer
// unavailable and system error are.
func failuresOf(rep *simulator.Report, prof Profile) map[string]int64 {
	out := map[string]int64{}
	for code, n := range rep.Codes {
		if code == codeApproved || code == codeApprovedPartial {
			continue
		}
		if prof.Name == "auth" || unavailableCodes[code] {
			out[code] += n
		}
	}
	if rep.Timeouts > 0 {
		out["timeout"] = rep.Timeouts
	}
	if rep.Errors > 0 {
		out["error"] = rep.Errors
	}
	return out
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// formatCodes prints "9112:12 timeout:3", largest first, or "none".
func formatCodes(m map[string]int64) string {
	if total(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
