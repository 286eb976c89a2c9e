package api

import (
	"net/http"
	"slices"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/issuing"
)

// Sources of a lock from outside: a card network (Mastercard, Visa) or an
// acquirer asks the issuer to block a card.
var externalLockSources = map[string]bool{"NETWORK": true, "ACQUIRER": true}

// POST /secure/customers/{customerId}/cards/{cardId}/external-lock and
// POST /admin/cards/{cardId}/external-lock {"reason": 1..8, "source":
// "NETWORK"|"ACQUIRER", "reference": "..."}: a lock asked for by an entity
// outside the program, recorded with its source and the requester's
// reference. A lock on a digital-first copy is a lock on its virtual card.
// Unlocking is the ordinary unlock (refused for 1, 2, 5, 8).
func (s *Server) externalLock(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		Reason    *int   `json:"reason"`
		Source    string `json:"source"`
		Reference string `json:"reference"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.Reason == nil || !authz.LockReason(*in.Reason).Valid() {
		return 0, nil, &Error{Status: http.StatusBadRequest, Code: "INVALID_LOCK_REASON", Field: "reason",
			Message: "reason must be an integer from 1 to 8 (the lock reasons)"}
	}
	if !externalLockSources[in.Source] {
		return 0, nil, invalid("source", "source must be NETWORK or ACQUIRER")
	}
	if err := checkText("reference", in.Reference, true, maxLockReference); err != nil {
		return 0, nil, err
	}
	v, err := s.cfg.Issuing.LockFrom(c.ctx, card.PartnerID, card.ID, authz.LockReason(*in.Reason), in.Source, in.Reference)
	if err != nil {
		return 0, nil, err
	}
	s.log.InfoContext(c.ctx, "card locked from outside", "card", card.ID, "partner", card.PartnerID,
		"reason", *in.Reason, "source", in.Source)
	return http.StatusOK, v, nil
}

// maxLockReference bounds the requester's reference of a lock from outside.
const maxLockReference = 64

// replacement is the answer to a card replacement.
type replacement struct {
	Card issuing.Card `json:"card"`
	// Replaced is the old card after the replacement.
	Replaced issuing.Card `json:"replaced"`
	// CardData is the new virtual card's full data (customer and partner
	// channels; the answer is JWE-encrypted). A plastic's data reaches its
	// holder on the plastic, and admins never see card data.
	CardData *issuing.FullData `json:"cardData,omitempty"`
}

// POST .../cards/{cardId}/replace (JWE) {"keep_old_until_activated": bool,
// "deliveryAddress": {...}}, both optional: a new card of the same type
// under the same balance; the old card is locked with reason 8 in the same
// step, or, for a physical card with keep_old_until_activated, when the new
// plastic is activated. A physical replacement goes to the bureau (at the
// address given, else the old card's). On the admin channel the roles that
// may order the card's type may replace it: Admin and Manager a virtual
// card, Employee too a physical one.
func (s *Server) replaceCard(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		KeepOld         bool             `json:"keep_old_until_activated"`
		DeliveryAddress *deliveryAddress `json:"deliveryAddress"`
	}
	if _, err := c.decodeOptional(&in); err != nil {
		return 0, nil, err
	}
	delivery, err := in.DeliveryAddress.optional("deliveryAddress")
	if err != nil {
		return 0, nil, err
	}
	if c.rt.ch == adminCh && card.Type == string(authz.CardVirtual) && !slices.Contains(managers, c.admin.Role) {
		return 0, nil, errForbidden // creating a virtual card is for Admin and Manager
	}
	if err := c.ownerVerified(card); err != nil {
		return 0, nil, err
	}
	r, err := s.cfg.Issuing.Replace(c.ctx, card.PartnerID, card.ID, in.KeepOld, delivery, lockSource(c.rt.ch))
	if err != nil {
		return 0, nil, err
	}
	if r.Card.Type == authz.CardPhysical {
		s.queueForBureau(c, r.Card.ID, card.PartnerID)
	}
	out := replacement{Card: r.Card, Replaced: r.Old}
	if r.Card.Type == authz.CardVirtual && c.rt.ch != adminCh {
		out.CardData = &r.Full
	}
	return http.StatusCreated, out, nil
}
