package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/cardcrypto"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
)

// lockSource records who locked a card, per channel.
func lockSource(ch channel) string {
	switch ch {
	case customerCh:
		return "CUSTOMER"
	case partnerCh:
		return "PARTNER"
	}
	return "ADMIN"
}

type balanceRef struct {
	BalanceID string `json:"balanceId"`
	// ProgramID is the program the card is issued under (the partner's
	// default program when absent).
	ProgramID string `json:"programId"`
}

func (in *balanceRef) read(c *call) error {
	if err := c.decode(in); err != nil {
		return err
	}
	if in.BalanceID == "" {
		return invalid("balanceId", "balanceId is required")
	}
	return nil
}

// POST .../cards/virtual (JWE). Customer and partner channels get the
// card's full data {"id","type","cardNo","exp","cvv"}; the admin channel
// gets the card view without PAN or CVV2 (admins never see card data).
func (s *Server) createVirtual(c *call) (int, any, error) {
	pid, cid, err := c.verifiedCustomer()
	if err != nil {
		return 0, nil, err
	}
	var in balanceRef
	if err := in.read(c); err != nil {
		return 0, nil, err
	}
	card, full, err := s.cfg.Issuing.CreateVirtualIn(c.ctx, "", in.ProgramID, pid, cid, in.BalanceID)
	if err != nil {
		return 0, nil, err
	}
	if c.rt.ch == adminCh {
		return http.StatusCreated, card, nil
	}
	return http.StatusCreated, full, nil
}

type asyncCard struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  *Error `json:"error,omitempty"`
}

// asyncTimeout bounds the creation of one card in the background.
const asyncTimeout = 30 * time.Second

// pendingTTL is how long GET .../status answers PENDING or FAILED for a
// card id that does not exist (yet, or ever).
const pendingTTL = time.Hour

// POST .../cards/virtual/async: 202 {"id","status":"PENDING"} at once; the
// card is created in the background under that id. GET
// .../cards/{id}/status then shows PENDING, the card (status ACTIVE) or
// FAILED with the error. The request is checked first (customer, balance,
// BIN), so failures in the background are rare.
func (s *Server) createVirtualAsync(c *call) (int, any, error) {
	pid, cid, err := c.verifiedCustomer()
	if err != nil {
		return 0, nil, err
	}
	var in balanceRef
	if err := in.read(c); err != nil {
		return 0, nil, err
	}
	b, err := s.cfg.Ledger.UserBalance(c.ctx, pid, in.BalanceID)
	if errors.Is(err, ledger.ErrNotFound) || err == nil && b.CustomerID != cid {
		return 0, nil, errBalanceNotFound
	}
	if err != nil {
		return 0, nil, err
	}
	if b.State != "ACTIVE" {
		return 0, nil, ledger.ErrBalanceNotActive
	}
	p, err := s.cfg.Ledger.Partner(c.ctx, pid)
	if err != nil {
		return 0, nil, err
	}
	if p.BIN == "" {
		return 0, nil, issuing.ErrNoBIN
	}
	id := ledger.NewID("crd")
	key := s.keys.pendingCard(id)
	if err := s.cfg.Redis.HSet(c.ctx, key, "partner", pid, "customer", cid, "status", "PENDING").Err(); err != nil {
		return 0, nil, fmt.Errorf("recording async card: %w", err)
	}
	s.cfg.Redis.Expire(c.ctx, key, pendingTTL)
	started := s.goBackground(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), asyncTimeout)
		defer cancel()
		_, _, err := s.cfg.Issuing.CreateVirtualIn(ctx, id, in.ProgramID, pid, cid, in.BalanceID)
		if err == nil {
			s.cfg.Redis.Del(ctx, key)
			return
		}
		e, internal := toAPIError(err)
		if internal {
			s.log.ErrorContext(ctx, "async virtual card failed", "card", id, "err", err)
		}
		s.cfg.Redis.HSet(ctx, key, "status", "FAILED", "code", e.Code, "message", e.Message)
	})
	if !started {
		s.cfg.Redis.Del(c.ctx, key)
		return 0, nil, apiErr(http.StatusServiceUnavailable, "SHUTTING_DOWN", "the server is shutting down; retry")
	}
	return http.StatusAccepted, asyncCard{ID: id, Status: "PENDING"}, nil
}

