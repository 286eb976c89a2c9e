package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/antaca/antaca/ledger"
)

// LowBalanceEvent is the JSON body POSTed to Config.LowBalanceWebhook when
// a partner balance falls below its threshold.
type LowBalanceEvent struct {
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
	ev := LowBalanceEvent{Event: "partner_balance_low", PartnerID: partnerID, BalanceID: b.ID, Type: b.Type,
		Currency: b.Currency, Available: ch.After, Threshold: ch.LowThreshold, At: s.now().UTC()}
	s.log.WarnContext(c.ctx, "partner balance below threshold", "partner", partnerID, "balance", b.ID,
		"available", ch.After, "threshold", ch.LowThreshold)
	if s.cfg.LowBalanceWebhook == "" {
		return
	}
	s.goBackground(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WebhookTimeout)
		defer cancel()
		if err := s.postWebhook(ctx, ev); err != nil {
			s.metrics.webhooks.WithLabelValues("error").Inc()
			s.log.Warn("low-balance webhook failed", "partner", partnerID, "err", err)
			return
		}
		s.metrics.webhooks.WithLabelValues("ok").Inc()
	})
}

func (s *Server) postWebhook(ctx context.Context, ev LowBalanceEvent) error {
	body, _ := json.Marshal(ev)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.LowBalanceWebhook, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.cfg.HTTPClient.Do(req)
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err // without the URL, which may carry a secret
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
