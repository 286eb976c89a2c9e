package ledger

import (
	"context"
	"fmt"
	"strings"

	"github.com/antaca/antaca/authz/issuing"
)

// Card is a card row (the card record package issuing declares, which
// the ledger stores).
type Card = issuing.CardRecord

func cardFromMap(partnerID string, m map[string]string) (Card, error) {
	f := fields{what: "card " + m["id"]}
	c := Card{
		ID: m["id"], PartnerID: partnerID, CustomerID: m["customer_id"], BalanceID: m["balance_id"],
		Type: m["type"], Status: m["status"], LockReason: int(f.int("lock_reason", m["lock_reason"])), LockSource: m["lock_source"],
		PANEnc: m["pan_enc"], PANHash: m["pan_hash"], BIN: m["bin"], Last4: m["last4"], Expiry: m["expiry"],
		CVVEnc: m["cvv_enc"], PINVerifier: m["pin_verifier"], PINTries: int(f.int("pin_tries", m["pin_tries"])),
		CopyOf: m["copy_of"], Delivery: m["delivery"], BalanceCurrency: m["balance_currency"],
		DeliveryState: m["delivery_state"], LockRef: m["lock_ref"], Replaces: m["replaces"], ReplacedBy: m["replaced_by"],
		Version: f.int("v", m["v"]), ProgramID: m["program_id"], Controls: m["controls"],
	}
	return c, f.err
}

// CreateCard stores a new card under a customer's balance. A card with
// CopyOf set (digital first) shares the original's PAN and is not indexed;
// otherwise the PAN token must be new (ErrPANExists).
func (l *Ledger) CreateCard(ctx context.Context, c Card) error {
	err := l.run(ctx, "create_card", c.PartnerID, c.ID, c.CustomerID, c.BalanceID, c.Type, c.Status,
		c.PANEnc, c.PANHash, c.BIN, c.Last4, c.Expiry, c.CVVEnc, c.CopyOf, c.Delivery, c.DeliveryState, c.ProgramID).Err()
	if err != nil {
		return mapScriptError("creating card", err)
	}
	return l.index(ctx, c.PartnerID, c.ID)
}

// Card reads a card.
func (l *Ledger) Card(ctx context.Context, partnerID, id string) (Card, error) {
	m, err := l.rdb.HGetAll(ctx, l.keys.Row(partnerID, "cards", id)).Result()
	if err != nil {
		return Card{}, fmt.Errorf("reading card: %w", err)
	}
	if len(m) == 0 {
		return Card{}, fmt.Errorf("reading card: %w", ErrCardNotFound)
	}
	return cardFromMap(partnerID, m)
}

// CardByPANHash finds the card a PAN lookup token belongs to, with its
// balance's currency, in one round trip.
func (l *Ledger) CardByPANHash(ctx context.Context, partnerID, panHash string) (Card, error) {
	v, err := l.runWith(ctx, readOnly, "card_by_pan", partnerID, panHash).Result()
	if err != nil {
		return Card{}, mapScriptError("finding card", err)
	}
	s := toStrings(v)
	if len(s) == 0 {
		return Card{}, fmt.Errorf("finding card: %w", ErrCardNotFound)
	}
	m := make(map[string]string, len(s)/2)
	for i := 0; i+1 < len(s); i += 2 {
		m[s[i]] = s[i+1]
	}
	return cardFromMap(partnerID, m)
}

// CardUpdate moves a card through its life cycle and/or sets columns
// (issuing.CardUpdate).
type CardUpdate = issuing.CardUpdate

// UpdateCard applies u atomically and returns the previous status.
func (l *Ledger) UpdateCard(ctx context.Context, partnerID, id string, u CardUpdate) (string, error) {
	args := []any{id, strings.Join(u.From, ","), u.To, u.Event}
	for k, v := range u.Set {
		args = append(args, k, v)
	}
	prev, err := l.run(ctx, "update_card", partnerID, args...).Text()
	if err != nil {
		return "", mapScriptError("updating card", err)
	}
	return prev, nil
}

// LockCard locks a card with reason 1-8; source says who (CUSTOMER,
// PARTNER, ADMIN, NETWORK, ACQUIRER). An irreversible lock stays as it is
// (ErrLockIrreversible).
func (l *Ledger) LockCard(ctx context.Context, partnerID, id string, reason int, source string) error {
	_, err := l.LockCardFrom(ctx, partnerID, id, reason, source, "")
	return err
}

// LockCardFrom is LockCard recording the requester's reference of a lock
// from outside (a network's or an acquirer's id for its request). It
// returns the lock reason in force.
func (l *Ledger) LockCardFrom(ctx context.Context, partnerID, id string, reason int, source, reference string) (int, error) {
	if reason < 1 || reason > 8 {
		return 0, fmt.Errorf("locking card: reason %d not in 1-8", reason)
	}
	n, err := l.run(ctx, "lock_card", partnerID, id, reason, source, reference).Int()
	if err != nil {
		return 0, mapScriptError("locking card", err)
	}
	return n, nil
}

// UnlockCard removes a reversible lock; ErrLockIrreversible for 1, 2, 5, 8.
func (l *Ledger) UnlockCard(ctx context.Context, partnerID, id string) (int, error) {
	n, err := l.run(ctx, "unlock_card", partnerID, id).Int()
	if err != nil {
		return 0, mapScriptError("unlocking card", err)
	}
	return n, nil
}

// RemoveCard removes a card for good.
func (l *Ledger) RemoveCard(ctx context.Context, partnerID, id string) error {
	return mapScriptError("removing card", l.run(ctx, "remove_card", partnerID, id).Err())
}

// RecordPIN records a PIN check: a correct PIN resets the count, the
// maxTries-th wrong one in a row locks the card with reason 6. It returns
// the count and the lock reason in force.
func (l *Ledger) RecordPIN(ctx context.Context, partnerID, cardID string, correct bool, maxTries int, meta string) (tries, lock int, err error) {
	tries, lock, _, err = l.RecordPINAt(ctx, partnerID, cardID, correct, maxTries, 0, meta)
	return tries, lock, err
}

// RecordPINAt is RecordPIN on the card as read at version (0: any): a card
// changed since fails with ErrCardChanged and counts nothing. It also
// returns the card's version after.
func (l *Ledger) RecordPINAt(ctx context.Context, partnerID, cardID string, correct bool, maxTries int, version int64, meta string) (tries, lock int, after int64, err error) {
	ok := "0"
	if correct {
		ok = "1"
	}
	v, err := l.run(ctx, "pin_result", partnerID, cardID, ok, maxTries, meta, version).Result()
	if err != nil {
		return 0, 0, 0, mapScriptError("recording PIN check", err)
	}
	s := toStrings(v)
	f := fields{what: "pin_result reply"}
	tries, lock, after = int(f.int("tries", s[0])), int(f.int("lock", s[1])), f.int("version", s[2])
	return tries, lock, after, f.err
}

// CardsOfBalance lists the cards issued under a balance.
func (l *Ledger) CardsOfBalance(ctx context.Context, partnerID, balanceID string) ([]Card, error) {
	ids, err := l.rdb.SMembers(ctx, l.keys.BalanceCards(partnerID, balanceID)).Result()
	if err != nil {
		return nil, fmt.Errorf("listing cards: %w", err)
	}
	out := make([]Card, 0, len(ids))
	for _, id := range ids {
		c, err := l.Card(ctx, partnerID, id)
		if err != nil {
			return nil, fmt.Errorf("listing cards: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}
