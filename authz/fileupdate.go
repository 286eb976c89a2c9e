package authz

import (
	"context"
	"errors"
	"fmt"
)

// FileAction is what a card network asks of the issuer's negative card
// file (ISO 8583 file update, 0302): adding a card locks it, deleting it
// unlocks it.
type FileAction string

const (
	FileAdd    FileAction = "ADD"
	FileDelete FileAction = "DELETE"
)

// FileUpdate is one request of a card network to lock or unlock a card
// ("lock outside": blocking a card on request of Mastercard, Visa or an
// acquirer).
type FileUpdate struct {
	Action FileAction
	PAN    string
	// Lock is the lock reason of an add (1-8).
	Lock LockReason
	// Source is who asks (NETWORK), Reference its own id for the request;
	// both are recorded on the card with the lock.
	Source, Reference string
	MTI, STAN         string // for logs
}

// FileUpdateResult is the answer to a FileUpdate: Reason ReasonApproved
// when the file now says what was asked, and the card's lock reason in
// force after (0 when not locked).
type FileUpdateResult struct {
	Reason    Reason
	Lock      LockReason
	CardID    string
	PartnerID string
}

// CardLocks locks and unlocks cards for file updates; package ledger
// implements it. Both return the lock reason in force after. LockCard
// fails with ErrLockIrreversible when the card has an irreversible lock
// already; UnlockCard with ErrLockIrreversible for reasons 1, 2, 5, 8.
// Removed cards fail with ErrCardNotFound.
type CardLocks interface {
	LockCard(ctx context.Context, partnerID, cardID string, reason LockReason, source, reference string) (LockReason, error)
	UnlockCard(ctx context.Context, partnerID, cardID string) (LockReason, error)
}

// UpdateFile applies a network's file update to the card of a PAN:
//
//   - add: the card is locked with the reason (another reversible lock is
//     replaced); a card already locked irreversibly keeps its reason and
//     the answer is approved with that reason: the card is on the file;
//   - delete: a reversible lock is removed (approved, also when the card
//     was not locked); an irreversible one (1, 2, 5, 8) stays, answered
//     NOT_PERMITTED with the reason in force;
//   - an unknown or removed card is UNKNOWN_CARD / CARD_REMOVED; a store
//     that cannot answer, ISSUER_UNAVAILABLE.
//
// The card is read fresh (not from a cache), and the cache forgets it
// after a change. A digital-first copy shares its virtual card's PAN, so
// the lock is the virtual card's and holds for both.
func (e *Engine) UpdateFile(ctx context.Context, u *FileUpdate) FileUpdateResult {
	res, err := e.updateFile(ctx, u)
	if err != nil {
		res.Reason = ReasonSystemError
		if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || ctx.Err() != nil {
			res.Reason = ReasonIssuerUnavailable
		}
		e.logger().Warn("file update failed", "action", u.Action, "reason", res.Reason, "err", err)
	}
	return res
}

func (e *Engine) updateFile(ctx context.Context, u *FileUpdate) (FileUpdateResult, error) {
	if len(u.PAN) < 12 || len(u.PAN) > 19 || !digits(u.PAN) {
		return FileUpdateResult{Reason: ReasonFormatError}, nil
	}
	if e.Locks == nil {
		return FileUpdateResult{Reason: ReasonInvalidTransaction}, nil
	}
	switch u.Action {
	case FileAdd:
		if !u.Lock.Valid() {
			return FileUpdateResult{Reason: ReasonFormatError}, nil
		}
	case FileDelete:
	default:
		return FileUpdateResult{Reason: ReasonInvalidTransaction}, nil
	}
	e.Ledger.ForgetCard(u.PAN)
	defer e.Ledger.ForgetCard(u.PAN)
	card, err := e.Ledger.FindCard(ctx, u.PAN)
	if errors.Is(err, ErrCardNotFound) {
		return FileUpdateResult{Reason: ReasonUnknownCard}, nil
	}
	if err != nil {
		return FileUpdateResult{}, fmt.Errorf("finding card: %w", err)
	}
	res := FileUpdateResult{CardID: card.ID, PartnerID: card.PartnerID, Lock: card.Lock}
	if card.Status == StatusRemoved {
		res.Reason = ReasonCardRemoved
		return res, nil
	}
	if u.Action == FileAdd {
		if card.Lock.Irreversible() {
			res.Reason = ReasonApproved // on the file already, for good
			return res, nil
		}
		lock, err := e.Locks.LockCard(ctx, card.PartnerID, card.ID, u.Lock, u.Source, u.Reference)
		if errors.Is(err, ErrLockIrreversible) {
			// Locked for good between the read and the script.
			return e.lockInForce(ctx, u, res)
		}
		if errors.Is(err, ErrCardNotFound) {
			res.Reason = ReasonCardRemoved // removed between the read and the script
			return res, nil
		}
		if err != nil {
			return res, fmt.Errorf("locking card: %w", err)
		}
		res.Reason, res.Lock = ReasonApproved, lock
		return res, nil
	}
	if card.Lock.Irreversible() {
		res.Reason = ReasonNotPermitted
		return res, nil
	}
	if card.Lock == LockNone {
		res.Reason = ReasonApproved
		return res, nil
	}
	lock, err := e.Locks.UnlockCard(ctx, card.PartnerID, card.ID)
	if errors.Is(err, ErrLockIrreversible) {
		res, err := e.lockInForce(ctx, u, res)
		res.Reason = ReasonNotPermitted
		return res, err
	}
	if errors.Is(err, ErrCardNotFound) {
		res.Reason = ReasonCardRemoved
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("unlocking card: %w", err)
	}
	res.Reason, res.Lock = ReasonApproved, lock
	return res, nil
}

// lockInForce answers approved with the card's lock as it is now.
func (e *Engine) lockInForce(ctx context.Context, u *FileUpdate, res FileUpdateResult) (FileUpdateResult, error) {
	e.Ledger.ForgetCard(u.PAN)
	card, err := e.Ledger.FindCard(ctx, u.PAN)
	if err != nil {
		return res, fmt.Errorf("reading card: %w", err)
	}
	res.Reason, res.Lock = ReasonApproved, card.Lock
	return res, nil
}
