package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
)

// DirectIssuer performs issuer actions in process through authz/issuing and
// the ledger, on the same Redis (and key prefix) and keys directory as the
// switch. `antaca bench` seeds with it; `antaca sim --direct` uses it where
// the REST API is not reachable. Refusals come back as *APIError with the
// status and code the REST API answers them with.
type DirectIssuer struct {
	Ledger  *ledger.Ledger
	Issuing *issuing.Service
}

var _ Issuer = (*DirectIssuer)(nil)

// directErrors translates ledger and issuing refusals into the REST API's
// status and code, so scenarios expect the same thing on both paths.
var directErrors = []struct {
	err    error
	status int
	code   string
}{
	{ledger.ErrLockIrreversible, http.StatusConflict, "CARD_LOCK_IRREVERSIBLE"},
	{ledger.ErrCardNotLocked, http.StatusConflict, "CARD_NOT_LOCKED"},
	{ledger.ErrCardRemoved, http.StatusConflict, "CARD_REMOVED"},
	{ledger.ErrInvalidTransition, http.StatusConflict, "INVALID_CARD_STATE"},
	{issuing.ErrWrongCardType, http.StatusConflict, "WRONG_CARD_TYPE"},
	{issuing.ErrInvalidPIN, http.StatusBadRequest, "INVALID_PIN"},
	{issuing.ErrNotDigitalFirst, http.StatusConflict, "NOT_DIGITAL_FIRST"},
	{ledger.ErrCardReplaced, http.StatusConflict, "CARD_ALREADY_REPLACED"},
	{ledger.ErrKYCNotVerified, http.StatusConflict, "KYC_NOT_VERIFIED"},
	{ledger.ErrInsufficientPartnerFunds, http.StatusConflict, "INSUFFICIENT_PARTNER_FUNDS"},
	{ledger.ErrAlreadyExists, http.StatusConflict, "ALREADY_EXISTS"},
	{ledger.ErrInvalidAmount, http.StatusBadRequest, "INVALID_AMOUNT"},
	{ledger.ErrCardNotFound, http.StatusNotFound, "CARD_NOT_FOUND"},
	{ledger.ErrCustomerNotFound, http.StatusNotFound, "CUSTOMER_NOT_FOUND"},
	{ledger.ErrBalanceNotFound, http.StatusNotFound, "BALANCE_NOT_FOUND"},
	{ledger.ErrPartnerNotFound, http.StatusNotFound, "PARTNER_NOT_FOUND"},
	{ledger.ErrNotFound, http.StatusNotFound, "NOT_FOUND"},
}

