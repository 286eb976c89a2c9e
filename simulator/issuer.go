package simulator

import (
	"context"
	"errors"
	"fmt"

	"github.com/antaca/antaca/authz"
)

// Issuer is what the simulator asks of the issuer platform besides
// authorizations: programs, customers, balances and the card life cycle.
// RESTIssuer implements it over the REST API (api/openapi.yaml),
// DirectIssuer in process on the ledger. Errors the platform refuses with
// are *APIError, the same for both, so scenarios can expect them.
type Issuer interface {
	// CreatePartner creates a program with its partner balance of the
	// funding model in the program currency, reloaded with p.Funds.
	CreatePartner(ctx context.Context, p PartnerSpec) (Partner, error)
	// ReloadPartnerBalance adds money from outside to a partner balance.
	ReloadPartnerBalance(ctx context.Context, p Partner, amount int64) error
	// CreateCustomer registers a customer (last name "User" when empty)
	// and, with verified, marks its own KYC as VERIFIED.
	CreateCustomer(ctx context.Context, p Partner, externalID, lastName string, verified bool) (Customer, error)
	// StartKYC starts the customer's KYC (POST .../register): PENDING, and
	// with a KYC provider configured on the switch, sent to it.
	StartKYC(ctx context.Context, p Partner, customerID string) (Customer, error)
	// GetCustomer reads a customer (its KYC status).
	GetCustomer(ctx context.Context, p Partner, customerID string) (Customer, error)
	CreateBalance(ctx context.Context, p Partner, customerID, currency string) (Balance, error)
	Reload(ctx context.Context, p Partner, customerID, balanceID string, amount int64) error
	GetBalance(ctx context.Context, p Partner, customerID, balanceID string) (Balance, error)

	// IssueVirtual creates an active virtual card and returns its full data.
	IssueVirtual(ctx context.Context, p Partner, customerID, balanceID string) (Card, error)
	// OrderPhysical orders a plastic card; it declines until activated.
	OrderPhysical(ctx context.Context, p Partner, customerID, balanceID string) (Card, error)
	// Personalise plays the bureau's report for an ordered card: the
	// platform marks it personalised and links it to the user's balance.
	Personalise(ctx context.Context, p Partner, cardID string) error
	Activate(ctx context.Context, p Partner, customerID, cardID string) error
	// Print orders a digital-first copy of a virtual card (same PAN).
	Print(ctx context.Context, p Partner, customerID, cardID string) (Card, error)
	SetPIN(ctx context.Context, p Partner, customerID, cardID, pin string) error
	// FullData returns the card's PAN, expiry and CVV2.
	FullData(ctx context.Context, p Partner, customerID, cardID string) (Card, error)
	Lock(ctx context.Context, p Partner, customerID, cardID string, reason int) error
	// ExternalLock locks a card on request of a card network or an
	// acquirer (source NETWORK or ACQUIRER), recording its reference.
	ExternalLock(ctx context.Context, p Partner, customerID, cardID string, reason int, source, reference string) error
	// Replace issues a card of the same type under the same balance in
	// the card's place (the old one locked with reason 8, at once or,
	// with keepOld, when a new plastic is activated) and returns the new
	// card with its full data.
	Replace(ctx context.Context, p Partner, customerID, cardID string, keepOld bool) (Card, error)
	Unlock(ctx context.Context, p Partner, customerID, cardID string) error
	Remove(ctx context.Context, p Partner, customerID, cardID string) error
	// SetCardControls sets a card's own spend controls (JSON as PUT
	// .../controls takes it).
	SetCardControls(ctx context.Context, p Partner, customerID, cardID, controls string) error
	// SetRemote gives the partner's default program a decisioning backend
	// (remoteUrl), its stand-in policy and decision timeout; it returns
	// the secret that signs the requests.
	SetRemote(ctx context.Context, p Partner, url string, standIn authz.StandIn, timeoutMS int64) (string, error)
}

