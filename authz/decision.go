package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Who decided an authorization (recorded as decided_by in its journal
// context and shown on the transaction).
const (
	DecidedByAntaca  = "antaca"
	DecidedByPartner = "partner"
	DecidedByStandIn = "stand_in"
)

// PartnerTxn is what a program's backend is asked about: the transaction
// with the card, balance and customer ids, never card data.
type PartnerTxn struct {
	ID           string `json:"id"`
	Type         string `json:"type"` // authorization, financial
	ProgramID    string `json:"program_id"`
	PartnerID    string `json:"partner_id"`
	CardID       string `json:"card_id"`
	BalanceID    string `json:"balance_id"`
	CustomerID   string `json:"customer_id"`
	Amount       int64  `json:"amount"`
	Currency     string `json:"currency"`
	TxnType      string `json:"processing_code"`
	MCC          string `json:"mcc,omitempty"`
	MerchantID   string `json:"merchant_id,omitempty"`
	MerchantName string `json:"merchant_name,omitempty"`
	Country      string `json:"country,omitempty"`
	Channel      string `json:"channel,omitempty"`
	AcquirerID   string `json:"acquirer_id,omitempty"`
	TerminalID   string `json:"terminal_id,omitempty"`
	STAN         string `json:"stan"`
	RRN          string `json:"rrn"`
	CreatedAt    string `json:"created_at"`
}

// Verdict is what decides an authorization of a program with a remote
// backend: the partner's answer, or the program's stand-in policy when the
// backend did not answer in time or usably.
type Verdict struct {
	DecidedBy string // DecidedByPartner or DecidedByStandIn
	Approve   bool
	// Cap is a partial approval by the partner (0: the whole amount).
	Cap int64
	// Fund funds the user balance just in time (an amount, "shortfall"
	// or ""), charged to the partner as a reload would be.
	Fund string
	// Reason is the decline's reason when !Approve.
	Reason Reason
	// PartnerReason is the partner's own reason for a decline (journaled).
	PartnerReason string
}

// Decider asks a program's backend about an authorization. It always
// answers: failures become the program's stand-in verdict.
type Decider interface {
	Decide(ctx context.Context, p Program, txn PartnerTxn) Verdict
}

// askPartner lets the backend of the card's program decide, when it has
// one, an authorization that passed Antaca's own checks (and its spend
// controls that need no window: the partner is not asked about what they
// decline anyway). A decline is recorded and returned (declined true); an
// approval adjusts f (partial cap, just-in-time funding, decided_by) for
// the reservation, which still checks the windows and the funds.
func (e *Engine) askPartner(ctx context.Context, req *Request, card CardInfo, base Decision, amount int64, key string, f *Funds) (bool, Decision, error) {
	if e.Decider == nil || e.Programs == nil || card.ID == "" {
		return false, Decision{}, nil
	}
	p, err := e.Programs.Program(ctx, card.PartnerID, card.ProgramID)
	if err != nil {
		return false, Decision{}, fmt.Errorf("reading program: %w", err)
	}
	if p.RemoteURL == "" {
		return false, Decision{}, nil
	}
	ctl := p.Controls
	if card.Controls != "" {
		ctl = Controls{}
		_ = json.Unmarshal([]byte(card.Controls), &ctl)
	}
	if ctl.StaticReason(f.Facts.withAmount(amount)) != "" {
		return false, Decision{}, nil // the reservation declines it, as without a backend
	}
	typ := "authorization"
	if req.Kind == KindFinancial {
		typ = "financial"
	}
	v := e.Decider.Decide(ctx, p, PartnerTxn{
		ID: req.TransactionKey(), Type: typ, ProgramID: p.ID, PartnerID: card.PartnerID, CardID: card.ID,
		BalanceID: card.BalanceID, CustomerID: card.CustomerID, Amount: amount, Currency: card.Currency,
		TxnType: req.TxnType, MCC: req.MCC, MerchantID: req.MerchantID, MerchantName: req.MerchantName,
		Country: f.Facts.Country, Channel: f.Facts.Channel, AcquirerID: req.AcquirerID, TerminalID: req.TerminalID,
		STAN: req.STAN, RRN: req.RRN, CreatedAt: e.now().UTC().Format(time.RFC3339Nano),
	})
	meta := journalMetaBy(req, card, v.DecidedBy, v.PartnerReason)
	if !v.Approve {
		reason := v.Reason
		if reason == "" {
			reason = ReasonPartnerDeclined
		}
		prior, err := e.Ledger.RecordDecline(ctx, card.PartnerID, key, amount, reason, meta)
		if errors.Is(err, ErrMismatch) {
			return true, withReason(base, ReasonFormatError), nil
		}
		if err != nil {
			return true, Decision{}, fmt.Errorf("recording decline: %w", err)
		}
		return true, e.fromPrior(base, prior, card), nil
	}
	f.Meta, f.Cap, f.Fund = meta, v.Cap, v.Fund
	return false, Decision{}, nil
}

func (f Facts) withAmount(a int64) Facts {
	f.Amount = a
	return f
}
