package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
)

// Partner notices (docs/notifications.md). A partner balance below its
// low-balance threshold raises one notice per crossing: the metric
// antaca_partner_balance_low_total, a log line, the webhook event
// partner_balance.low (partner endpoints and the operator's
// LowBalanceWebhook, through the outbox) and an e-mail to the partner's
// notice addresses. Whether a balance is low is kept in Postgres and
// changed in the same transaction that records the notice, so a balance
// that stays below is notified once, across restarts and switches, and
// again only after it was seen at or above its threshold.
//
// A balance is looked at after every operation that may move it across
// its threshold (a ledger script reports the crossing: an authorization,
// a stand-in advice, a completion above its hold, a CREDIT reload; a
// partner reload raises it), and every NoticeCheckInterval all of them
// are: that finds what went back up through reversals and expiries, and a
// notice a stopped switch did not record.

// operatorLowBalanceEndpoint is the outbox endpoint of LowBalanceWebhook.
const operatorLowBalanceEndpoint = "whe_operator_low_balance"

// PartnerBalanceCrossed lets other parts of the process (the authorization
// path, which lowers deposits too) report a partner balance that crossed
// below its threshold.
func (s *Server) PartnerBalanceCrossed(ctx context.Context, partnerID string, ch ledger.BalanceChange) {
	if ch.PartnerBalanceID == "" {
		return
	}
	s.observePartnerBalance(ctx, partnerID, ch.PartnerBalanceID, true)
}

// partnerBalanceChanged follows a REST operation that moved a partner
// balance. It runs before the answer, so a notice it raises is counted
// when the caller hears back.
func (s *Server) partnerBalanceChanged(c *call, partnerID string, ch ledger.BalanceChange) {
	if ch.PartnerBalanceID == "" {
		return
	}
	s.observePartnerBalance(c.ctx, partnerID, ch.PartnerBalanceID, ch.CrossedBelow())
}

// observePartnerBalance reads a partner balance and records what it shows.
func (s *Server) observePartnerBalance(ctx context.Context, partnerID, balanceID string, crossing bool) {
	b, err := s.cfg.Ledger.PartnerBalance(ctx, partnerID, balanceID)
	if err != nil {
		s.log.WarnContext(ctx, "reading partner balance after a change", "partner", partnerID, "balance", balanceID, "err", err)
		return
	}
	s.notePartnerBalance(ctx, b, crossing)
}

// errNoticesUnavailable answers what needs the notice and KYC tables,
// which only Postgres has: `antaca demo` (SQLite) runs without them.
var errNoticesUnavailable = apiErr(http.StatusNotImplemented, "NOT_AVAILABLE_ON_EMBEDDED_STORE",
	"partner notices and KYC checks need PostgreSQL; antaca demo runs without them")

// noticesOn reports whether the durable store keeps notices and KYC checks
// (PostgreSQL; not the embedded store of `antaca demo`).
func (s *Server) noticesOn() bool { return s.cfg.DB.Pool() != nil }

// notePartnerBalance refreshes the gauge and records the balance's state;
// when it turned low, the notice is recorded with it and the senders woken.
func (s *Server) notePartnerBalance(ctx context.Context, b ledger.PartnerBalance, crossing bool) {
	s.metrics.setAvailable(b)
	if !s.noticesOn() {
		return
	}
	obs := pgstore.BalanceObservation{PartnerID: b.PartnerID, BalanceID: b.ID, Available: b.Available, Threshold: b.LowThreshold,
		Version: b.Version, Crossing: crossing}
	at := s.now().UTC()
	res, err := s.notices.ObserveBalance(ctx, obs, func() (pgstore.LowNotice, error) { return s.lowNotice(b, at) })
	if err != nil {
		s.log.WarnContext(ctx, "recording a partner balance's low-balance state", "partner", b.PartnerID, "balance", b.ID, "err", err)
		return
	}
	if res.Recovered {
		s.log.InfoContext(ctx, "partner balance back at or above its threshold", "partner", b.PartnerID, "balance", b.ID,
			"available", b.Available, "threshold", b.LowThreshold)
	}
	if !res.Notified {
		return
	}
	s.metrics.low.WithLabelValues(b.PartnerID, b.Type, b.Currency).Inc()
	s.hooks.events.WithLabelValues("partner_balance.low").Inc()
	s.log.WarnContext(ctx, "partner balance below threshold", "partner", b.PartnerID, "balance", b.ID,
		"available", b.Available, "threshold", b.LowThreshold, "emails", len(res.Recipients))
	s.wakeWebhooks()
	s.wakeNotices()
}

