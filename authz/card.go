package authz

import (
	"errors"
	"fmt"
)

// CardType is one of the three kinds of card (docs/authz.md, "Cards and
// lock reasons").
type CardType string

const (
	CardVirtual      CardType = "VIRTUAL"
	CardPhysical     CardType = "PHYSICAL"
	CardDigitalFirst CardType = "DIGITAL_FIRST" // a blank plastic copy of a virtual card, same PAN
)

// Valid reports whether t is a known card type.
func (t CardType) Valid() bool {
	return t == CardVirtual || t == CardPhysical || t == CardDigitalFirst
}

// CanResetCVV: CVV reset is for virtual and digital-first cards only.
func (t CardType) CanResetCVV() bool { return t == CardVirtual || t == CardDigitalFirst }

// CanSetPIN: a PIN is for physical and digital-first cards only.
func (t CardType) CanSetPIN() bool { return t == CardPhysical || t == CardDigitalFirst }

// CardStatus is a card's life-cycle state. Locks are kept apart (LockReason)
// because a lock is orthogonal to the life cycle: an active card can be
// locked and unlocked without losing its activation.
type CardStatus string

const (
	// Physical cards: ordered -> personalised (by the bureau) -> linked
	// (connected with the user and balance, awaiting activation) -> active.
	StatusOrdered      CardStatus = "ORDERED"
	StatusPersonalised CardStatus = "PERSONALISED"
	StatusLinked       CardStatus = "LINKED"
	// Virtual and digital-first cards are created active.
	StatusActive CardStatus = "ACTIVE"
	// Removed is final: the card declines as unknown and cannot be restored.
	StatusRemoved CardStatus = "REMOVED"
)

// Valid reports whether s is a known status.
func (s CardStatus) Valid() bool {
	switch s {
	case StatusOrdered, StatusPersonalised, StatusLinked, StatusActive, StatusRemoved:
		return true
	}
	return false
}

// ErrInvalidTransition is returned when a card cannot move to the asked state.
var ErrInvalidTransition = errors.New("invalid card state transition")

// CheckTransition reports whether a card of type t may move from one status to another.
func CheckTransition(t CardType, from, to CardStatus) error {
	if from == StatusRemoved {
		return fmt.Errorf("%w: card is removed", ErrInvalidTransition)
	}
	if to == StatusRemoved {
		return nil
	}
	ok := false
	switch t {
	case CardPhysical:
		ok = (from == StatusOrdered && to == StatusPersonalised) ||
			(from == StatusPersonalised && to == StatusLinked) ||
			(from == StatusLinked && to == StatusActive)
	}
	if !ok {
		return fmt.Errorf("%w: %s card from %s to %s", ErrInvalidTransition, t, from, to)
	}
	return nil
}

// LockReason is the reason of a card lock, 1-8 (docs/authz.md, "Cards and
// lock reasons"); 0 means not locked.
type LockReason int

const (
	LockNone          LockReason = 0
	LockLost          LockReason = 1
	LockStolen        LockReason = 2
	LockPendingQuery  LockReason = 3
	LockConsolidation LockReason = 4
	LockInactive      LockReason = 5
	LockPINTries      LockReason = 6
	LockFraud         LockReason = 7
	LockReplaced      LockReason = 8
)

// Valid reports whether r is one of the eight lock reasons.
func (r LockReason) Valid() bool { return r >= LockLost && r <= LockReplaced }

// Irreversible reports whether a lock with this reason can never be removed
// (reasons 1, 2, 5 and 8). The ledger's scripts that lock, unlock, replace
// and activate cards apply the same set; a ledger test holds them to this
// one.
func (r LockReason) Irreversible() bool {
	return r == LockLost || r == LockStolen || r == LockInactive || r == LockReplaced
}

// DeclineReason is the decision reason an authorization on a card locked
// with r gets; package iso maps it to the action code of r's row in
// iso/README.md.
func (r LockReason) DeclineReason() Reason {
	switch r {
	case LockLost:
		return ReasonLockedLost
	case LockStolen:
		return ReasonLockedStolen
	case LockPendingQuery:
		return ReasonLockedPendingQuery
	case LockConsolidation:
		return ReasonLockedConsolidation
	case LockInactive:
		return ReasonLockedInactive
	case LockPINTries:
		return ReasonLockedPINTries
	case LockFraud:
		return ReasonLockedFraud
	case LockReplaced:
		return ReasonLockedReplaced
	}
	return ReasonDoNotHonour
}

func (r LockReason) String() string {
	switch r {
	case LockNone:
		return "none"
	case LockLost:
		return "card lost"
	case LockStolen:
		return "card stolen"
	case LockPendingQuery:
		return "pending query"
	case LockConsolidation:
		return "card consolidation"
	case LockInactive:
		return "card inactive"
	case LockPINTries:
		return "PIN tries exceeded"
	case LockFraud:
		return "suspected fraud"
	case LockReplaced:
		return "card replaced"
	}
	return fmt.Sprintf("lock(%d)", int(r))
}

// ErrLockIrreversible is returned when unlocking a card locked with 1, 2, 5 or 8.
var ErrLockIrreversible = errors.New("card lock is irreversible")

// CheckUnlock reports whether a card locked with r may be unlocked.
func CheckUnlock(r LockReason) error {
	if r.Irreversible() {
		return fmt.Errorf("%w: reason %d (%s)", ErrLockIrreversible, int(r), r)
	}
	return nil
}

// MaxPINTries is the number of consecutive wrong PINs after which the card is
// locked with reason 6 ("lock outside", by the network).
const MaxPINTries = 3
