package authz

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// CardInfo is what the engine needs to know of a card.
type CardInfo struct {
	ID        string
	PartnerID string
	BalanceID string
	Type      CardType
	Status    CardStatus
	Lock      LockReason
	Expiry    string // YYMM
	// PINVerifier is the keyed one-way verifier of the card's PIN ("" when
	// none is set).
	PINVerifier string
	PINTries    int
	// CVVEnc is the encrypted CVV2 (compared when a request carries one).
	CVVEnc string
	// CustomerID is the card holder's id (told to a program's backend).
	CustomerID string
	// Currency is the alpha ISO 4217 code of the card's balance.
	Currency string
	// Version is the card row's version when it was read; the reservation
	// checks it atomically, so a card changed since (locked, removed, a
	// new PIN or CVV2) is never approved on what was read before.
	Version int64
	// Cached says the card came from the ledger's in-process cache: a
	// decline decided on it is decided again on a fresh read.
	Cached bool
	// ProgramID is the card's program ("": the partner's default one).
	ProgramID string
	// Controls are the card's own spend controls (JSON, "": its
	// program's apply). The reservation applies them atomically; the
	// engine reads them only to spare a partner's backend a request the
	// controls decline anyway.
	Controls string
}

// Funds asks the ledger for one atomic reservation (see ledger.Reserve).
type Funds struct {
	PartnerID, BalanceID, CardID string
	Amount                       int64
	IdempotencyKey               string
	ApprovalCode                 string
	TxnType                      string
	Capture                      bool
	AllowPartial                 bool
	Reference                    string
	Meta                         string
	// CardVersion, when not 0, must still be the card's version (see
	// CardInfo.Version), else the ledger refuses with ErrCardChanged and
	// changes nothing.
	CardVersion int64
	// ProgramID is the card's program: its controls apply when the card
	// has none, in its time zone.
	ProgramID string
	// Facts are what the spend controls look at (the amount is Amount).
	Facts Facts
	// Fund funds the user balance just in time before the hold, charged
	// to the partner as a reload: an amount, "shortfall", or "".
	Fund string
	// Cap is a partial approval by the partner: at most this much (0: none).
	Cap int64
}

// FundsResult is the ledger's answer to a reservation, a post or a refund.
type FundsResult struct {
	Reason       Reason
	HoldID       string
	Approved     int64
	Available    int64
	ApprovalCode string
}

// Release is the ledger's answer to a void or a capture.
type Release struct {
	Amount    int64 // released (void) or posted (capture)
	Available int64
}

// PriorAnswer is an answer stored under an idempotency key.
type PriorAnswer struct {
	Reason       Reason
	HoldID       string
	ApprovalCode string
	Approved     int64
	Available    int64
}

// Errors a Ledger returns that the engine branches on.
var (
	ErrCardNotFound = errors.New("card not found")
	ErrHoldNotFound = errors.New("hold not found")
	ErrHoldClosed   = errors.New("hold already resolved")
	ErrMismatch     = errors.New("idempotency key reused with different data")
	// ErrUnavailable wraps failures to reach the store.
	ErrUnavailable = errors.New("store unavailable")
	// ErrCardChanged says the card changed since it was read: decide again
	// on a fresh read.
	ErrCardChanged = errors.New("card changed since it was read")
	// ErrBalanceLimit says a credit would take a balance past MaxAmount.
	ErrBalanceLimit = errors.New("balance would exceed the largest amount")
)