// GET .../cards/{cardId}/status: the card without PAN or CVV2, or the
// state of an async creation.
func (s *Server) cardStatus(c *call) (int, any, error) {
	card, err := c.card()
	if errors.Is(err, errCardNotFound) && c.rt.ch != adminCh {
		pid, cid, _ := c.customerIDs()
		m, rerr := s.cfg.Redis.HGetAll(c.ctx, s.keys.pendingCard(c.r.PathValue("cardId"))).Result()
		if rerr == nil && len(m) > 0 && m["partner"] == pid && m["customer"] == cid {
			out := asyncCard{ID: c.r.PathValue("cardId"), Status: m["status"]}
			if m["status"] == "FAILED" {
				out.Error = &Error{Code: m["code"], Message: m["message"]}
			}
			return http.StatusOK, out, nil
		}
	}
	if err != nil {
		return 0, nil, err
	}
	v, err := s.cfg.Issuing.View(c.ctx, card)
	return http.StatusOK, v, err
}

// POST .../cards/physical (JWE): orders a plastic; it waits for the bureau.
func (s *Server) orderPhysical(c *call) (int, any, error) {
	pid, cid, err := c.verifiedCustomer()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		BalanceID       string           `json:"balanceId"`
		ProgramID       string           `json:"programId"`
		DeliveryAddress *deliveryAddress `json:"deliveryAddress"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.BalanceID == "" {
		return 0, nil, invalid("balanceId", "balanceId is required")
	}
	if in.DeliveryAddress == nil {
		return 0, nil, invalid("deliveryAddress", "deliveryAddress is required")
	}
	if err := in.DeliveryAddress.validate("deliveryAddress"); err != nil {
		return 0, nil, err
	}
	card, err := s.cfg.Issuing.OrderPhysicalIn(c.ctx, in.ProgramID, pid, cid, in.BalanceID, in.DeliveryAddress.json())
	if err != nil {
		return 0, nil, err
	}
	s.queueForBureau(c, card.ID, pid)
	return http.StatusCreated, card, nil
}

// queueForBureau puts a plastic (an ordered physical card, a digital-first
// copy) in the bureau's queue. The card exists already: answering an error
// would invite a retry and a second card, so a failure to queue it is
// logged for the operator (GET /admin/bureau/orders repairs the queue from
// Postgres).
func (s *Server) queueForBureau(c *call, cardID, partnerID string) {
	if err := s.cfg.Redis.ZAdd(c.ctx, s.keys.bureauQueue(), redis.Z{Score: float64(s.now().UnixMilli()), Member: cardID}).Err(); err != nil {
		s.log.ErrorContext(c.ctx, "plastic ordered but not queued for the bureau", "card", cardID, "partner", partnerID, "err", err)
	}
}

// GET .../cards/{cardId} (JWE): full card data, customer and partner channels only.
func (s *Server) fullData(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	full, err := s.cfg.Issuing.FullData(c.ctx, card.PartnerID, card.ID)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, full, nil
}

// POST .../cards/{cardId}/print (JWE): a digital-first plastic copy of a
// virtual card; no activation needed. Body optional: {"deliveryAddress"}.
func (s *Server) printCard(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		DeliveryAddress *deliveryAddress `json:"deliveryAddress"`
	}
	if _, err := c.decodeOptional(&in); err != nil {
		return 0, nil, err
	}
	delivery, err := in.DeliveryAddress.optional("deliveryAddress")
	if err != nil {
		return 0, nil, err
	}
	if err := c.ownerVerified(card); err != nil {
		return 0, nil, err
	}
	cp, err := s.cfg.Issuing.Print(c.ctx, card.PartnerID, card.ID, delivery)
	if err != nil {
		return 0, nil, err
	}
	// The copy is usable now; its blank plastic waits for the bureau.
	s.queueForBureau(c, cp.ID, card.PartnerID)
	return http.StatusCreated, cp, nil
}

// POST .../cards/{cardId}/activate
func (s *Server) activateCard(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	v, err := s.cfg.Issuing.Activate(c.ctx, card.PartnerID, card.ID, lockSource(c.rt.ch))
	return http.StatusOK, v, err
}

// POST .../cards/{cardId}/lock {"reason": 1..8}
func (s *Server) lockCard(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		Reason *int `json:"reason"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.Reason == nil || !authz.LockReason(*in.Reason).Valid() {
		return 0, nil, &Error{Status: http.StatusBadRequest, Code: "INVALID_LOCK_REASON", Field: "reason",
			Message: "reason must be an integer from 1 to 8 (a lock reason)"}
	}
	v, err := s.cfg.Issuing.Lock(c.ctx, card.PartnerID, card.ID, authz.LockReason(*in.Reason), lockSource(c.rt.ch))
	return http.StatusOK, v, err
}