// lowBalanceData is partner_balance.low's data.
type lowBalanceData struct {
	BalanceID string `json:"balanceId"`
	Type      string `json:"type"`
	Currency  string `json:"currency"`
	Available int64  `json:"available"`
	Threshold int64  `json:"threshold"`
}

// lowNotice is the notice of b turning low at at: the event and the e-mail.
func (s *Server) lowNotice(b ledger.PartnerBalance, at time.Time) (pgstore.LowNotice, error) {
	id := ledger.NewID("evt")
	body, err := json.Marshal(envelopeOf(id, "partner_balance.low", at, b.PartnerID,
		lowBalanceData{BalanceID: b.ID, Type: b.Type, Currency: b.Currency, Available: b.Available, Threshold: b.LowThreshold}))
	if err != nil {
		return pgstore.LowNotice{}, fmt.Errorf("encoding partner_balance.low: %w", err)
	}
	n := pgstore.LowNotice{
		Event:           pgstore.NewEvent{ID: id, Type: "partner_balance.low", OrderKey: b.ID, Body: body},
		WebhookRetryFor: s.cfg.WebhookRetryFor, EmailRetryFor: s.cfg.WebhookRetryFor,
	}
	if s.cfg.Mailer != nil {
		n.Subject = fmt.Sprintf("Antaca: %s %s balance of %s is below its threshold", b.Currency, strings.ToLower(b.Type), b.PartnerID)
		n.Body = fmt.Sprintf("The %s balance %s of partner %s fell below its low-balance threshold.\n\n"+
			"Available: %d %s (minor units)\nThreshold: %d %s (minor units)\nAt: %s\n\n"+
			"Reload it to keep authorizations approved. You hear from us again only after it was back at or above the threshold.\n"+
			"Notice %s\n",
			b.Type, b.ID, b.PartnerID, b.Available, b.Currency, b.LowThreshold, b.Currency, at.Format(time.RFC3339), id)
	}
	return n, nil
}

// wakeNotices makes the notice loop send e-mails now.
func (s *Server) wakeNotices() {
	select {
	case s.noticeWake <- struct{}{}:
	default:
	}
}