// Ledger is the state the engine reads and changes. Package ledger
// implements it; every money method is one atomic script.
type Ledger interface {
	// FindCard routes a PAN to its partner (BIN) and card (lookup token).
	// It may answer from a cache (CardInfo.Cached).
	FindCard(ctx context.Context, pan string) (CardInfo, error)
	// ForgetCard drops what a cache holds for a PAN, so that the next
	// FindCard reads the store.
	ForgetCard(pan string)
	// Reserve places a hold (or a posted hold with Capture); a decline
	// changes no balance and is stored under the key.
	Reserve(ctx context.Context, f Funds) (FundsResult, error)
	// ForcePost posts without a funds check (stand-in advice).
	ForcePost(ctx context.Context, f Funds) (FundsResult, error)
	// Refund credits the user balance.
	Refund(ctx context.Context, f Funds) (FundsResult, error)
	// Capture posts an open hold, force allowing more than it holds.
	Capture(ctx context.Context, partnerID, holdID string, amount int64, idemKey, meta string) (Release, error)
	// Void releases amount (0: all) of a hold, or gives back what it posted.
	Void(ctx context.Context, partnerID, holdID string, amount int64, idemKey, meta string) (Release, error)
	// HoldAmount returns what a hold currently stands for: the held amount
	// of an open hold, the posted amount of a captured one.
	HoldAmount(ctx context.Context, partnerID, holdID string) (int64, error)
	// Prior returns the answer stored under an idempotency key.
	Prior(ctx context.Context, partnerID, key string) (PriorAnswer, bool, error)
	// FindHold finds the hold of an original transaction by its key, or by
	// the reference (RRN + PAN) when that fails.
	FindHold(ctx context.Context, partnerID, originalKey, reference string) (string, error)
	// RecordDecline stores and journals a decline decided before the
	// ledger was asked for funds; when the key already holds an answer it
	// returns that answer instead.
	RecordDecline(ctx context.Context, partnerID, key string, amount int64, reason Reason, meta string) (PriorAnswer, error)
	// RecordPIN counts a wrong PIN (locking with reason 6 at MaxPINTries) or
	// resets the count after a correct one; it returns the lock in force.
	// version is the card's version as read (0: any); a card changed since
	// fails with ErrCardChanged and counts nothing. It returns the card's
	// version after.
	RecordPIN(ctx context.Context, partnerID, cardID string, correct bool, version int64, meta string) (LockReason, int64, error)
	// Balance returns the available amount of a user balance.
	Balance(ctx context.Context, partnerID, balanceID string) (int64, error)
	// CancelLate undoes what the answer stored under key moved and stores
	// reason instead, atomically; it returns the amount released.
	CancelLate(ctx context.Context, partnerID, key string, reason Reason, meta string) (int64, error)
}

// Programs reads a card's program (it may answer from a cache).
type Programs interface {
	Program(ctx context.Context, partnerID, programID string) (Program, error)
}

// PINChecker verifies a DE52 PIN block against a card's PIN verifier.
type PINChecker interface {
	VerifyPINBlock(block []byte, pan, verifier string) (bool, error)
}

// CVVChecker compares a CVV2 with a card's encrypted one.
type CVVChecker interface {
	CVVMatches(cvvEnc, cvv string) bool
}

// Limits are the issuer's per-transaction rules.
type Limits struct {
	// MaxAmount declines larger purchases and cash withdrawals with
	// EXCEEDS_AMOUNT_LIMIT (0: no limit).
	MaxAmount int64
	// MaxCashAmount is the limit for cash (0: MaxAmount).
	MaxCashAmount int64
	// AllowPartial approves what the user has when it is less than asked
	// (APPROVED_PARTIAL) for purchases.
	AllowPartial bool
}

// Velocity counts a card's authorizations in a time window; the engine
// declines with EXCEEDS_FREQUENCY_LIMIT above the limit.
type Velocity interface {
	Count(ctx context.Context, partnerID, cardID string) (int64, error)
}

// Engine decides authorizations. Checks run in this order (docs/authz.md):
// format -> card known and not removed -> lock reason -> expiry (DE14) ->
// physical card activated -> PIN (when DE52 is present) -> CVV2 (when DE48
// carries one) -> currency -> limits -> funds (one atomic reservation in
// the ledger).
type Engine struct {
	Ledger   Ledger
	PIN      PINChecker
	CVV      CVVChecker
	Limits   Limits
	Velocity Velocity // optional
	// Locks serves file updates (UpdateFile); without it they are
	// answered INVALID_TRANSACTION.
	Locks CardLocks
	// MaxPerWindow is the velocity limit (0: none).
	MaxPerWindow int64
	// Programs and Decider, both set, let a program's backend take part
	// in its authorizations (Program.RemoteURL; docs/decisioning.md).
	Programs Programs
	Decider  Decider
	Logger   *slog.Logger
	Now      func() time.Time
}

