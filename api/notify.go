package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/antaca/antaca/ledger"
)

// LowBalanceEvent is the JSON body POSTed to Config.LowBalanceWebhook when
// a partner balance falls below its threshold.
type LowBalanceEvent struct {
	// ID is unique per event and the same in every delivery attempt (also
	// sent as the Idempotency-Key header), so a receiver can drop repeats.
	ID        string    `json:"id"`
	Event     string    `json:"event"` // "partner_balance_low"
	PartnerID string    `json:"partnerId"`
	BalanceID string    `json:"balanceId"`
	Type      string    `json:"type"`
	Currency  string    `json:"currency"`
	Available int64     `json:"available"`
	Threshold int64     `json:"threshold"`
	At        time.Time `json:"at"`
}

// PartnerBalanceCrossed lets other parts of the process (the authorization
// path, which lowers deposits too) report a partner balance change; it does
// what the REST operations do after theirs.
func (s *Server) PartnerBalanceCrossed(ctx context.Context, partnerID string, ch ledger.BalanceChange) {
	s.partnerBalanceChanged(&call{ctx: ctx}, partnerID, ch)
}

// partnerBalanceChanged follows an operation that lowered a partner
// balance: it refreshes the gauge and, when the balance crossed below its
// threshold, counts it and calls the webhook in the background.
func (s *Server) partnerBalanceChanged(c *call, partnerID string, ch ledger.BalanceChange) {
	if ch.PartnerBalanceID == "" {
		return
	}
	b, err := s.cfg.Ledger.PartnerBalance(c.ctx, partnerID, ch.PartnerBalanceID)
	if err != nil {
		s.log.WarnContext(c.ctx, "reading partner balance after a change", "partner", partnerID, "err", err)
		return
	}
	s.metrics.setAvailable(b)
	if !ch.CrossedBelow() {
		return
	}
	s.metrics.low.WithLabelValues(partnerID, b.Type, b.Currency).Inc()
	ev := LowBalanceEvent{ID: ledger.NewID("evt"), Event: "partner_balance_low", PartnerID: partnerID, BalanceID: b.ID, Type: b.Type,
		Currency: b.Currency, Available: ch.After, Threshold: ch.LowThreshold, At: s.now().UTC()}
	s.log.WarnContext(c.ctx, "partner balance below threshold", "partner", partnerID, "balance", b.ID,
		"available", ch.After, "threshold", ch.LowThreshold)
	s.goBackground(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.enqueueLowBalance(ctx, ev)
	})
	if s.cfg.LowBalanceWebhook == "" {
		return
	}
	s.goBackground(func() { s.deliverWebhook(ev) })
}

// deliverWebhook posts ev, retrying what may succeed later (network
// errors, 5xx, 408, 429) with exponential backoff, and gives up on other
// answers, after WebhookAttempts, or when the server closes.
func (s *Server) deliverWebhook(ev LowBalanceEvent) {
	backoff := s.cfg.WebhookBackoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WebhookTimeout)
		err := s.postWebhook(ctx, ev)
		cancel()
		if err == nil {
			s.metrics.webhooks.WithLabelValues("ok").Inc()
			return
		}
		var perm permanentError
		if errors.As(err, &perm) || attempt >= s.cfg.WebhookAttempts {
			s.metrics.webhooks.WithLabelValues("error").Inc()
			s.log.Warn("low-balance webhook failed", "partner", ev.PartnerID, "event", ev.ID, "attempts", attempt, "err", err)
			return
		}
		s.metrics.webhooks.WithLabelValues("retry").Inc()
		s.log.Info("low-balance webhook failed, retrying", "partner", ev.PartnerID, "event", ev.ID, "attempt", attempt, "in", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-s.stopping:
			s.metrics.webhooks.WithLabelValues("dropped").Inc()
			s.log.Warn("low-balance webhook dropped at shutdown", "partner", ev.PartnerID, "event", ev.ID, "attempts", attempt)
			return
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// permanentError is a webhook answer that repeating will not change.
type permanentError struct{ error }

func (s *Server) postWebhook(ctx context.Context, ev LowBalanceEvent) error {
	body, _ := json.Marshal(ev)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.LowBalanceWebhook, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", ev.ID)
	resp, err := s.cfg.HTTPClient.Do(req)
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err // without the URL, which may carry a secret
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	switch {
	case resp.StatusCode/100 == 2:
	case resp.StatusCode/100 == 5, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("webhook answered %s", resp.Status)
	default:
		return permanentError{fmt.Errorf("webhook answered %s", resp.Status)}
	}
	return nil
}
