package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
)

// Reservation asks for an authorization hold (or, with Capture, a hold
// posted at once as a 0200 financial transaction does).
type Reservation struct {
	PartnerID string
	BalanceID string
	CardID    string // checked atomically: a locked or removed card declines
	Amount    int64
	// IdempotencyKey makes the reservation safe to repeat: the same key
	// returns the first answer; the same key with another amount fails with
	// ErrIdempotencyMismatch.
	IdempotencyKey string
	ApprovalCode   string
	TxnType        string
	Capture        bool
	// AllowPartial approves what the user has when it is less than asked.
	AllowPartial bool
	// Reference is a second key to find the hold by (RRN + PAN token).
	Reference string
	// Meta is kept in the journal entry (JSON, no card data).
	Meta string
	// CardVersion, when not 0, must be the card's version (v): else the
	// reservation fails with ErrCardChanged and changes nothing.
	CardVersion int64

	// ProgramID is the card's program, whose controls apply when the card
	// has none of its own ("": the partner's default program).
	ProgramID string
	// Location is the time zone of the program's day, week and month
	// windows (nil: UTC).
	Location *time.Location
	// Facts are what the spend controls look at (amount aside).
	MCC, Country, Channel string
	// Fund funds the user balance just in time, charged to the partner as
	// a reload: an amount, "shortfall" (what the balance lacks) or "".
	Fund string
	// Cap is the partner's partial approval: at most this much (0: none).
	Cap int64
}

// ReservationResult is the ledger's answer. Reason is an authz.Reason name:
// APPROVED, APPROVED_PARTIAL or a decline such as INSUFFICIENT_USER_FUNDS.
type ReservationResult struct {
	Reason       string
	HoldID       string
	Approved     int64
	Available    int64 // the user balance's available amount after
	ApprovalCode string
	Duplicate    bool // the answer was stored by an earlier identical request
	Partner      BalanceChange
}

// Reserve places a hold in one atomic script: idempotency, card guard,
// partner deposit (DEPOSIT model), user funds, hold record, journal entry.
// It is one round trip: holds are found through their idempotency key or
// reference, so they need no entry in the global id index.
func (l *Ledger) Reserve(ctx context.Context, r Reservation) (ReservationResult, error) {
	holdID := NewID("hld")
	capture, partial := "0", "0"
	if r.Capture {
		capture = "1"
	}
	if r.AllowPartial {
		partial = "1"
	}
	v, err := l.run(ctx, "reserve", r.PartnerID, r.BalanceID, r.CardID, r.Amount, r.IdempotencyKey, l.ttlMS(),
		holdID, r.ApprovalCode, r.TxnType, capture, partial, r.Meta, r.Reference, r.CardVersion,
		ProgramOfCard(r.PartnerID, r.ProgramID), authz.WindowSpec(l.now(), r.Location), r.MCC, r.Country, r.Channel,
		r.Fund, r.Cap).Result()
	if err != nil {
		return ReservationResult{}, mapScriptError("reserving funds", err)
	}
	s := toStrings(v)
	f := fields{what: "reserve reply"}
	res := ReservationResult{
		Reason: s[0], HoldID: s[1], Approved: f.int("approved", s[2]), Available: f.int("available", s[3]), ApprovalCode: s[4],
		Duplicate: s[5] == "1",
		Partner: BalanceChange{PartnerBalanceID: s[6], Before: f.int("partner before", s[7]), After: f.int("partner after", s[8]),
			LowThreshold: f.int("low_threshold", s[9])},
	}
	return res, f.err
}

