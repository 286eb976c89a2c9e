package api

import (
	"errors"

	"github.com/antaca/antaca/ledger"
)

// Scoping: which customer, balance or card a request may reach.
//
//   - /customers/me: the session's customer, within the session's partner.
//   - /secure: the customer in the path, within the certificate's partner.
//     Every ledger read is made in the partner's own key space
//     ({p:<partnerId>}), so an id of another partner is simply not found
//     there: it answers 404 exactly like an unknown id.
//   - /admin: any partner; the partner is found with ledger.PartnerOf.
//
// Balances and cards must moreover belong to the customer in scope.

// customerIDs returns the partner and customer of a customer-scoped request
// without reading the customer.
func (c *call) customerIDs() (partnerID, customerID string, err error) {
	switch c.rt.ch {
	case customerCh:
		return c.partnerID, c.customerID, nil
	case partnerCh:
		return c.partnerID, c.r.PathValue("customerId"), nil
	default:
		id := c.r.PathValue("customerId")
		pid, err := c.s.partnerOf(c, id, errCustomerNotFound)
		return pid, id, err
	}
}

// customer reads the customer in scope.
func (c *call) customer() (ledger.Customer, error) {
	pid, cid, err := c.customerIDs()
	if err != nil {
		return ledger.Customer{}, err
	}
	if cid == "" {
		return ledger.Customer{}, errCustomerNotFound
	}
	cust, err := c.s.cfg.Ledger.Customer(c.ctx, pid, cid)
	if errors.Is(err, ledger.ErrNotFound) {
		return ledger.Customer{}, errCustomerNotFound
	}
	return cust, err
}

// balance reads the user balance named by the path.
func (c *call) balance() (ledger.UserBalance, error) {
	bid := c.r.PathValue("balanceId")
	var pid, cid string
	var err error
	if c.rt.ch == adminCh {
		pid, err = c.s.partnerOf(c, bid, errBalanceNotFound)
	} else {
		pid, cid, err = c.customerIDs()
	}
	if err != nil {
		return ledger.UserBalance{}, err
	}
	b, err := c.s.cfg.Ledger.UserBalance(c.ctx, pid, bid)
	if errors.Is(err, ledger.ErrNotFound) || err == nil && cid != "" && b.CustomerID != cid {
		return ledger.UserBalance{}, errBalanceNotFound
	}
	return b, err
}

// card reads the card named by the path.
func (c *call) card() (ledger.Card, error) {
	id := c.r.PathValue("cardId")
	var pid, cid string
	var err error
	if c.rt.ch == adminCh {
		pid, err = c.s.partnerOf(c, id, errCardNotFound)
	} else {
		pid, cid, err = c.customerIDs()
	}
	if err != nil {
		return ledger.Card{}, err
	}
	card, err := c.s.cfg.Ledger.Card(c.ctx, pid, id)
	if errors.Is(err, ledger.ErrCardNotFound) || err == nil && cid != "" && card.CustomerID != cid {
		return ledger.Card{}, errCardNotFound
	}
	return card, err
}

// partnerOf finds the partner of an id for admin routes; notFound when the
// id is unknown.
func (s *Server) partnerOf(c *call, id string, notFound error) (string, error) {
	if id == "" {
		return "", notFound
	}
	pid, err := s.cfg.Ledger.PartnerOf(c.ctx, id)
	if errors.Is(err, ledger.ErrNotFound) {
		return "", notFound
	}
	return pid, err
}

// partner reads the partner named by the path (admin) or the caller (secure).
func (c *call) partner() (ledger.Partner, error) {
	pid := c.partnerID
	if c.rt.ch == adminCh {
		pid = c.r.PathValue("partnerId")
	}
	if pid == "" {
		return ledger.Partner{}, errPartnerNotFound
	}
	p, err := c.s.cfg.Ledger.Partner(c.ctx, pid)
	if errors.Is(err, ledger.ErrNotFound) {
		return ledger.Partner{}, errPartnerNotFound
	}
	return p, err
}

// verifiedCustomer is the customer in scope, who must have passed KYC to
// be issued cards (409 KYC_NOT_VERIFIED otherwise).
func (c *call) verifiedCustomer() (partnerID, customerID string, err error) {
	cust, err := c.customer()
	if err != nil {
		return "", "", err
	}
	if cust.KYCStatus != "VERIFIED" {
		return "", "", ledger.ErrKYCNotVerified
	}
	return cust.PartnerID, cust.ID, nil
}

// ownerVerified refuses a new card for an existing one (a digital-first
// copy, a replacement) when the card's customer is not KYC VERIFIED (409
// KYC_NOT_VERIFIED), as for any new card.
func (c *call) ownerVerified(card ledger.Card) error {
	b, err := c.s.cfg.Ledger.UserBalance(c.ctx, card.PartnerID, card.BalanceID)
	if err != nil {
		return err
	}
	cust, err := c.s.cfg.Ledger.Customer(c.ctx, card.PartnerID, b.CustomerID)
	if err != nil {
		return err
	}
	if cust.KYCStatus != "VERIFIED" {
		return ledger.ErrKYCNotVerified
	}
	return nil
}
