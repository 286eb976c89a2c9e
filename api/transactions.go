package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger/pgstore"
)

// Transactions: what a card or a balance did, newest first, on all three
// channels (api/README.md, "Transactions"). Read from Postgres, where
// every approval is committed before it is answered; declines and entries
// of ANTACA_ANSWER_AFTER=redis follow within one group commit, so a
// listing first waits for the write-behind to commit what this process
// queued (Config.JournalBarrier).

// Transaction statuses.
const (
	TxnDeclined          = "declined"
	TxnPending           = "pending"
	TxnCaptured          = "captured"
	TxnPartiallyCaptured = "partially_captured"
	TxnReversed          = "reversed"
	TxnPartiallyReversed = "partially_reversed"
	TxnExpired           = "expired"
	TxnCompleted         = "completed"
)

// Transaction is one authorization, financial message, refund or balance
// reload, with what happened to it since. It never holds card data: the
// card is named by its id.
type Transaction struct {
	ID             string       `json:"id"`
	CardID         string       `json:"card_id,omitempty"`
	BalanceID      string       `json:"balance_id"`
	Type           string       `json:"type"` // authorization, financial, refund, reload
	Status         string       `json:"status"`
	Amount         int64        `json:"amount"`
	ApprovedAmount int64        `json:"approved_amount"`
	CapturedAmount int64        `json:"captured_amount"`
	ReleasedAmount int64        `json:"released_amount"`
	Currency       string       `json:"currency"`
	Reason         authz.Reason `json:"reason,omitempty"`
	ActionCode     string       `json:"action_code,omitempty"`
	ApprovalCode   string       `json:"approval_code,omitempty"`
	Merchant       *Merchant    `json:"merchant,omitempty"`
	// DecidedBy says who decided an authorization: antaca, or for a
	// program with a backend partner or stand_in (docs/decisioning.md).
	DecidedBy string     `json:"decided_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	Events    []TxnEvent `json:"events"`
}

// Merchant is the card acceptor: DE42 (id), DE43 (name, city, country) and
// DE18 (mcc), as far as the message carried them.
type Merchant struct {
	ID      string `json:"id,omitempty"`
	Name    string `json:"name,omitempty"`
	City    string `json:"city,omitempty"`
	Country string `json:"country,omitempty"`
	MCC     string `json:"mcc,omitempty"`
}

// Place is the merchant's name, city and country in one line ("" when
// the message carried none of them).
func (m *Merchant) Place() string {
	if m == nil {
		return ""
	}
	var parts []string
	for _, p := range []string{m.Name, m.City, m.Country} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ", ")
}

// TxnEvent is one step of a transaction's history.
type TxnEvent struct {
	// Type: authorized, posted (0200, forced post), refunded, declined,
	// captured, reversed, expired, cancelled (the switch answered issuer
	// unavailable after all and released the hold), reloaded.
	Type   string    `json:"type"`
	Amount int64     `json:"amount"`
	At     time.Time `json:"at"`
}

// Transaction ids are opaque: "txn_" and the base64url of "h<hold id>" or
// "j<seq>.<partner id>" (a journal entry: decline, reload).
func txnID(ref pgstore.TxnRef) string {
	raw := "h" + ref.HoldID
	if ref.HoldID == "" {
		raw = "j" + strconv.FormatInt(ref.Seq, 10) + "." + ref.PartnerID
	}
	return "txn_" + base64.RawURLEncoding.EncodeToString([]byte(raw))
}

var errInvalidCursor = apiErr(400, "INVALID_CURSOR", "starting_after must be the id of a transaction of this listing")

func parseTxnID(id string) (pgstore.TxnRef, bool) {
	rest, ok := strings.CutPrefix(id, "txn_")
	if !ok || len(rest) > 512 {
		return pgstore.TxnRef{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) < 2 || !utf8.Valid(b) {
		return pgstore.TxnRef{}, false
	}
	s := string(b)
	switch s[0] {
	case 'h':
		return pgstore.TxnRef{HoldID: s[1:]}, true
	case 'j':
		seq, pid, ok := strings.Cut(s[1:], ".")
		n, err := strconv.ParseInt(seq, 10, 64)
		if !ok || err != nil || n < 1 || pid == "" {
			return pgstore.TxnRef{}, false
		}
		return pgstore.TxnRef{PartnerID: pid, Seq: n}, true
	}
	return pgstore.TxnRef{}, false
}

// txnPaging reads ?limit= (1-100, default 20) and ?starting_after=.
func txnPaging(c *call) (limit int, after *pgstore.TxnRef, err error) {
	q := c.r.URL.Query()
	limit = 20
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 100 {
			return 0, nil, invalid("limit", "limit must be an integer from 1 to 100")
		}
	}
	if v := q.Get("starting_after"); v != "" {
		ref, ok := parseTxnID(v)
		if !ok {
			return 0, nil, errInvalidCursor
		}
		after = &ref
	}
	return limit, after, nil
}

type txnPage struct {
	Data    []Transaction `json:"data"`
	HasMore bool          `json:"has_more"`
}

// GET .../cards/{cardId}/transactions
func (s *Server) cardTransactions(c *call) (int, any, error) {
	limit, after, err := txnPaging(c)
	if err != nil {
		return 0, nil, err
	}
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	return s.listTransactions(c, pgstore.TxnQuery{PartnerID: card.PartnerID, CardID: card.ID, After: after, Limit: limit})
}

var errTxnNotFound = apiErr(404, "TRANSACTION_NOT_FOUND", "transaction not found")

// GET .../cards/{cardId}/transactions/{transactionId}: one transaction of
// the card as it stands now, the same view as in the listing. An id that
// is malformed, unknown or of another card (a reload, which belongs to a
// balance, included) is 404.
func (s *Server) cardTransaction(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	ref, ok := parseTxnID(c.r.PathValue("transactionId"))
	if !ok || ref.HoldID == "" && ref.PartnerID != card.PartnerID {
		return 0, nil, errTxnNotFound
	}
	s.awaitJournal(c)
	t, ok, err := s.txns.Get(c.ctx, card.PartnerID, ref, math.MaxInt64)
	if err != nil {
		return 0, nil, err
	}
	switch {
	case !ok,
		t.Hold != nil && t.Hold.CardID != card.ID,
		t.Entry != nil && (t.Entry.Type != "decline" || pgstore.DeclinedCard(*t.Entry) != card.ID):
		return 0, nil, errTxnNotFound
	}
	return http.StatusOK, s.transactionOf(c.ctx, t, ""), nil
}

// GET .../balances/{balanceId}/transactions
func (s *Server) balanceTransactions(c *call) (int, any, error) {
	limit, after, err := txnPaging(c)
	if err != nil {
		return 0, nil, err
	}
	b, err := c.balance()
	if err != nil {
		return 0, nil, err
	}
	cards, err := s.cfg.Ledger.CardsOfBalance(c.ctx, b.PartnerID, b.ID)
	if err != nil {
		return 0, nil, err
	}
	ids := make([]string, 0, len(cards))
	for _, k := range cards {
		ids = append(ids, k.ID)
	}
	return s.listTransactions(c, pgstore.TxnQuery{PartnerID: b.PartnerID, BalanceID: b.ID, CardIDs: ids, After: after, Limit: limit})
}

// awaitJournal waits for the write-behind to commit what this process
// queued, so a read of Postgres sees what the switch answered.
func (s *Server) awaitJournal(c *call) {
	if s.cfg.JournalBarrier != nil {
		if err := s.cfg.JournalBarrier(c.ctx); err != nil {
			// The read is still right for everything approved; a
			// decline of the last moments may be missing.
			s.log.WarnContext(c.ctx, "transactions: waiting for the journal", "err", err)
		}
	}
}

func (s *Server) listTransactions(c *call, q pgstore.TxnQuery) (int, any, error) {
	s.awaitJournal(c)
	txns, more, err := s.txns.List(c.ctx, q)
	if errors.Is(err, pgstore.ErrForeignCursor) {
		return 0, nil, errInvalidCursor
	}
	if err != nil {
		return 0, nil, err
	}
	out := txnPage{Data: make([]Transaction, 0, len(txns)), HasMore: more}
	for _, t := range txns {
		out.Data = append(out.Data, s.transactionOf(c.ctx, t, q.BalanceID))
	}
	return http.StatusOK, out, nil
}

// GET /customers/me/cards, GET /secure/customers/{customerId}/cards: the
// customer's cards of every balance (no card data), ordered by id.
func (s *Server) listCards(c *call) (int, any, error) {
	_, cards, err := s.customerCardsOf(c)
	if err != nil {
		return 0, nil, err
	}
	out := make([]issuing.Card, 0, len(cards))
	for _, k := range cards {
		out = append(out, k.view)
	}
	return http.StatusOK, map[string]any{"cards": out}, nil
}

// journalContext is the part of a decision's journal context a
// transaction shows (authz writes it; no card data).
type journalContext struct {
	MTI          string `json:"mti"`
	Card         string `json:"card"`
	Amount       int64  `json:"amount"`
	Currency     string `json:"currency"`
	Merchant     string `json:"merchant"`
	MerchantName string `json:"merchant_name"`
	MCC          string `json:"mcc"`
	Txn          string `json:"txn"`
	DecidedBy    string `json:"decided_by"`
}

// decidedBy is who decided: antaca unless the context names the partner or
// its stand-in.
func (m journalContext) decidedBy() string {
	if m.DecidedBy != "" {
		return m.DecidedBy
	}
	return authz.DecidedByAntaca
}

func contextOf(e pgstore.JournalRow) journalContext {
	var m journalContext
	_ = json.Unmarshal(e.Meta, &m) // an entry without context still lists
	return m
}

// merchantOf reads DE42, DE43 and DE18. DE43 is taken as the usual 40
// positions: name 1-25, city 26-38, country 39-40.
func merchantOf(m journalContext) *Merchant {
	v := Merchant{ID: m.Merchant, MCC: m.MCC}
	n := m.MerchantName
	part := func(from, to int) string {
		if from >= len(n) {
			return ""
		}
		return strings.TrimSpace(n[from:min(to, len(n))])
	}
	if len(n) > 25 && utf8.ValidString(n[:25]) {
		v.Name, v.City, v.Country = part(0, 25), part(25, 38), part(38, len(n))
	} else {
		v.Name = strings.TrimSpace(n)
	}
	if v == (Merchant{}) {
		return nil
	}
	return &v
}

func msUTC(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// actionCode is DE39 as the configured ISO profile answers the reason.
func (s *Server) actionCode(r authz.Reason) string {
	if s.cfg.ActionCode == nil || r == "" {
		return ""
	}
	return s.cfg.ActionCode(r)
}

// transactionOf builds the view of a listed transaction. balanceID is the
// balance a reload is listed under.
func (s *Server) transactionOf(ctx context.Context, t pgstore.Txn, balanceID string) Transaction {
	if t.Hold == nil {
		return s.entryTransaction(ctx, *t.Entry, balanceID)
	}
	return s.holdTransaction(*t.Hold, t.History)
}

// entryTransaction is a decline or a reload.
func (s *Server) entryTransaction(ctx context.Context, e pgstore.JournalRow, balanceID string) Transaction {
	at := msUTC(e.TsMs)
	v := Transaction{ID: txnID(pgstore.TxnRef{PartnerID: e.PartnerID, Seq: e.Seq}), CreatedAt: at, UpdatedAt: at}
	if e.Type == "user_balance_reload" {
		for _, ch := range e.Changes {
			if ch.Table == "user_balances" && (balanceID == "" || ch.ID == balanceID) {
				v.BalanceID, v.Amount = ch.ID, ch.AddOf("available")
				break
			}
		}
		v.Type, v.Status = "reload", TxnCompleted
		v.ApprovedAmount, v.CapturedAmount = v.Amount, v.Amount
		v.Currency = s.balanceCurrency(ctx, e.PartnerID, v.BalanceID)
		v.Events = []TxnEvent{{Type: "reloaded", Amount: v.Amount, At: at}}
		return v
	}
	m := contextOf(e)
	v.CardID, v.BalanceID = m.Card, s.cardBalance(ctx, e.PartnerID, m.Card)
	v.Type = txnTypeOf("decline", m.Txn, m.MTI)
	v.Status, v.Amount, v.Currency = TxnDeclined, m.Amount, authz.AlphaCurrency(m.Currency)
	if v.Currency == "" {
		v.Currency = m.Currency
	}
	v.Reason = authz.Reason(e.Reason)
	v.ActionCode = s.actionCode(v.Reason)
	v.Merchant = merchantOf(m)
	v.DecidedBy = m.decidedBy()
	v.Events = []TxnEvent{{Type: "declined", Amount: m.Amount, At: at}}
	return v
}

// txnTypeOf names a transaction's type from the journal entry that made it,
// the processing code and the message type.
func txnTypeOf(entry, txn, mti string) string {
	switch {
	case entry == "refund" || txn == authz.TxnRefund:
		return "refund"
	case entry == "financial" || entry == "force_post" || strings.HasPrefix(mti, "02"):
		return "financial"
	}
	return "authorization"
}

// holdTransaction is a hold with its history.
func (s *Server) holdTransaction(h pgstore.HoldRow, history []pgstore.JournalRow) Transaction {
	v := Transaction{
		ID: txnID(pgstore.TxnRef{HoldID: h.ID}), CardID: h.CardID, BalanceID: h.BalanceID,
		Amount: h.Requested, ApprovedAmount: h.Approved, CapturedAmount: h.Captured, ReleasedAmount: h.Released,
		Currency: h.Currency, ApprovalCode: h.ApprovalCode, CreatedAt: msUTC(h.CreatedMs), UpdatedAt: msUTC(max(h.CreatedMs, h.ClosedMs)),
		Events: []TxnEvent{},
	}
	if v.Amount == 0 {
		v.Amount = h.Amount
	}
	if v.ApprovedAmount == 0 {
		v.ApprovedAmount = v.Amount
	}
	origin, cancelled := h.Origin, false
	for i, e := range history {
		ch, _ := e.Change("holds", h.ID)
		ev := TxnEvent{At: msUTC(e.TsMs)}
		switch e.Type {
		case "reserve", "financial", "force_post", "refund":
			if i == 0 {
				origin = e.Type
				m := contextOf(e)
				v.Reason, v.Merchant = authz.Reason(e.Reason), merchantOf(m)
				v.Type = txnTypeOf(e.Type, m.Txn, m.MTI)
				if e.Type == "reserve" || e.Type == "financial" {
					v.DecidedBy = m.decidedBy()
				}
			}
			ev.Type = map[string]string{"reserve": "authorized", "financial": "posted", "force_post": "posted", "refund": "refunded"}[e.Type]
			ev.Amount, _ = strconv.ParseInt(ch.Set["amount"], 10, 64)
		case "capture":
			ev.Type, ev.Amount = "captured", ch.AddOf("captured")
		case "void":
			ev.Type, ev.Amount = "reversed", ch.AddOf("released")
		case "expire":
			ev.Type, ev.Amount = "expired", ch.AddOf("released")
		case "late_cancel":
			ev.Type, ev.Amount = "cancelled", ch.AddOf("released")
			cancelled = true
			v.Reason = authz.Reason(e.Reason)
		default:
			continue
		}
		v.Events = append(v.Events, ev)
		if ev.At.After(v.UpdatedAt) {
			v.UpdatedAt = ev.At
		}
	}
	if v.Type == "" {
		v.Type = txnTypeOf(origin, h.TxnType, "")
	}
	if v.Reason == "" {
		v.Reason = authz.ReasonApproved
	}
	v.ActionCode = s.actionCode(v.Reason)
	v.Status = holdStatus(h, v.Type, cancelled)
	return v
}

// holdStatus maps a hold's state and amounts to a transaction status.
func holdStatus(h pgstore.HoldRow, typ string, cancelled bool) string {
	switch {
	case cancelled:
		// The network was told "issuer unavailable": for it there never
		// was an approval.
		return TxnDeclined
	case h.State == "OPEN" && h.Released > 0:
		return TxnPartiallyReversed
	case h.State == "OPEN":
		return TxnPending
	case h.State == "EXPIRED":
		return TxnExpired
	case h.State == "VOIDED":
		return TxnReversed
	case h.State == "REFUNDED" && h.Released > 0, h.State == "CAPTURED" && typ != "authorization" && h.Released > 0:
		// A refund or a posted transaction given back in part.
		return TxnPartiallyReversed
	case h.State == "REFUNDED", h.State == "CAPTURED" && typ != "authorization":
		return TxnCompleted
	case h.State == "CAPTURED" && h.Released > 0:
		// Less was captured than approved: the rest went back.
		return TxnPartiallyCaptured
	case h.State == "CAPTURED":
		return TxnCaptured
	}
	return strings.ToLower(h.State)
}

// cardBalance and balanceCurrency read what a journal entry does not say
// (best effort: a row Redis no longer has leaves the field empty).
func (s *Server) cardBalance(ctx context.Context, partnerID, cardID string) string {
	if cardID == "" {
		return ""
	}
	k, err := s.cfg.Ledger.Card(ctx, partnerID, cardID)
	if err != nil {
		return ""
	}
	return k.BalanceID
}

func (s *Server) balanceCurrency(ctx context.Context, partnerID, balanceID string) string {
	b, err := s.cfg.Ledger.UserBalance(ctx, partnerID, balanceID)
	if err != nil {
		return ""
	}
	return b.Currency
}