// ForcePost posts an amount the network already approved (a stand-in
// advice) without a funds check, recording a captured hold.
func (l *Ledger) ForcePost(ctx context.Context, r Reservation) (ReservationResult, error) {
	holdID := NewID("hld")
	v, err := l.run(ctx, "force_post", r.PartnerID, r.BalanceID, r.CardID, r.Amount, r.IdempotencyKey, l.ttlMS(),
		holdID, r.ApprovalCode, r.TxnType, r.Meta, r.Reference).Result()
	if err != nil {
		return ReservationResult{}, mapScriptError("posting advice", err)
	}
	s := toStrings(v)
	f := fields{what: "force_post reply"}
	return ReservationResult{Reason: "ADVICE_ACCEPTED", HoldID: s[0], Approved: r.Amount, Available: f.int("available", s[1]), Duplicate: s[2] == "1", ApprovalCode: r.ApprovalCode,
		Partner: partnerChange(&f, s, 3)}, f.err
}

// Settlement is the result of a capture or a void.
type Settlement struct {
	Captured  int64
	Released  int64
	Available int64
	State     string
	Duplicate bool
	// Partner is the partner deposit's change (a capture above the hold
	// lowers it), empty for a duplicate and outside the DEPOSIT model.
	Partner BalanceChange
}

// Capture posts amount of an open hold (0: all of it) and releases the
// rest. The hold resolves once: ErrHoldClosed afterwards. With force the
// amount may exceed the hold (an advice the network already approved).
func (l *Ledger) Capture(ctx context.Context, partnerID, holdID string, amount int64, force bool, idemKey, meta string) (Settlement, error) {
	f := "0"
	if force {
		f = "1"
	}
	v, err := l.run(ctx, "capture", partnerID, holdID, amount, f, idemKey, l.ttlMS(), meta).Result()
	if err != nil {
		return Settlement{}, mapScriptError("capturing hold", err)
	}
	s := toStrings(v)
	d := fields{what: "capture reply"}
	return Settlement{Captured: d.int("captured", s[0]), Released: d.int("released", s[1]), Available: d.int("available", s[2]), State: "CAPTURED", Duplicate: s[3] == "1",
		Partner: partnerChange(&d, s, 4)}, d.err
}

// Void releases amount of an open hold (0: all that remains). With
// postedOK it also gives back what a financial transaction or a forced
// post already posted, or takes back a refund.
func (l *Ledger) Void(ctx context.Context, partnerID, holdID string, amount int64, postedOK bool, idemKey, meta string) (Settlement, error) {
	p := "0"
	if postedOK {
		p = "1"
	}
	v, err := l.run(ctx, "void", partnerID, holdID, amount, p, idemKey, l.ttlMS(), meta, "REVERSAL_ACCEPTED").Result()
	if err != nil {
		return Settlement{}, mapScriptError("voiding hold", err)
	}
	s := toStrings(v)
	f := fields{what: "void reply"}
	return Settlement{Released: f.int("released", s[0]), Available: f.int("available", s[1]), State: s[2], Duplicate: s[3] == "1"}, f.err
}

// Refund credits a user balance with money from outside.
func (l *Ledger) Refund(ctx context.Context, r Reservation) (ReservationResult, error) {
	holdID := NewID("hld")
	v, err := l.run(ctx, "refund", r.PartnerID, r.BalanceID, r.Amount, r.IdempotencyKey, l.ttlMS(), r.Meta,
		holdID, r.CardID, r.ApprovalCode, r.Reference).Result()
	if err != nil {
		return ReservationResult{}, mapScriptError("refunding", err)
	}
	s := toStrings(v)
	f := fields{what: "refund reply"}
	return ReservationResult{Reason: "APPROVED", Available: f.int("available", s[0]), Duplicate: s[1] == "1", HoldID: s[2], Approved: r.Amount, ApprovalCode: r.ApprovalCode}, f.err
}

// ExpireHolds releases a partner's open holds older than maxAge, at most
// limit of them, and returns how many it released.
func (l *Ledger) ExpireHolds(ctx context.Context, partnerID string, maxAge time.Duration, limit int) (int, error) {
	cutoff := l.now().Add(-maxAge).UnixMilli()
	n, err := l.run(ctx, "expire", partnerID, cutoff, limit, l.ttlMS()).Int()
	if err != nil {
		return 0, mapScriptError("expiring holds", err)
	}
	return n, nil
}