// RunNotices runs, until ctx ends, what partner notices and KYC checks
// need in the background: it sends due e-mails and KYC requests (every
// WebhookPoll, or when woken),
// looks at every partner balance every NoticeCheckInterval, and prunes
// the outbox tables of what is older than OutboxRetention. Run it on
// every switch: the e-mails are claimed with row locks.
func (s *Server) RunNotices(ctx context.Context) error {
	if !s.noticesOn() {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(s.cfg.WebhookPoll)
	defer t.Stop()
	var lastCheck, lastPrune, lastBacklog time.Time
	for {
		s.sendEmails(ctx)
		s.sendKYC(ctx, "")
		if time.Since(lastCheck) >= s.cfg.NoticeCheckInterval {
			s.CheckPartnerBalances(ctx)
			lastCheck = time.Now()
		}
		if time.Since(lastPrune) >= s.pruneEvery() {
			s.PruneOutbox(ctx)
			lastPrune = time.Now()
		}
		if time.Since(lastBacklog) >= 5*time.Second {
			s.refreshEmailBacklog(ctx)
			lastBacklog = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.noticeWake:
		}
	}
}

// pruneEvery is how often the outbox is pruned: a tenth of the retention,
// between a minute and an hour.
func (s *Server) pruneEvery() time.Duration {
	return min(max(s.cfg.OutboxRetention/10, time.Minute), time.Hour)
}

// CheckPartnerBalances looks at every partner balance once.
func (s *Server) CheckPartnerBalances(ctx context.Context) {
	refs, err := s.notices.PartnerBalances(ctx)
	if err != nil {
		s.logHookErr(ctx, "listing partner balances for the low-balance check", err)
		return
	}
	for _, r := range refs {
		if ctx.Err() != nil {
			return
		}
		b, err := s.cfg.Ledger.PartnerBalance(ctx, r.PartnerID, r.BalanceID)
		if errors.Is(err, ledger.ErrNotFound) || errors.Is(err, ledger.ErrPartnerNotFound) {
			continue // not in Redis (yet, or while it is rebuilt)
		}
		if err != nil {
			s.logHookErr(ctx, "reading a partner balance for the low-balance check", err, "partner", r.PartnerID)
			return
		}
		s.notePartnerBalance(ctx, b, false)
	}
}

// sendEmails sends every due notice e-mail.
func (s *Server) sendEmails(ctx context.Context) {
	if s.cfg.Mailer == nil {
		return
	}
	const claim = 16
	for ctx.Err() == nil {
		es, err := s.notices.ClaimEmails(ctx, claim, s.cfg.WebhookTimeout+2*time.Minute)
		if err != nil {
			s.logHookErr(ctx, "claiming notice e-mails", err)
			return
		}
		for _, e := range es {
			s.sendEmail(ctx, e)
		}
		if len(es) < claim {
			return
		}
	}
}

// sendEmail makes one attempt and records it.
func (s *Server) sendEmail(ctx context.Context, e pgstore.Email) {
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := s.cfg.Mailer.Send(sctx, Email{MessageID: e.EventID + "@antaca", To: e.Recipients, Subject: e.Subject, Body: e.Body})
	cancel()
	rec := context.WithoutCancel(ctx)
	if err == nil {
		s.notes.emails.WithLabelValues("sent").Inc()
		if err := s.notices.EmailSent(rec, e.ID); err != nil {
			s.logHookErr(ctx, "recording a sent e-mail", err)
		}
		return
	}
	wait := s.retryWait(e.Attempts)
	gaveUp, rerr := s.notices.EmailFailed(rec, e.ID, err.Error(), wait, IsPermanentMail(err))
	if rerr != nil {
		s.logHookErr(ctx, "recording an e-mail attempt", rerr)
		return
	}
	if gaveUp {
		s.notes.emails.WithLabelValues("failed").Inc()
		s.log.WarnContext(ctx, "notice e-mail given up", "partner", e.PartnerID, "event", e.EventID, "attempts", e.Attempts, "err", err)
		return
	}
	s.notes.emails.WithLabelValues("retry").Inc()
	s.log.InfoContext(ctx, "notice e-mail failed, will retry", "partner", e.PartnerID, "event", e.EventID,
		"attempt", e.Attempts, "in", wait, "err", err)
}

func (s *Server) refreshEmailBacklog(ctx context.Context) {
	n, oldest, err := s.notices.EmailBacklog(ctx)
	if err != nil {
		s.logHookErr(ctx, "reading the e-mail backlog", err)
		return
	}
	s.notes.backlog.Set(float64(n))
	s.notes.oldest.Set(oldest.Seconds())
}

// PruneOutbox removes the finished webhook deliveries, events and notice
// e-mails older than OutboxRetention, and counts them.
func (s *Server) PruneOutbox(ctx context.Context) {
	res, err := s.outbox.Prune(ctx, time.Now().Add(-s.cfg.OutboxRetention), 5000)
	s.notes.pruned.WithLabelValues("webhook_deliveries").Add(float64(res.Deliveries))
	s.notes.pruned.WithLabelValues("webhook_events").Add(float64(res.Events))
	s.notes.pruned.WithLabelValues("notice_emails").Add(float64(res.Emails))
	if err != nil {
		s.logHookErr(ctx, "pruning the outbox", err)
		return
	}
	if res.Deliveries+res.Events+res.Emails > 0 {
		s.log.InfoContext(ctx, "outbox pruned", "deliveries", res.Deliveries, "events", res.Events, "emails", res.Emails,
			"older_than", s.cfg.OutboxRetention)
	}
}

// noticeMetrics are the notices' and the outbox retention's.
type noticeMetrics struct {
	emails  *prometheus.CounterVec // result
	backlog prometheus.Gauge
	oldest  prometheus.Gauge
	pruned  *prometheus.CounterVec // table
}

func newNoticeMetrics(reg prometheus.Registerer) (*noticeMetrics, error) {
	m := &noticeMetrics{
		emails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_notice_emails_total",
			Help: "Notice e-mail attempts by result: sent (the server accepted it), retry (failed, tried again later), failed (refused for good or past the retry period: given up).",
		}, []string{"result"}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "antaca_notice_email_backlog",
			Help: "Notice e-mails waiting to be sent.",
		}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "antaca_notice_email_backlog_oldest_seconds",
			Help: "Age of the oldest notice e-mail waiting (0 when none waits).",
		}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_outbox_pruned_rows_total",
			Help: "Rows removed from the outbox tables by the retention, by table.",
		}, []string{"table"}),
	}
	var err error
	m.emails, err = register(reg, m.emails)
	if err == nil {
		m.backlog, err = register(reg, m.backlog)
	}
	if err == nil {
		m.oldest, err = register(reg, m.oldest)
	}
	if err == nil {
		m.pruned, err = register(reg, m.pruned)
	}
	return m, err
}

