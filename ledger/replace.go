package ledger

import (
	"context"

	"github.com/antaca/antaca/authz/issuing"
)

// Replacement is a new card replacing an old one (ReplaceCard); see
// issuing.Replacement.
type Replacement = issuing.Replacement

// ReplaceCard issues r.New and marks the old card replaced (locked with
// reason 8 unless r.KeepOld) in one atomic step. It returns the old card's
// lock reason in force after. Errors: ErrCardNotFound, ErrCardRemoved,
// ErrCardReplaced (replaced before), ErrInvalidTransition (a digital-first
// copy, or another type), ErrBalanceNotActive, ErrPANExists.
func (l *Ledger) ReplaceCard(ctx context.Context, partnerID string, r Replacement) (int, error) {
	keep := ""
	if r.KeepOld {
		keep = "1"
	}
	c := r.New
	n, err := l.run(ctx, "replace_card", partnerID, r.OldID, c.ID, c.Type, c.Status, c.PANEnc, c.PANHash, c.BIN,
		c.Last4, c.Expiry, c.CVVEnc, c.Delivery, c.DeliveryState, keep, r.Source).Int()
	if err != nil {
		return 0, mapScriptError("replacing card", err)
	}
	return n, l.index(ctx, partnerID, c.ID)
}

// ActivateCard activates a linked physical card. When the card replaces
// one that was kept working until now, that card is locked with reason 8
// (source recorded) in the same step; its id is returned ("" otherwise).
// ErrInvalidTransition when the card is not a linked physical card.
func (l *Ledger) ActivateCard(ctx context.Context, partnerID, id, source string) (string, error) {
	old, err := l.run(ctx, "activate_card", partnerID, id, source).Text()
	if err != nil {
		return "", mapScriptError("activating card", err)
	}
	return old, nil
}