// Hold is a hold row.
type Hold struct {
	ID, PartnerID, BalanceID, CardID, PartnerBalanceID, Currency, State string
	IdempotencyKey, ApprovalCode, TxnType                               string
	Amount, Captured, Released                                          int64
	CreatedMS, ClosedMS                                                 int64
}

// Remaining is what the hold still keeps held.
func (h Hold) Remaining() int64 {
	if h.State != "OPEN" {
		return 0
	}
	return h.Amount - h.Captured - h.Released
}

// Hold reads a hold.
func (l *Ledger) Hold(ctx context.Context, partnerID, id string) (Hold, error) {
	m, err := l.row(ctx, partnerID, "holds", id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Hold{}, fmt.Errorf("reading hold %q: %w", id, ErrHoldNotFound)
		}
		return Hold{}, err
	}
	f := fields{what: "hold " + id}
	h := Hold{
		ID: id, PartnerID: partnerID, BalanceID: m["balance_id"], CardID: m["card_id"],
		PartnerBalanceID: m["partner_balance_id"], Currency: m["currency"], State: m["state"],
		IdempotencyKey: m["idem_key"], ApprovalCode: m["approval_code"], TxnType: m["txn_type"],
		Amount: f.int("amount", m["amount"]), Captured: f.int("captured", m["captured"]), Released: f.int("released", m["released"]),
		CreatedMS: f.int("created_ms", m["created_ms"]), ClosedMS: f.int("closed_ms", m["closed_ms"]),
	}
	return h, f.err
}

// StoredAnswer is what an idempotency key holds.
type StoredAnswer struct {
	Kind, Reason, HoldID, ApprovalCode string
	Amount, Approved, Available        int64
}

// Answer returns the answer stored under an idempotency key, if any.
func (l *Ledger) Answer(ctx context.Context, partnerID, key string) (StoredAnswer, bool, error) {
	m, err := l.rdb.HGetAll(ctx, l.keys.Idem(partnerID, key)).Result()
	if err != nil {
		return StoredAnswer{}, false, fmt.Errorf("reading stored answer: %w", err)
	}
	if len(m) == 0 {
		return StoredAnswer{}, false, nil
	}
	f := fields{what: "stored answer"}
	a := StoredAnswer{
		Kind: m["kind"], Reason: m["reason"], HoldID: m["hold"], ApprovalCode: m["approval"],
		Amount: f.int("amount", m["amount"]), Approved: f.int("approved", m["approved"]), Available: f.int("available", m["available"]),
	}
	if f.err != nil {
		return StoredAnswer{}, false, f.err
	}
	return a, true, nil
}

// HoldByReference finds a hold by its second key (RRN + PAN token).
func (l *Ledger) HoldByReference(ctx context.Context, partnerID, ref string) (string, error) {
	id, err := l.rdb.Get(ctx, l.keys.Reference(partnerID, ref)).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("finding hold by reference: %w", ErrHoldNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("finding hold by reference: %w", err)
	}
	return id, nil
}

// OpenHolds lists a partner's open hold ids.
func (l *Ledger) OpenHolds(ctx context.Context, partnerID string) ([]string, error) {
	ids, err := l.rdb.ZRange(ctx, l.keys.OpenHolds(partnerID), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("listing open holds: %w", err)
	}
	return ids, nil
}

// partnerChange reads the partner balance change a script returns from
// index i on (id, before, after, threshold); a duplicate's answer has none.
func partnerChange(f *fields, s []string, i int) BalanceChange {
	if len(s) < i+4 {
		return BalanceChange{}
	}
	return BalanceChange{PartnerBalanceID: s[i], Before: f.int("partner before", s[i+1]), After: f.int("partner after", s[i+2]),
		LowThreshold: f.int("low threshold", s[i+3])}
}