// Notice addresses: GET/PUT /admin/partners/{partnerId}/notice-emails.

type noticeEmailsView struct {
	Addresses []string `json:"addresses"`
}

// maxNoticeAddresses bounds a partner's notice addresses.
const maxNoticeAddresses = 10

// GET /admin/partners/{partnerId}/notice-emails
func (s *Server) getNoticeEmails(c *call) (int, any, error) {
	if !s.noticesOn() {
		return 0, nil, errNoticesUnavailable
	}
	p, err := c.partner()
	if err != nil {
		return 0, nil, err
	}
	addrs, err := s.notices.Addresses(c.ctx, p.ID)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, noticeEmailsView{Addresses: addrs}, nil
}

// PUT /admin/partners/{partnerId}/notice-emails {"addresses": [...]}: the
// addresses replace the old ones; an empty list stops the e-mails.
func (s *Server) setNoticeEmails(c *call) (int, any, error) {
	if !s.noticesOn() {
		return 0, nil, errNoticesUnavailable
	}
	p, err := c.partner()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		Addresses *[]string `json:"addresses"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.Addresses == nil {
		return 0, nil, invalid("addresses", "addresses is required (an empty list stops the e-mails)")
	}
	if len(*in.Addresses) > maxNoticeAddresses {
		return 0, nil, invalid("addresses", fmt.Sprintf("at most %d addresses", maxNoticeAddresses))
	}
	out := []string{}
	for i, a := range *in.Addresses {
		field := fmt.Sprintf("addresses[%d]", i)
		if err := checkText(field, a, true, 254); err != nil {
			return 0, nil, err
		}
		addr, err := mail.ParseAddress(a)
		if err != nil || addr.Name != "" || addr.Address != a || !emailRE.MatchString(a) {
			return 0, nil, invalid(field, "not a plain e-mail address such as ops@example.com")
		}
		for _, prev := range out {
			if strings.EqualFold(prev, a) {
				return 0, nil, invalid(field, "listed twice")
			}
		}
		out = append(out, a)
	}
	if err := s.notices.SetAddresses(c.ctx, p.ID, out); err != nil {
		return 0, nil, err
	}
	s.log.InfoContext(c.ctx, "partner notice addresses set", "partner", p.ID, "count", len(out), "by", c.admin.Username)
	return http.StatusOK, noticeEmailsView{Addresses: out}, nil
}