// POST .../cards/{cardId}/unlock: 409 CARD_LOCK_IRREVERSIBLE for 1, 2, 5, 8.
func (s *Server) unlockCard(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	v, err := s.cfg.Issuing.Unlock(c.ctx, card.PartnerID, card.ID)
	return http.StatusOK, v, err
}

// DELETE .../cards/{cardId}: for good; the PAN declines as unknown.
func (s *Server) removeCard(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, s.cfg.Issuing.Remove(c.ctx, card.PartnerID, card.ID)
}

// POST .../cards/{cardId}/cvv (JWE): a new CVV2 for a virtual or
// digital-first card. The customer gets the new full data; an admin gets
// the card view only (admins never see card data: the customer reads the
// new CVV2 in the app).
func (s *Server) resetCVV(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	full, err := s.cfg.Issuing.ResetCVV(c.ctx, card.PartnerID, card.ID)
	if err != nil {
		return 0, nil, err
	}
	if c.rt.ch == adminCh {
		v, err := s.cfg.Issuing.Get(c.ctx, card.PartnerID, card.ID)
		return http.StatusOK, v, err
	}
	return http.StatusOK, full, nil
}

// POST /customers/me/cards/{cardId}/pin (JWE request {"pin": "1234"}): 204.
func (s *Server) setPIN(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		PIN string `json:"pin"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if !cardcrypto.ValidPIN(in.PIN) {
		return 0, nil, issuing.ErrInvalidPIN
	}
	return http.StatusNoContent, nil, s.cfg.Issuing.SetPIN(c.ctx, card.PartnerID, card.ID, in.PIN)
}

type bureauOrder struct {
	issuing.Card
	PartnerID string `json:"partnerId"`
	// Blank: a digital-first plastic, produced with no data imprinted.
	Blank           bool             `json:"blank"`
	DeliveryAddress *deliveryAddress `json:"deliveryAddress,omitempty"`
	OrderedAt       time.Time        `json:"orderedAt"`
}

// maxBureauOrders bounds one listing; the bureau reads again after
// reporting the ones it made.
const maxBureauOrders = 500

// GET /admin/bureau/orders: plastics waiting for the bureau, oldest first,
// with their delivery address: physical cards with status ORDERED, and
// digital-first copies with delivery state ORDERED, which the bureau
// produces blank (no data imprinted). No PAN: the bureau gets card data
// from the processor, not from the admin API.
//
// The Redis queue answers at once; Postgres (through the write-behind)
// adds what the queue lost — a Redis restart without persistence, or an
// order whose queueing failed — so no ordered card waits forever.
func (s *Server) bureauOrders(c *call) (int, any, error) {
	s.requeueOrderedCards(c.ctx)
	zs, err := s.cfg.Redis.ZRangeWithScores(c.ctx, s.keys.bureauQueue(), 0, maxBureauOrders-1).Result()
	if err != nil {
		return 0, nil, fmt.Errorf("reading bureau queue: %w", err)
	}
	out := []bureauOrder{}
	for _, z := range zs {
		id, _ := z.Member.(string)
		pid, err := s.cfg.Ledger.PartnerOf(c.ctx, id)
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			return 0, nil, err
		}
		var card ledger.Card
		if err == nil {
			card, err = s.cfg.Ledger.Card(c.ctx, pid, id)
		}
		if errors.Is(err, ledger.ErrNotFound) || errors.Is(err, ledger.ErrCardNotFound) || err == nil && !issuing.WaitsForBureau(card) {
			s.cfg.Redis.ZRem(c.ctx, s.keys.bureauQueue(), id) // made, removed or gone: no longer waiting
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		v, err := s.cfg.Issuing.View(c.ctx, card)
		if err != nil {
			return 0, nil, err
		}
		out = append(out, bureauOrder{Card: v, PartnerID: pid, Blank: card.Type == string(authz.CardDigitalFirst), DeliveryAddress: parseDelivery(card.Delivery),
			OrderedAt: time.UnixMilli(int64(z.Score)).UTC()})
	}
	return http.StatusOK, map[string]any{"orders": out}, nil
}

// requeueOrderedCards puts back into the bureau queue the plastics
// Postgres knows as waiting for the bureau: physical cards ORDERED and
// digital-first copies whose delivery state is ORDERED (oldest first, one
// listing's worth). The state
// in Redis decides afterwards: bureauOrders drops what is no longer
// ORDERED there. Postgres being unreachable only costs the repair.
func (s *Server) requeueOrderedCards(ctx context.Context) {
	rows, err := s.cfg.DB.Query(ctx, `SELECT id, created_at FROM cards
		WHERE (status = 'ORDERED' AND type = 'PHYSICAL')
		   OR (delivery_state = 'ORDERED' AND type = 'DIGITAL_FIRST' AND status <> 'REMOVED')
		ORDER BY created_at, id LIMIT $1`, maxBureauOrders)
	if err != nil {
		s.log.WarnContext(ctx, "reading ordered cards from postgres for the bureau queue", "err", err)
		return
	}
	var zs []redis.Z
	for rows.Next() {
		var id, created string
		if err := rows.Scan(&id, &created); err != nil {
			s.log.WarnContext(ctx, "reading ordered cards from postgres for the bureau queue", "err", err)
			rows.Close()
			return
		}
		ms, _ := strconv.ParseInt(created, 10, 64)
		zs = append(zs, redis.Z{Score: float64(ms), Member: id})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		s.log.WarnContext(ctx, "reading ordered cards from postgres for the bureau queue", "err", err)
		return
	}
	if len(zs) == 0 {
		return
	}
	// NX: a queued card keeps its order time.
	if err := s.cfg.Redis.ZAddNX(ctx, s.keys.bureauQueue(), zs...).Err(); err != nil {
		s.log.WarnContext(ctx, "requeueing ordered cards for the bureau", "err", err)
	}
}

// POST /admin/bureau/cards/{cardId}/personalised: the bureau reports the
// plastic made; a physical card is personalised and linked to its user and
// balance (ready for activation; repeating after a partial failure
// finishes the link); a digital-first copy, active from the start, moves
// to delivery state PRODUCED.
func (s *Server) bureauPersonalised(c *call) (int, any, error) {
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	if card.Type == string(authz.CardDigitalFirst) {
		v, err := s.cfg.Issuing.Produced(c.ctx, card.PartnerID, card.ID)
		if err != nil {
			return 0, nil, err
		}
		s.cfg.Redis.ZRem(c.ctx, s.keys.bureauQueue(), card.ID)
		return http.StatusOK, v, nil
	}
	if card.Type != string(authz.CardPhysical) {
		return 0, nil, fmt.Errorf("personalising %s card: %w", card.Type, issuing.ErrWrongCardType)
	}
	if card.Status == string(authz.StatusOrdered) {
		if _, err := s.cfg.Issuing.Personalise(c.ctx, card.PartnerID, card.ID); err != nil {
			return 0, nil, err
		}
	}
	v, err := s.cfg.Issuing.Link(c.ctx, card.PartnerID, card.ID)
	if err != nil {
		return 0, nil, err
	}
	s.cfg.Redis.ZRem(c.ctx, s.keys.bureauQueue(), card.ID)
	return http.StatusOK, v, nil
}