func directErr(op string, err error) error {
	if err == nil {
		return nil
	}
	for _, m := range directErrors {
		if errors.Is(err, m.err) {
			return &APIError{Status: m.status, Code: m.code, Message: err.Error(), Op: op}
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// CreatePartner implements Issuer.
func (d *DirectIssuer) CreatePartner(ctx context.Context, s PartnerSpec) (Partner, error) {
	if s.Name == "" {
		s.Name = s.ID
	}
	err := d.Ledger.CreatePartner(ctx, ledger.Partner{ID: s.ID, Name: s.Name, BIN: s.BIN, Currency: s.Currency, FundingModel: s.FundingModel, DigitalFirst: s.DigitalFirst})
	if err != nil {
		return Partner{}, directErr("creating partner", err)
	}
	p := Partner{ID: s.ID, Name: s.Name, BIN: s.BIN, Currency: s.Currency, FundingModel: s.FundingModel, BalanceID: ledger.NewID("pbl")}
	if err := d.Ledger.CreatePartnerBalance(ctx, p.ID, p.BalanceID, s.FundingModel, s.Currency, s.LowBalanceThreshold); err != nil {
		return Partner{}, directErr("creating partner balance", err)
	}
	if s.Funds > 0 {
		if err := d.ReloadPartnerBalance(ctx, p, s.Funds); err != nil {
			return Partner{}, err
		}
	}
	return p, nil
}

// ReloadPartnerBalance implements Issuer.
func (d *DirectIssuer) ReloadPartnerBalance(ctx context.Context, p Partner, amount int64) error {
	_, err := d.Ledger.ReloadPartnerBalance(ctx, p.ID, p.BalanceID, amount, "")
	return directErr("reloading partner balance", err)
}

// CreateCustomer implements Issuer.
func (d *DirectIssuer) CreateCustomer(ctx context.Context, p Partner, externalID, lastName string, verified bool) (Customer, error) {
	if lastName == "" {
		lastName = "User"
	}
	c := ledger.Customer{ID: ledger.NewID("cus"), PartnerID: p.ID, ExternalID: externalID,
		FirstName: "Sim", LastName: lastName, Email: externalID + "@sim.invalid", Phone: "+4915100000000"}
	if err := d.Ledger.CreateCustomer(ctx, c); err != nil {
		return Customer{}, directErr("creating customer", err)
	}
	out := Customer{ID: c.ID, ExternalID: externalID, KYCStatus: "NONE"}
	if verified {
		if err := d.Ledger.SetKYC(ctx, p.ID, c.ID, "VERIFIED"); err != nil {
			return Customer{}, directErr("setting KYC", err)
		}
		out.KYCStatus = "VERIFIED"
	}
	return out, nil
}

// StartKYC implements Issuer. In process there is no KYC provider: the
// customer becomes PENDING, as the API does without one.
func (d *DirectIssuer) StartKYC(ctx context.Context, p Partner, customerID string) (Customer, error) {
	c, err := d.GetCustomer(ctx, p, customerID)
	if err != nil {
		return Customer{}, err
	}
	if c.KYCStatus == "VERIFIED" {
		return Customer{}, &APIError{Status: http.StatusConflict, Code: "KYC_ALREADY_VERIFIED", Message: "the customer's KYC is already verified", Op: "starting KYC"}
	}
	if err := d.Ledger.SetKYC(ctx, p.ID, customerID, "PENDING"); err != nil {
		return Customer{}, directErr("starting KYC", err)
	}
	c.KYCStatus = "PENDING"
	return c, nil
}

// GetCustomer implements Issuer.
func (d *DirectIssuer) GetCustomer(ctx context.Context, p Partner, customerID string) (Customer, error) {
	cust, err := d.Ledger.Customer(ctx, p.ID, customerID)
	if err != nil {
		return Customer{}, directErr("reading customer", err)
	}
	return Customer{ID: customerID, ExternalID: cust.ExternalID, KYCStatus: cust.KYCStatus}, nil
}

// CreateBalance implements Issuer.
func (d *DirectIssuer) CreateBalance(ctx context.Context, p Partner, customerID, currency string) (Balance, error) {
	id := ledger.NewID("bal")
	if err := d.Ledger.CreateUserBalance(ctx, p.ID, customerID, id, currency); err != nil {
		return Balance{}, directErr("creating balance", err)
	}
	return Balance{ID: id, Currency: currency, State: "ACTIVE"}, nil
}

// Reload implements Issuer.
func (d *DirectIssuer) Reload(ctx context.Context, p Partner, _, balanceID string, amount int64) error {
	_, _, err := d.Ledger.ReloadUserBalance(ctx, p.ID, balanceID, amount, "")
	return directErr("reloading balance", err)
}

// GetBalance implements Issuer.
func (d *DirectIssuer) GetBalance(ctx context.Context, p Partner, _, balanceID string) (Balance, error) {
	b, err := d.Ledger.UserBalance(ctx, p.ID, balanceID)
	if err != nil {
		return Balance{}, directErr("reading balance", err)
	}
	return Balance{ID: b.ID, Currency: b.Currency, Available: b.Available, Held: b.Held, State: b.State}, nil
}

func fromFull(f issuing.FullData, c issuing.Card, partnerID string) Card {
	return Card{ID: c.ID, Type: string(c.Type), Status: string(c.Status), PartnerID: partnerID, CustomerID: c.CustomerID,
		BalanceID: c.BalanceID, PAN: f.CardNo, Expiry: expiryYYMM(f.Exp), CVV: f.CVV, CopyOf: c.CopyOf}
}

// IssueVirtual implements Issuer.
func (d *DirectIssuer) IssueVirtual(ctx context.Context, p Partner, customerID, balanceID string) (Card, error) {
	c, full, err := d.Issuing.CreateVirtual(ctx, p.ID, customerID, balanceID)
	if err != nil {
		return Card{}, directErr("creating virtual card", err)
	}
	return fromFull(full, c, p.ID), nil
}

// OrderPhysical implements Issuer.
func (d *DirectIssuer) OrderPhysical(ctx context.Context, p Partner, customerID, balanceID string) (Card, error) {
	c, err := d.Issuing.OrderPhysical(ctx, p.ID, customerID, balanceID, deliveryJSON)
	if err != nil {
		return Card{}, directErr("ordering physical card", err)
	}
	full, err := d.Issuing.FullData(ctx, p.ID, c.ID)
	if err != nil {
		return Card{}, directErr("reading card data", err)
	}
	return fromFull(full, c, p.ID), nil
}

// Personalise implements Issuer: personalised, then linked; a
// digital-first copy's blank plastic is produced.
func (d *DirectIssuer) Personalise(ctx context.Context, p Partner, cardID string) error {
	c, err := d.Ledger.Card(ctx, p.ID, cardID)
	if err != nil {
		return directErr("reading card", err)
	}
	if c.Type == TypeDigitalFirst {
		_, err := d.Issuing.Produced(ctx, p.ID, cardID)
		return directErr("producing digital-first plastic", err)
	}
	if _, err := d.Issuing.Personalise(ctx, p.ID, cardID); err != nil {
		return directErr("personalising card", err)
	}
	_, err = d.Issuing.Link(ctx, p.ID, cardID)
	return directErr("linking card", err)
}

// Activate implements Issuer.
func (d *DirectIssuer) Activate(ctx context.Context, p Partner, _, cardID string) error {
	_, err := d.Issuing.Activate(ctx, p.ID, cardID, "PARTNER")
	return directErr("activating card", err)
}

// Print implements Issuer.
func (d *DirectIssuer) Print(ctx context.Context, p Partner, _, cardID string) (Card, error) {
	c, err := d.Issuing.Print(ctx, p.ID, cardID, deliveryJSON)
	if err != nil {
		return Card{}, directErr("printing card", err)
	}
	full, err := d.Issuing.FullData(ctx, p.ID, c.ID)
	if err != nil {
		return Card{}, directErr("reading card data", err)
	}
	return fromFull(full, c, p.ID), nil
}

// SetPIN implements Issuer.
func (d *DirectIssuer) SetPIN(ctx context.Context, p Partner, _, cardID, pin string) error {
	return directErr("setting PIN", d.Issuing.SetPIN(ctx, p.ID, cardID, pin))
}

// FullData implements Issuer.
func (d *DirectIssuer) FullData(ctx context.Context, p Partner, _, cardID string) (Card, error) {
	c, err := d.Issuing.Get(ctx, p.ID, cardID)
	if err != nil {
		return Card{}, directErr("reading card", err)
	}
	full, err := d.Issuing.FullData(ctx, p.ID, cardID)
	if err != nil {
		return Card{}, directErr("reading card data", err)
	}
	return fromFull(full, c, p.ID), nil
}

// Lock implements Issuer.
func (d *DirectIssuer) Lock(ctx context.Context, p Partner, _, cardID string, reason int) error {
	_, err := d.Issuing.Lock(ctx, p.ID, cardID, authz.LockReason(reason), "PARTNER")
	return directErr("locking card", err)
}

// ExternalLock implements Issuer.
func (d *DirectIssuer) ExternalLock(ctx context.Context, p Partner, _, cardID string, reason int, source, reference string) error {
	if source != "NETWORK" && source != "ACQUIRER" || reference == "" {
		// As the REST API checks the request.
		return &APIError{Status: http.StatusBadRequest, Code: "VALIDATION_ERROR", Op: "locking card from outside",
			Message: "source must be NETWORK or ACQUIRER, and reference is required"}
	}
	_, err := d.Issuing.LockFrom(ctx, p.ID, cardID, authz.LockReason(reason), source, reference)
	return directErr("locking card from outside", err)
}

// Replace implements Issuer.
func (d *DirectIssuer) Replace(ctx context.Context, p Partner, _, cardID string, keepOld bool) (Card, error) {
	r, err := d.Issuing.Replace(ctx, p.ID, cardID, keepOld, "", "PARTNER")
	if err != nil {
		return Card{}, directErr("replacing card", err)
	}
	return fromFull(r.Full, r.Card, p.ID), nil
}

// Unlock implements Issuer.
func (d *DirectIssuer) Unlock(ctx context.Context, p Partner, _, cardID string) error {
	_, err := d.Issuing.Unlock(ctx, p.ID, cardID)
	return directErr("unlocking card", err)
}

// Remove implements Issuer.
func (d *DirectIssuer) Remove(ctx context.Context, p Partner, _, cardID string) error {
	return directErr("removing card", d.Issuing.Remove(ctx, p.ID, cardID))
}

// deliveryJSON is the delivery address of every simulated plastic.
const deliveryJSON = `{"name":"Sim User","line1":"Simulatorstrasse 1","city":"Berlin","postalCode":"10115","country":"DE"}`

// SetCardControls implements Issuer.
func (d *DirectIssuer) SetCardControls(ctx context.Context, p Partner, _, cardID, controls string) error {
	var c authz.Controls
	if err := json.Unmarshal([]byte(controls), &c); err != nil {
		return &APIError{Status: http.StatusBadRequest, Code: "MALFORMED_JSON", Op: "setting card controls", Message: err.Error()}
	}
	c.Normalize()
	if err := c.Validate(); err != nil {
		return &APIError{Status: http.StatusBadRequest, Code: "VALIDATION_ERROR", Op: "setting card controls", Message: err.Error()}
	}
	return directErr("setting card controls", d.Ledger.SetCardControls(ctx, p.ID, cardID, &c, nil))
}

// SetRemote implements Issuer.
func (d *DirectIssuer) SetRemote(ctx context.Context, p Partner, url string, standIn authz.StandIn, timeoutMS int64) (string, error) {
	l := d.Ledger
	prog, err := l.Program(ctx, p.ID, ledger.DefaultProgramID(p.ID))
	if err != nil {
		return "", directErr("reading program", err)
	}
	prog.RemoteURL, prog.StandIn, prog.DecisionTimeoutMS = url, standIn, timeoutMS
	if err := prog.Validate(); err != nil {
		return "", &APIError{Status: http.StatusBadRequest, Code: "VALIDATION_ERROR", Op: "setting the program's backend", Message: err.Error()}
	}
	if prog.RemoteSecret == "" {
		prog.RemoteSecret = "sim-" + randomDigits(24)
	}
	return prog.RemoteSecret, directErr("setting the program's backend", l.UpdateProgram(ctx, prog))
}