// Authorize decides one message. It never panics on bad input and honours
// ctx: when the ledger cannot answer in time the decision is
// ISSUER_UNAVAILABLE.
func (e *Engine) Authorize(ctx context.Context, req *Request) Decision {
	d, err := e.decide(ctx, req)
	if err != nil {
		d.Reason = ReasonSystemError
		if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || ctx.Err() != nil {
			d.Reason = ReasonIssuerUnavailable
		}
		e.logger().Warn("authorization failed", "kind", req.Kind.String(), "reason", d.Reason, "err", err)
	}
	if !d.Reason.Approved() {
		d.ApprovalCode = ""
	}
	return d
}

// Abandon undoes an approval whose answer never reached the network: the
// listener answered ISSUER_UNAVAILABLE when the deadline passed, and the
// decision came after. The hold is released (or the posting given back) and
// the stored answer becomes ISSUER_UNAVAILABLE, so a retransmission gets
// what the network was told. Advices and reversals are not undone: the
// network repeats those until it gets their answer.
func (e *Engine) Abandon(ctx context.Context, req *Request, d Decision) {
	if !d.Approved() || d.PartnerID == "" || (req.Kind != KindAuthorization && req.Kind != KindFinancial) {
		return
	}
	if req.TxnType == TxnBalanceInquiry {
		return
	}
	released, err := e.Ledger.CancelLate(ctx, d.PartnerID, transactionKey(req, d.CardID), ReasonIssuerUnavailable, journalMeta(req, CardInfo{ID: d.CardID}))
	if err != nil {
		e.logger().Error("undoing a late approval failed; the hold waits for expiry", "hold", d.HoldID, "err", err)
		return
	}
	e.logger().Warn("late approval undone", "hold", d.HoldID, "released", released)
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Validate checks what the wire layer cannot: known transaction type,
// sane amount and currency. It returns the decline reason or "".
func Validate(req *Request) Reason {
	if len(req.PAN) < 12 || len(req.PAN) > 19 || !digits(req.PAN) {
		return ReasonFormatError
	}
	switch req.TxnType {
	case TxnPurchase, TxnCash, TxnRefund, TxnBalanceInquiry:
	default:
		return ReasonInvalidTransaction
	}
	if req.Amount < 0 || req.BillingAmount < 0 {
		return ReasonInvalidAmount
	}
	if req.Currency != "" && (len(req.Currency) != 3 || !digits(req.Currency)) {
		return ReasonFormatError
	}
	if req.TxnType != TxnBalanceInquiry && req.Amount == 0 && !req.Kind.IsReversal() {
		return ReasonInvalidAmount
	}
	return ""
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// decide decides on the card as FindCard returns it; when the card turns
// out to have changed (or a decline was decided on a cached card), it
// decides once more on a fresh read.
func (e *Engine) decide(ctx context.Context, req *Request) (Decision, error) {
	if r := Validate(req); r != "" {
		return Decision{Reason: r}, nil
	}
	d, err := e.decideOnce(ctx, req, true)
	if errors.Is(err, ErrCardChanged) {
		e.Ledger.ForgetCard(req.PAN)
		d, err = e.decideOnce(ctx, req, false)
	}
	return d, err
}

// decideOnce is one decision. With retry, a decline that a stale cached
// card could explain returns ErrCardChanged instead, before anything is
// recorded.
func (e *Engine) decideOnce(ctx context.Context, req *Request, retry bool) (Decision, error) {
	card, err := e.Ledger.FindCard(ctx, req.PAN)
	if errors.Is(err, ErrCardNotFound) {
		return Decision{Reason: ReasonUnknownCard}, nil
	}
	if err != nil {
		return Decision{}, fmt.Errorf("finding card: %w", err)
	}
	base := Decision{CardID: card.ID, PartnerID: card.PartnerID}
	meta := journalMeta(req, card)

	if req.Kind.IsReversal() {
		return e.reverse(ctx, req, card, base, meta)
	}
	if req.Kind.IsAdvice() {
		return e.advise(ctx, req, card, base, meta)
	}

	key := transactionKey(req, card.ID)
	if req.Repeat {
		// A retransmission gets the original answer, even when the card
		// changed since; nothing is counted twice (PIN tries included).
		if prior, ok, err := e.Ledger.Prior(ctx, card.PartnerID, key); err != nil {
			return Decision{}, fmt.Errorf("reading prior answer: %w", err)
		} else if ok {
			return e.fromPrior(base, prior, card), nil
		}
	}

	amount := req.Amount
	reason := CheckCard(card, req.Expiry, e.now())
	stale := retry && card.Cached
	if reason != "" && stale {
		return Decision{}, ErrCardChanged
	}
	if reason == "" && stale && !e.credentialsMatch(req, card) {
		// A PIN or CVV2 changed a moment ago must not count a wrong try.
		return Decision{}, ErrCardChanged
	}
	if reason == "" && req.PINBlock != "" {
		reason, card.Version, err = e.checkPIN(ctx, req, card, meta)
		if err != nil {
			return Decision{}, err
		}
	}
	if reason == "" && req.CVV2 != "" && (e.CVV == nil || !e.CVV.CVVMatches(card.CVVEnc, req.CVV2)) {
		reason = ReasonIncorrectCVV2
	}
	if reason == "" {
		amount, reason = e.checkTransaction(ctx, req, card)
	}
	if reason != "" {
		prior, err := e.Ledger.RecordDecline(ctx, card.PartnerID, key, amount, reason, meta)
		if errors.Is(err, ErrMismatch) {
			return withReason(base, ReasonFormatError), nil
		}
		if err != nil {
			return Decision{}, fmt.Errorf("recording decline: %w", err)
		}
		return e.fromPrior(base, prior, card), nil
	}

	switch req.TxnType {
	case TxnBalanceInquiry:
		avail, err := e.Ledger.Balance(ctx, card.PartnerID, card.BalanceID)
		if err != nil {
			return Decision{}, fmt.Errorf("reading balance: %w", err)
		}
		return e.withBalance(withReason(base, ReasonApproved), avail, card, newApprovalCode()), nil
	case TxnRefund:
		res, err := e.Ledger.Refund(ctx, e.funds(req, card, amount, key, meta))
		if err != nil {
			return e.fundsError(base, err)
		}
		return e.fromFunds(base, res, card), nil
	}
	f := e.funds(req, card, amount, key, meta)
	f.Capture = req.Kind == KindFinancial
	f.AllowPartial = e.Limits.AllowPartial && req.TxnType == TxnPurchase
	if declined, d, err := e.askPartner(ctx, req, card, base, amount, key, &f); err != nil || declined {
		return d, err
	}
	res, err := e.Ledger.Reserve(ctx, f)
	if err != nil {
		return e.fundsError(base, err)
	}
	return e.fromFunds(base, res, card), nil
}

// CheckCard runs the card profile checks in the documented order and
// returns the first decline reason ("" when every check passed). The
// ledger's reservation script checks the card again atomically by the same
// rule, bar the expiry (removed, locked, not activated); a ledger test runs
// both over every status, lock reason and expiry and fails when they differ.
func CheckCard(card CardInfo, de14 string, now time.Time) Reason {
	if card.Status == StatusRemoved {
		return ReasonCardRemoved
	}
	if card.Lock != LockNone {
		return card.Lock.DeclineReason()
	}
	if de14 != "" && de14 != card.Expiry {
		return ReasonWrongExpiry
	}
	if expired(card.Expiry, now) {
		return ReasonExpiredCard
	}
	if card.Status != StatusActive {
		return ReasonCardNotActivated
	}
	return ""
}

// checkTransaction runs the checks after the PIN: currency, what the card
// type permits, amount and frequency limits. It returns the amount in the
// card's currency and the first decline reason.
func (e *Engine) checkTransaction(ctx context.Context, req *Request, card CardInfo) (int64, Reason) {
	amount, reason := amountInCardCurrency(req, card.Currency)
	if reason != "" {
		return req.Amount, reason
	}
	if req.TxnType == TxnCash && card.Type == CardVirtual {
		return amount, ReasonRestrictedCard
	}
	limit := e.Limits.MaxAmount
	if req.TxnType == TxnCash && e.Limits.MaxCashAmount > 0 {
		limit = e.Limits.MaxCashAmount
	}
	if limit > 0 && amount > limit && req.TxnType != TxnRefund {
		return amount, ReasonExceedsAmountLimit
	}
	if e.Velocity != nil && e.MaxPerWindow > 0 && req.TxnType != TxnBalanceInquiry {
		n, err := e.Velocity.Count(ctx, card.PartnerID, card.ID)
		if err == nil && n > e.MaxPerWindow {
			return amount, ReasonExceedsFrequencyLimit
		}
	}
	return amount, ""
}

// credentialsMatch reports whether the request's PIN block and CVV2, when
// present, match the card as read (without recording anything).
func (e *Engine) credentialsMatch(req *Request, card CardInfo) bool {
	if req.PINBlock != "" {
		block, err := hex.DecodeString(req.PINBlock)
		if err != nil || len(block) != 8 {
			return true // a format error, whatever the card
		}
		if card.PINVerifier == "" || e.PIN == nil {
			return false
		}
		if ok, _ := e.PIN.VerifyPINBlock(block, req.PAN, card.PINVerifier); !ok {
			return false
		}
	}
	if req.CVV2 != "" && (e.CVV == nil || !e.CVV.CVVMatches(card.CVVEnc, req.CVV2)) {
		return false
	}
	return true
}

// checkPIN verifies the PIN block and records the result when it changes
// the card (a wrong PIN, or a right one after wrong ones). It returns the
// card's version after.
func (e *Engine) checkPIN(ctx context.Context, req *Request, card CardInfo, meta string) (Reason, int64, error) {
	block, err := hex.DecodeString(req.PINBlock)
	if err != nil || len(block) != 8 {
		return ReasonFormatError, card.Version, nil
	}
	ok := false
	if card.PINVerifier != "" && e.PIN != nil {
		ok, _ = e.PIN.VerifyPINBlock(block, req.PAN, card.PINVerifier)
	}
	if ok && card.PINTries == 0 {
		return "", card.Version, nil
	}
	_, after, err := e.Ledger.RecordPIN(ctx, card.PartnerID, card.ID, ok, card.Version, meta)
	if err != nil {
		return "", card.Version, fmt.Errorf("recording PIN check: %w", err)
	}
	if !ok {
		return ReasonIncorrectPIN, after, nil
	}
	return "", after, nil
}

// reverse handles 0400/0420: find the original hold through DE90 (or RRN +
// PAN), release all of it or down to the DE95 replacement amount, once.
func (e *Engine) reverse(ctx context.Context, req *Request, card CardInfo, base Decision, meta string) (Decision, error) {
	holdID, err := e.Ledger.FindHold(ctx, card.PartnerID, originalKey(req, card.ID), reference(req, card))
	if errors.Is(err, ErrHoldNotFound) {
		return withReason(base, ReasonOriginalNotFound), nil
	}
	if err != nil {
		return Decision{}, fmt.Errorf("finding original: %w", err)
	}
	var amount int64 // 0: everything
	if req.ReplacementAmount != nil {
		current, err := e.Ledger.HoldAmount(ctx, card.PartnerID, holdID)
		if err != nil && !errors.Is(err, ErrHoldClosed) {
			return Decision{}, fmt.Errorf("reading original: %w", err)
		}
		amount = current - *req.ReplacementAmount
		if amount <= 0 {
			// Nothing to give back: the original already stands at or
			// below the replacement amount.
			d := withReason(base, ReasonReversalAccepted)
			return d, nil
		}
	}
	rel, err := e.Ledger.Void(ctx, card.PartnerID, holdID, amount, "rev|"+transactionKey(req, card.ID), meta)
	switch {
	case errors.Is(err, ErrHoldClosed):
		// Already released by another reversal or expiry: accepted, nothing moves.
		return withReason(base, ReasonReversalAccepted), nil
	case errors.Is(err, ErrMismatch):
		return withReason(base, ReasonFormatError), nil
	case err != nil:
		return Decision{}, fmt.Errorf("reversing: %w", err)
	}
	d := withReason(base, ReasonReversalAccepted)
	d.Amount = rel.Amount
	d.HoldID = holdID
	return e.withBalance(d, rel.Available, card, ""), nil
}

// advise handles 0120/0220: complete the original hold found through DE90
// or, without one, post what the network approved in stand-in. Advices are
// never declined for funds.
func (e *Engine) advise(ctx context.Context, req *Request, card CardInfo, base Decision, meta string) (Decision, error) {
	amount, reason := amountInCardCurrency(req, card.Currency)
	if reason != "" {
		return withReason(base, reason), nil
	}
	key := "adv|" + transactionKey(req, card.ID)
	if req.Original != nil {
		holdID, err := e.Ledger.FindHold(ctx, card.PartnerID, originalKey(req, card.ID), reference(req, card))
		switch {
		case err == nil:
			rel, err := e.Ledger.Capture(ctx, card.PartnerID, holdID, amount, key, meta)
			if errors.Is(err, ErrHoldClosed) {
				return withReason(base, ReasonAdviceAccepted), nil
			}
			if errors.Is(err, ErrMismatch) {
				return withReason(base, ReasonFormatError), nil
			}
			if err != nil {
				return Decision{}, fmt.Errorf("completing hold: %w", err)
			}
			d := withReason(base, ReasonAdviceAccepted)
			d.Amount, d.HoldID = rel.Amount, holdID
			return e.withBalance(d, rel.Available, card, ""), nil
		case !errors.Is(err, ErrHoldNotFound):
			return Decision{}, fmt.Errorf("finding original: %w", err)
		}
	}
	f := e.funds(req, card, amount, key, meta)
	var res FundsResult
	var err error
	if req.TxnType == TxnRefund {
		res, err = e.Ledger.Refund(ctx, f)
	} else {
		res, err = e.Ledger.ForcePost(ctx, f)
	}
	if err != nil {
		return e.fundsError(base, err)
	}
	d := e.fromFunds(base, res, card)
	d.Reason = ReasonAdviceAccepted
	return d, nil
}

func (e *Engine) funds(req *Request, card CardInfo, amount int64, key, meta string) Funds {
	return Funds{
		PartnerID: card.PartnerID, BalanceID: card.BalanceID, CardID: card.ID, Amount: amount,
		IdempotencyKey: key, ApprovalCode: newApprovalCode(), TxnType: req.TxnType,
		Reference: reference(req, card), Meta: meta, CardVersion: card.Version,
		ProgramID: card.ProgramID, Facts: FactsOf(req, amount),
	}
}

// transactionKey is the idempotency key of a message: the transaction
// identity of iso/README.md (acquirer, STAN, DE7, RRN) on the card the PAN
// found, so that two cards can never share an answer by a coincidence of
// STANs.
func transactionKey(req *Request, cardID string) string {
	return req.TransactionKey() + "|" + cardID
}

// originalKey is transactionKey of the original a reversal or advice names.
func originalKey(req *Request, cardID string) string {
	if req.Original == nil {
		return ""
	}
	return req.OriginalKey() + "|" + cardID
}

// reference is the second way to find a hold: the RRN (DE37) on the card
// the PAN (DE2) points at: the fallback of reversals (iso/README.md).
func reference(req *Request, card CardInfo) string {
	if req.RRN == "" {
		return ""
	}
	return req.RRN + "|" + card.ID
}

func (e *Engine) fundsError(base Decision, err error) (Decision, error) {
	if errors.Is(err, ErrMismatch) {
		return withReason(base, ReasonFormatError), nil
	}
	if errors.Is(err, ErrBalanceLimit) {
		// A refund that would take the balance past what an answer can
		// carry: nothing changed.
		return withReason(base, ReasonExceedsAmountLimit), nil
	}
	return Decision{}, fmt.Errorf("moving funds: %w", err)
}

func (e *Engine) fromFunds(base Decision, res FundsResult, card CardInfo) Decision {
	d := withReason(base, res.Reason)
	d.HoldID = res.HoldID
	d.Amount = res.Approved
	if !d.Reason.Approved() {
		return d
	}
	return e.withBalance(d, res.Available, card, res.ApprovalCode)
}

func (e *Engine) fromPrior(base Decision, p PriorAnswer, card CardInfo) Decision {
	return e.fromFunds(base, FundsResult{Reason: p.Reason, HoldID: p.HoldID, Approved: p.Approved, Available: p.Available, ApprovalCode: p.ApprovalCode}, card)
}

func (e *Engine) withBalance(d Decision, available int64, card CardInfo, approval string) Decision {
	d.Available, d.HasAvailable = available, true
	d.Currency = NumericCurrency(card.Currency)
	if approval != "" {
		d.ApprovalCode = approval
	}
	return d
}

func withReason(d Decision, r Reason) Decision {
	d.Reason = r
	return d
}

// amountInCardCurrency picks the amount the card's balance is charged:
// DE4 when DE49 is the balance's currency, else DE6 when DE51 is; otherwise
// the currencies do not match.
func amountInCardCurrency(req *Request, alpha string) (int64, Reason) {
	num := NumericCurrency(alpha)
	switch {
	case req.BillingCurrency != "" && req.BillingCurrency == num:
		return req.BillingAmount, ""
	case req.Currency == num || req.Currency == "":
		return req.Amount, ""
	}
	return req.Amount, ReasonCurrencyMismatch
}

// expired reports whether a YYMM expiry lies before the month of now.
func expired(yymm string, now time.Time) bool {
	if len(yymm) != 4 || !digits(yymm) {
		return true
	}
	y := 2000 + int(yymm[0]-'0')*10 + int(yymm[1]-'0')
	m := int(yymm[2]-'0')*10 + int(yymm[3]-'0')
	ny, nm := now.Year(), int(now.Month())
	return y < ny || (y == ny && m < nm)
}

// newApprovalCode returns a 6-character approval code (DE38).
func newApprovalCode() string {
	const alphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// journalContext is the journal's context of a decision: no PAN, no PIN.
type journalContext struct {
	MTI      string `json:"mti"`
	Card     string `json:"card"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	STAN     string `json:"stan"`
	RRN      string `json:"rrn"`
	Acquirer string `json:"acquirer"`
	Terminal string `json:"terminal"`
	Merchant string `json:"merchant"`
	MCC      string `json:"mcc"`
	Txn      string `json:"txn"`
	// MerchantName is DE43 (name, city, country), for transaction lists.
	MerchantName string `json:"merchant_name,omitempty"`
	// POS is DE22 and Country the merchant's country as the controls
	// saw it (DE43, else DE19): what a replay of controls needs.
	POS     string `json:"pos,omitempty"`
	Country string `json:"country,omitempty"`
	// DecidedBy is who decided when a program's backend took part
	// (partner, stand_in); absent: Antaca alone.
	DecidedBy string `json:"decided_by,omitempty"`
	// PartnerReason is the partner's own reason for a decline.
	PartnerReason string `json:"partner_reason,omitempty"`
}

// journalMeta encodes the context once per request (a struct, not a map:
// it is on the authorization path).
func journalMeta(req *Request, card CardInfo) string {
	return journalMetaBy(req, card, "", "")
}

func journalMetaBy(req *Request, card CardInfo, decidedBy, partnerReason string) string {
	b, _ := json.Marshal(journalContext{
		MTI: req.MTI, Card: card.ID, Amount: req.Amount, Currency: req.Currency, STAN: req.STAN, RRN: req.RRN,
		Acquirer: req.AcquirerID, Terminal: req.TerminalID, Merchant: req.MerchantID, MCC: req.MCC, Txn: req.TxnType,
		MerchantName: req.MerchantName, DecidedBy: decidedBy, PartnerReason: partnerReason,
		POS: req.POSEntryMode, Country: CountryOf(req),
	})
	return string(b)
}

// currencies maps alpha ISO 4217 codes to numeric ones for the currencies
// programs use (NumericCurrency, AlphaCurrency, KnownCurrency).
var currencies = map[string]string{
	"EUR": "978", "USD": "840", "GBP": "826", "PLN": "985", "CHF": "756", "SEK": "752", "NOK": "578",
	"DKK": "208", "CZK": "203", "HUF": "348", "RON": "946", "BGN": "975", "JPY": "392", "CAD": "124",
	"AUD": "036", "NZD": "554", "SGD": "702", "HKD": "344", "UAH": "980", "TRY": "949", "ILS": "376",
	"AED": "784", "ZAR": "710", "MXN": "484", "BRL": "986", "INR": "356", "CNY": "156",
}

// NumericCurrency returns the numeric code of an alpha ISO 4217 code ("" when unknown).
func NumericCurrency(alpha string) string { return currencies[strings.ToUpper(alpha)] }

// AlphaCurrency returns the alpha code of a numeric one ("" when unknown).
func AlphaCurrency(numeric string) string {
	for a, n := range currencies {
		if n == numeric {
			return a
		}
	}
	return ""
}

// KnownCurrency reports whether an alpha code is supported.
func KnownCurrency(alpha string) bool { return NumericCurrency(alpha) != "" }
