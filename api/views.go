package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
)

// JSON views of ledger rows. None of them holds a PAN, CVV2 or PIN: card
// views are issuing.Card (last 4 digits and expiry month only).

type customerView struct {
	ID         string    `json:"id"`
	PartnerID  string    `json:"partnerId"`
	ExternalID string    `json:"externalId"`
	FirstName  string    `json:"firstName"`
	LastName   string    `json:"lastName"`
	Email      string    `json:"email"`
	Phone      string    `json:"phone"`
	KYCStatus  string    `json:"kycStatus"`
	CreatedAt  time.Time `json:"createdAt"`
}

func customerOf(c ledger.Customer) customerView {
	return customerView{
		ID: c.ID, PartnerID: c.PartnerID, ExternalID: c.ExternalID, FirstName: c.FirstName,
		LastName: c.LastName, Email: c.Email, Phone: c.Phone, KYCStatus: c.KYCStatus, CreatedAt: c.CreatedAt,
	}
}

type balanceView struct {
	ID         string         `json:"id"`
	CustomerID string         `json:"customerId"`
	Currency   string         `json:"currency"`
	Available  int64          `json:"available"`
	Held       int64          `json:"held"`
	State      string         `json:"state"`
	Cards      []issuing.Card `json:"cards"`
}

type partnerView struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	BIN          string    `json:"bin"`
	Currency     string    `json:"currency"`
	FundingModel string    `json:"fundingModel"`
	DigitalFirst bool      `json:"digitalFirst"`
	CreatedAt    time.Time `json:"createdAt"`
}

func partnerOf(p ledger.Partner) partnerView {
	return partnerView{
		ID: p.ID, Name: p.Name, BIN: p.BIN, Currency: p.Currency,
		FundingModel: p.FundingModel, DigitalFirst: p.DigitalFirst, CreatedAt: p.CreatedAt,
	}
}

type partnerBalanceView struct {
	ID        string `json:"id"`
	PartnerID string `json:"partnerId"`
	Type      string `json:"type"`
	Currency  string `json:"currency"`
	// Balance is what the partner can still use: Available.
	Balance             int64  `json:"balance"`
	Available           int64  `json:"available"`
	Reserved            int64  `json:"reserved"`
	Settled             int64  `json:"settled"`
	LowBalanceThreshold int64  `json:"lowBalanceThreshold"`
	State               string `json:"state"`
}

func partnerBalanceOf(b ledger.PartnerBalance) partnerBalanceView {
	return partnerBalanceView{
		ID: b.ID, PartnerID: b.PartnerID, Type: b.Type, Currency: b.Currency, Balance: b.Available,
		Available: b.Available, Reserved: b.Reserved, Settled: b.Settled, LowBalanceThreshold: b.LowThreshold, State: b.State,
	}
}

// deliveryAddress is where a plastic goes.
type deliveryAddress struct {
	Name       string `json:"name,omitempty"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	PostalCode string `json:"postalCode"`
	Country    string `json:"country"`
}

func (a *deliveryAddress) validate(field string) error {
	check := func(name, v string, required bool, max int) error {
		if required && strings.TrimSpace(v) == "" {
			return invalid(field+"."+name, field+"."+name+" is required")
		}
		if len(v) > max {
			return invalid(field+"."+name, fmt.Sprintf("%s.%s is at most %d characters", field, name, max))
		}
		return nil
	}
	return errors.Join(
		check("name", a.Name, false, 100), check("line1", a.Line1, true, 200), check("line2", a.Line2, false, 200),
		check("city", a.City, true, 100), check("postalCode", a.PostalCode, true, 20), countryCheck(field, a.Country),
	)
}

func countryCheck(field, c string) error {
	if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
		return invalid(field+".country", field+".country must be an ISO 3166-1 alpha-2 code, e.g. PL")
	}
	return nil
}

// optional validates an address the body may leave out and returns it as
// stored ("" when absent).
func (a *deliveryAddress) optional(field string) (string, error) {
	if a == nil {
		return "", nil
	}
	if err := a.validate(field); err != nil {
		return "", err
	}
	return a.json(), nil
}

func (a *deliveryAddress) json() string {
	b, _ := json.Marshal(a)
	return string(b)
}

func parseDelivery(s string) *deliveryAddress {
	if s == "" {
		return nil
	}
	var a deliveryAddress
	if json.Unmarshal([]byte(s), &a) != nil {
		return nil
	}
	return &a
}

// msTime reads the ledger's created_at (milliseconds since the epoch).
func msTime(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// cardViews turns card rows into views, ordered by id for stable output.
func (s *Server) cardViews(c *call, rows []ledger.Card) ([]issuing.Card, error) {
	out := make([]issuing.Card, 0, len(rows))
	for _, r := range rows {
		v, err := s.cfg.Issuing.View(c.ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b issuing.Card) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (s *Server) balanceView(c *call, b ledger.UserBalance) (balanceView, error) {
	rows, err := s.cfg.Ledger.CardsOfBalance(c.ctx, b.PartnerID, b.ID)
	if err != nil {
		return balanceView{}, err
	}
	cards, err := s.cardViews(c, rows)
	if err != nil {
		return balanceView{}, err
	}
	return balanceView{ID: b.ID, CustomerID: b.CustomerID, Currency: b.Currency, Available: b.Available,
		Held: b.Held, State: b.State, Cards: cards}, nil
}
