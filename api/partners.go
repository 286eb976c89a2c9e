package api

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/antaca/antaca/api/pki"
	"github.com/antaca/antaca/ledger"
)

var binRE = regexp.MustCompile(`^[0-9]{6,8}$`)

// POST /admin/partners
func (s *Server) createPartner(c *call) (int, any, error) {
	var in struct {
		ID           string `json:"id"`
		Name         string `json:"name"`
		BIN          string `json:"bin"`
		Currency     string `json:"currency"`
		FundingModel string `json:"fundingModel"`
		// DigitalFirst registers the program for digital first: its
		// virtual cards may get digital-first plastic copies (print).
		DigitalFirst bool `json:"digitalFirst"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	switch {
	case !pki.ValidPartnerID(in.ID):
		return 0, nil, invalid("id", "id must be 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit (it is the CN of the partner's certificate)")
	case checkText("name", in.Name, true, 200) != nil:
		return 0, nil, checkText("name", in.Name, true, 200)
	case !binRE.MatchString(in.BIN):
		return 0, nil, invalid("bin", "bin must be 6 to 8 digits")
	case !currencyRE.MatchString(in.Currency):
		return 0, nil, invalid("currency", "currency must be an ISO 4217 alpha code, e.g. EUR")
	case in.FundingModel != ledger.FundingDeposit && in.FundingModel != ledger.FundingCredit:
		return 0, nil, invalid("fundingModel", "fundingModel must be DEPOSIT or CREDIT")
	}
	// A BIN routes PANs to one partner: refuse one that is taken or that
	// an existing shorter BIN already covers.
	owner, err := s.cfg.Ledger.PartnerByBIN(c.ctx, in.BIN)
	if err == nil {
		if owner == in.ID {
			return 0, nil, ledger.ErrAlreadyExists
		}
		return 0, nil, apiErr(http.StatusConflict, "BIN_IN_USE", "the BIN belongs to another partner program")
	}
	if !errors.Is(err, ledger.ErrNotFound) {
		return 0, nil, err
	}
	p := ledger.Partner{ID: in.ID, Name: in.Name, BIN: in.BIN, Currency: in.Currency, FundingModel: in.FundingModel, DigitalFirst: in.DigitalFirst}
	if err := s.cfg.Ledger.CreatePartner(c.ctx, p); err != nil {
		return 0, nil, err
	}
	if p, err = s.cfg.Ledger.Partner(c.ctx, p.ID); err != nil {
		return 0, nil, err
	}
	s.log.InfoContext(c.ctx, "partner created", "partner", p.ID, "by", c.admin.Username)
	return http.StatusCreated, partnerOf(p), nil
}

// GET /admin/partners
func (s *Server) listPartners(c *call) (int, any, error) {
	partners, err := s.cfg.Ledger.Partners(c.ctx)
	if err != nil {
		return 0, nil, err
	}
	out := make([]partnerView, 0, len(partners))
	for _, p := range partners {
		out = append(out, partnerOf(p))
	}
	return http.StatusOK, map[string]any{"partners": out}, nil
}

// GET /admin/partners/{partnerId}
func (s *Server) getPartner(c *call) (int, any, error) {
	p, err := c.partner()
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, partnerOf(p), nil
}

// GET /secure/partner/balances, /admin/partners/{partnerId}/balances
func (s *Server) listPartnerBalances(c *call) (int, any, error) {
	p, err := c.partner()
	if err != nil {
		return 0, nil, err
	}
	ids, err := s.cfg.Ledger.PartnerBalanceIDs(c.ctx, p.ID)
	if err != nil {
		return 0, nil, err
	}
	out := make([]partnerBalanceView, 0, len(ids))
	for _, id := range ids {
		b, err := s.cfg.Ledger.PartnerBalance(c.ctx, p.ID, id)
		if err != nil {
			return 0, nil, err
		}
		s.metrics.setAvailable(b)
		out = append(out, partnerBalanceOf(b))
	}
	slices.SortFunc(out, func(a, b partnerBalanceView) int {
		return strings.Compare(a.Type+a.Currency, b.Type+b.Currency)
	})
	return http.StatusOK, map[string]any{"balances": out}, nil
}

// POST /admin/partners/{partnerId}/balances: one balance per type and currency.
func (s *Server) createPartnerBalance(c *call) (int, any, error) {
	p, err := c.partner()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		Type                string `json:"type"`
		Currency            string `json:"currency"`
		LowBalanceThreshold *int64 `json:"lowBalanceThreshold"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.Type != ledger.FundingDeposit && in.Type != ledger.FundingCredit {
		return 0, nil, invalid("type", "type must be DEPOSIT or CREDIT")
	}
	if !currencyRE.MatchString(in.Currency) {
		return 0, nil, invalid("currency", "currency must be an ISO 4217 alpha code, e.g. EUR")
	}
	var threshold int64
	if in.LowBalanceThreshold != nil {
		threshold = *in.LowBalanceThreshold
	}
	if threshold < 0 || threshold > maxAmount {
		return 0, nil, invalid("lowBalanceThreshold", fmt.Sprintf("lowBalanceThreshold must be 0 (no alert) or a positive amount of at most %d minor units", maxAmount))
	}
	id := ledger.NewID("pbl")
	if err := s.cfg.Ledger.CreatePartnerBalance(c.ctx, p.ID, id, in.Type, in.Currency, threshold); err != nil {
		return 0, nil, err
	}
	b, err := s.cfg.Ledger.PartnerBalance(c.ctx, p.ID, id)
	if err != nil {
		return 0, nil, err
	}
	s.notePartnerBalance(c.ctx, b, false)
	return http.StatusCreated, partnerBalanceOf(b), nil
}

func (c *call) partnerBalance() (ledger.PartnerBalance, error) {
	p, err := c.partner()
	if err != nil {
		return ledger.PartnerBalance{}, err
	}
	b, err := c.s.cfg.Ledger.PartnerBalance(c.ctx, p.ID, c.r.PathValue("balanceId"))
	if errors.Is(err, ledger.ErrNotFound) {
		return b, errBalanceNotFound
	}
	return b, err
}

// GET /admin/partners/{partnerId}/balances/{balanceId}
func (s *Server) getPartnerBalance(c *call) (int, any, error) {
	b, err := c.partnerBalance()
	if err != nil {
		return 0, nil, err
	}
	s.metrics.setAvailable(b)
	return http.StatusOK, partnerBalanceOf(b), nil
}

// POST /admin/partners/{partnerId}/balances/{balanceId}/reload: money
// from outside (the partner's bank transfer, booked by the operator).
func (s *Server) reloadPartnerBalance(c *call) (int, any, error) {
	b, err := c.partnerBalance()
	if err != nil {
		return 0, nil, err
	}
	var in amountInput
	if err := in.read(c, b.Currency); err != nil {
		return 0, nil, err
	}
	key, err := idempotencyKey(c, b.ID)
	if err != nil {
		return 0, nil, err
	}
	if _, err := s.cfg.Ledger.ReloadPartnerBalance(c.ctx, b.PartnerID, b.ID, *in.Amount, key); err != nil {
		return 0, nil, err
	}
	nb, err := s.cfg.Ledger.PartnerBalance(c.ctx, b.PartnerID, b.ID)
	if err != nil {
		return 0, nil, err
	}
	s.notePartnerBalance(c.ctx, nb, false)
	s.log.InfoContext(c.ctx, "partner balance reloaded", "partner", b.PartnerID, "balance", b.ID, "amount", *in.Amount, "by", c.admin.Username)
	return http.StatusOK, partnerBalanceOf(nb), nil
}

type summary struct {
	Currency string `json:"currency"`
	// Users is the sum of all user balances (available + held).
	Users int64 `json:"users"`
	// Partners is the sum of all partner balances (available + reserved).
	Partners int64 `json:"partners"`
	// Wallet is Users + Partners.
	Wallet int64 `json:"wallet"`
}

// GET /admin/summaries: per currency, "Users" (sum of user
// balances) and "Wallet" (users plus partner balances). It reads every
// balance row of every partner from Redis (SCAN), so it is an operator's
// control tool, not something to poll; it is not an atomic snapshot while
// authorizations run.
func (s *Server) summaries(c *call) (int, any, error) {
	sums, err := s.cfg.Ledger.Summaries(c.ctx)
	if err != nil {
		return 0, nil, err
	}
	out := make([]summary, 0, len(sums))
	for _, v := range sums {
		out = append(out, summary{Currency: v.Currency, Users: v.Users, Partners: v.Partners, Wallet: v.Users + v.Partners})
	}
	return http.StatusOK, map[string]any{"summaries": out, "asOf": s.now().UTC().Truncate(time.Millisecond)}, nil
}