// PartnerSpec describes a program to create.
type PartnerSpec struct {
	ID, Name, BIN, Currency string
	FundingModel            string // DEPOSIT or CREDIT
	Funds                   int64  // initial partner balance
	LowBalanceThreshold     int64
	// DigitalFirst registers the program for digital first (print).
	DigitalFirst bool
}

// Partner is a program the simulator acts for.
type Partner struct {
	ID           string `json:"id" yaml:"id"`
	Name         string `json:"name,omitempty" yaml:"name,omitempty"`
	BIN          string `json:"bin" yaml:"bin"`
	Currency     string `json:"currency" yaml:"currency"`
	FundingModel string `json:"fundingModel" yaml:"fundingModel"`
	BalanceID    string `json:"balanceId,omitempty" yaml:"balanceId,omitempty"`
	// ClientCert and ClientKey are the PEM files of the partner's mTLS
	// client certificate for the /secure channel (REST only).
	ClientCert string `json:"clientCert,omitempty" yaml:"clientCert,omitempty"`
	ClientKey  string `json:"clientKey,omitempty" yaml:"clientKey,omitempty"`
}

// Customer is a registered user.
type Customer struct {
	ID         string `json:"id" yaml:"id"`
	ExternalID string `json:"externalId,omitempty" yaml:"externalId,omitempty"`
	KYCStatus  string `json:"kycStatus,omitempty" yaml:"kycStatus,omitempty"`
}

// Balance is a user balance.
type Balance struct {
	ID        string `json:"id" yaml:"id"`
	Currency  string `json:"currency" yaml:"currency"`
	Available int64  `json:"available" yaml:"available"`
	Held      int64  `json:"held" yaml:"held"`
	State     string `json:"state,omitempty" yaml:"state,omitempty"`
}

// Card is a card as the simulator knows it. PAN, CVV and PIN are test data
// and stay inside the cards file.
type Card struct {
	Name       string `json:"name,omitempty" yaml:"name,omitempty"`
	ID         string `json:"id" yaml:"id"`
	Type       string `json:"type" yaml:"type"`
	Status     string `json:"status,omitempty" yaml:"status,omitempty"`
	PartnerID  string `json:"partnerId,omitempty" yaml:"partnerId,omitempty"`
	CustomerID string `json:"customerId,omitempty" yaml:"customerId,omitempty"`
	BalanceID  string `json:"balanceId,omitempty" yaml:"balanceId,omitempty"`
	Currency   string `json:"currency,omitempty" yaml:"currency,omitempty"`
	PAN        string `json:"pan,omitempty" yaml:"pan,omitempty"`
	Expiry     string `json:"expiry,omitempty" yaml:"expiry,omitempty"` // YYMM as DE14 carries it
	CVV        string `json:"cvv,omitempty" yaml:"cvv,omitempty"`
	PIN        string `json:"pin,omitempty" yaml:"pin,omitempty"`
	CopyOf     string `json:"copyOf,omitempty" yaml:"copyOf,omitempty"`
}

// Masked is the card's PAN fit for a log line.
func (c Card) Masked() string { return MaskPAN(c.PAN) }

// Card types as the platform names them.
const (
	TypeVirtual      = "VIRTUAL"
	TypePhysical     = "PHYSICAL"
	TypeDigitalFirst = "DIGITAL_FIRST"
)

// APIError is a refusal by the platform: the HTTP status and the error
// code of the REST API's error body (api/README.md, "Errors").
type APIError struct {
	Status  int
	Code    string
	Message string
	Op      string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %d %s: %s", e.Op, e.Status, e.Code, e.Message)
}

// AsAPIError returns the *APIError in err's chain, if any.
func AsAPIError(err error) (*APIError, bool) {
	var ae *APIError
	ok := errors.As(err, &ae)
	return ae, ok
}

// expiryYYMM turns the API's "YYYY-MM-DD" or "YYYY-MM" expiry into DE14's YYMM.
func expiryYYMM(s string) string {
	switch {
	case len(s) >= 7 && s[4] == '-':
		return s[2:4] + s[5:7]
	case len(s) == 4:
		return s
	}
	return ""
}
