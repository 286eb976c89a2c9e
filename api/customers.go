package api

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
)

var (
	currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)
	phoneRE    = regexp.MustCompile(`^\+?[0-9][0-9 ]{4,19}$`)
	emailRE    = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
)

// KYC statuses a partner or admin may set. NONE is where a customer starts.
var kycStatuses = map[string]bool{"PENDING": true, "VERIFIED": true, "REJECTED": true}

func checkText(field, v string, required bool, max int) error {
	if required && strings.TrimSpace(v) == "" {
		return invalid(field, field+" is required")
	}
	if utf8.RuneCountInString(v) > max {
		return invalid(field, fmt.Sprintf("%s is at most %d characters", field, max))
	}
	return nil
}

// POST /secure/customers, POST /admin/partners/{partnerId}/customers
func (s *Server) createCustomer(c *call) (int, any, error) {
	p, err := c.partner()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		ExternalID string `json:"externalId"`
		FirstName  string `json:"firstName"`
		LastName   string `json:"lastName"`
		Email      string `json:"email"`
		Phone      string `json:"phone"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	for _, e := range []error{
		checkText("externalId", in.ExternalID, false, 100), checkText("firstName", in.FirstName, true, 100),
		checkText("lastName", in.LastName, true, 100), checkText("email", in.Email, false, 254),
	} {
		if e != nil {
			return 0, nil, e
		}
	}
	if in.Email != "" && !emailRE.MatchString(in.Email) {
		return 0, nil, invalid("email", "email is not an e-mail address")
	}
	if in.Phone != "" && !phoneRE.MatchString(in.Phone) {
		return 0, nil, invalid("phone", "phone must be digits, optionally with a leading + (5 to 20)")
	}
	cust := ledger.Customer{ID: ledger.NewID("cus"), PartnerID: p.ID, ExternalID: in.ExternalID,
		FirstName: in.FirstName, LastName: in.LastName, Email: in.Email, Phone: in.Phone}
	if err := s.cfg.Ledger.CreateCustomer(c.ctx, cust); err != nil {
		return 0, nil, err
	}
	if cust, err = s.cfg.Ledger.Customer(c.ctx, cust.PartnerID, cust.ID); err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, customerOf(cust), nil
}

// GET /customers/me, /secure/customers/{customerId}, /admin/customers/{customerId}
func (s *Server) getCustomer(c *call) (int, any, error) {
	cust, err := c.customer()
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, customerOf(cust), nil
}

// POST /customers/me/register, /secure/customers/{customerId}/register:
// starts KYC (status PENDING, 202). With a KYC provider configured the
// customer's data goes to it (kyc.go) and the answer shows the check;
// without one, or besides it, the result arrives with PUT .../kyc. A
// verified customer stays verified (409 KYC_ALREADY_VERIFIED).
func (s *Server) startKYC(c *call) (int, any, error) {
	cust, err := c.customer()
	if err != nil {
		return 0, nil, err
	}
	if cust.KYCStatus == "VERIFIED" {
		return 0, nil, apiErr(http.StatusConflict, "KYC_ALREADY_VERIFIED", "the customer's KYC is already verified")
	}
	if err := s.cfg.Ledger.SetKYC(c.ctx, cust.PartnerID, cust.ID, "PENDING"); err != nil {
		return 0, nil, err
	}
	cust.KYCStatus = "PENDING"
	out := registerView{customerView: customerOf(cust)}
	if s.cfg.KYCProviderURL != "" && s.noticesOn() {
		if out.KYCCheck, err = s.startProviderKYC(c, cust); err != nil {
			return 0, nil, err
		}
		// The provider may have answered at once.
		if now, err := s.cfg.Ledger.Customer(c.ctx, cust.PartnerID, cust.ID); err == nil {
			out.KYCStatus = now.KYCStatus
		}
	}
	return http.StatusAccepted, out, nil
}

// PUT /secure/customers/{customerId}/kyc, /admin/customers/{customerId}/kyc
func (s *Server) setKYC(c *call) (int, any, error) {
	cust, err := c.customer()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		Status string `json:"status"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if !kycStatuses[in.Status] {
		return 0, nil, invalid("status", "status must be VERIFIED, REJECTED or PENDING")
	}
	if err := s.cfg.Ledger.SetKYC(c.ctx, cust.PartnerID, cust.ID, in.Status); err != nil {
		return 0, nil, err
	}
	// The status is set here: a check open at the provider no longer decides.
	if s.noticesOn() {
		if err := s.kyc.CancelOpen(c.ctx, cust.PartnerID, cust.ID); err != nil {
			return 0, nil, err
		}
	}
	cust.KYCStatus = in.Status
	return http.StatusOK, customerOf(cust), nil
}

// POST /customers/me/balances, /secure/customers/{customerId}/balances
func (s *Server) createBalance(c *call) (int, any, error) {
	cust, err := c.customer()
	if err != nil {
		return 0, nil, err
	}
	pid := cust.PartnerID
	var in struct {
		Currency string `json:"currency"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if !currencyRE.MatchString(in.Currency) {
		return 0, nil, invalid("currency", "currency must be an ISO 4217 alpha code, e.g. EUR")
	}
	id := ledger.NewID("bal")
	if err := s.cfg.Ledger.CreateUserBalance(c.ctx, pid, cust.ID, id, in.Currency); err != nil {
		return 0, nil, err
	}
	b, err := s.cfg.Ledger.UserBalance(c.ctx, pid, id)
	if err != nil {
		return 0, nil, err
	}
	v, err := s.balanceView(c, b)
	return http.StatusCreated, v, err
}

// GET .../balances: the customer's balances with their cards, oldest first.
func (s *Server) listBalances(c *call) (int, any, error) {
	_, bs, err := s.customerBalances(c)
	if err != nil {
		return 0, nil, err
	}
	out := make([]balanceView, 0, len(bs))
	for _, b := range bs {
		v, err := s.balanceView(c, b)
		if err != nil {
			return 0, nil, err
		}
		out = append(out, v)
	}
	return http.StatusOK, map[string]any{"balances": out}, nil
}

// backfillCustomerBalances adds to a customer's balance set the balances
// Postgres holds for it (a Redis that kept data from before the set), and
// reads the set again. Postgres unreachable: the set as it is.
// customerBalances returns the partner of the caller's customer and the
// customer's balances. Balances created before the per-customer set
// existed are only in the rows: when the set is empty, Postgres is asked
// and the set repaired.
func (s *Server) customerBalances(c *call) (string, []ledger.UserBalance, error) {
	cust, err := c.customer()
	if err != nil {
		return "", nil, err
	}
	pid := cust.PartnerID
	bs, err := s.cfg.Ledger.CustomerBalances(c.ctx, pid, cust.ID)
	if err != nil {
		return "", nil, err
	}
	if len(bs) == 0 {
		if bs, err = s.backfillCustomerBalances(c, pid, cust.ID); err != nil {
			return "", nil, err
		}
	}
	return pid, bs, nil
}

// customerCard is one card of a customer with its view and its balance.
type customerCard struct {
	raw     ledger.Card
	view    issuing.Card
	balance ledger.UserBalance
}

// customerCardsOf returns the partner of the caller's customer and every
// card of the customer's balances, ordered by id.
func (s *Server) customerCardsOf(c *call) (string, []customerCard, error) {
	pid, bs, err := s.customerBalances(c)
	if err != nil {
		return "", nil, err
	}
	var out []customerCard
	for _, b := range bs {
		cards, err := s.cfg.Ledger.CardsOfBalance(c.ctx, pid, b.ID)
		if err != nil {
			return "", nil, err
		}
		for _, k := range cards {
			v, err := s.cfg.Issuing.View(c.ctx, k)
			if err != nil {
				return "", nil, err
			}
			out = append(out, customerCard{raw: k, view: v, balance: b})
		}
	}
	slices.SortFunc(out, func(a, b customerCard) int { return strings.Compare(a.view.ID, b.view.ID) })
	return pid, out, nil
}

func (s *Server) backfillCustomerBalances(c *call, partnerID, customerID string) ([]ledger.UserBalance, error) {
	rows, err := s.cfg.DB.Query(c.ctx, `SELECT id FROM user_balances WHERE partner_id = $1 AND customer_id = $2`, partnerID, customerID)
	if err != nil {
		s.log.WarnContext(c.ctx, "reading a customer's balances from postgres", "err", err)
		return nil, nil
	}
	var ids []string
	for rows.Next() {
		var id string
		if err = rows.Scan(&id); err != nil {
			break
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		s.log.WarnContext(c.ctx, "reading a customer's balances from postgres", "err", err)
		return nil, nil
	}
	if len(ids) == 0 {
		return nil, nil
	}
	if err := s.cfg.Ledger.AddCustomerBalances(c.ctx, partnerID, customerID, ids...); err != nil {
		return nil, err
	}
	return s.cfg.Ledger.CustomerBalances(c.ctx, partnerID, customerID)
}

// GET .../balances/{balanceId}: the balance and its cards.
func (s *Server) getBalance(c *call) (int, any, error) {
	b, err := c.balance()
	if err != nil {
		return 0, nil, err
	}
	v, err := s.balanceView(c, b)
	return http.StatusOK, v, err
}

// maxAmount bounds one reload and a low-balance threshold: authz.MaxAmount
// (10^12 - 1 minor units), the most the 12-digit ISO 8583 amount fields
// carry. The ledger keeps balances under the same bound.
const maxAmount = authz.MaxAmount

var errAmountTooLarge = &Error{Status: http.StatusBadRequest, Code: "AMOUNT_TOO_LARGE", Field: "amount",
	Message: fmt.Sprintf("amount must be at most %d minor units (12 digits, the ISO 8583 amount field)", maxAmount)}

type amountInput struct {
	Amount   *int64 `json:"amount"`
	Currency string `json:"currency"`
}

// read decodes and checks {"amount", "currency"?} against the balance's currency.
func (in *amountInput) read(c *call, currency string) error {
	if err := c.decode(in); err != nil {
		return err
	}
	if in.Amount == nil {
		return invalid("amount", "amount is required (integer, minor units)")
	}
	if *in.Amount <= 0 {
		return &Error{Status: http.StatusBadRequest, Code: "INVALID_AMOUNT", Field: "amount",
			Message: fmt.Sprintf("amount must be an integer from 1 to %d (minor units)", maxAmount)}
	}
	if *in.Amount > maxAmount {
		return errAmountTooLarge
	}
	if in.Currency != "" && in.Currency != currency {
		return &Error{Status: http.StatusBadRequest, Code: "CURRENCY_MISMATCH", Field: "currency",
			Message: "currency differs from the balance's " + currency}
	}
	return nil
}

// idempotencyKey reads the Idempotency-Key header, scoped to the balance
// so that one key cannot replay an answer of another balance (the ledger
// keeps keys per partner).
func idempotencyKey(c *call, balanceID string) (string, error) {
	k := c.r.Header.Get("Idempotency-Key")
	if k == "" {
		return "", nil
	}
	if err := checkIdempotencyKey(k); err != nil {
		return "", err
	}
	return "api:" + balanceID + ":" + k, nil
}

// POST .../balances/{balanceId}/reload. In the CREDIT model it charges the
// partner credit balance (409 INSUFFICIENT_PARTNER_FUNDS, nothing changed,
// when that is short).
func (s *Server) reloadBalance(c *call) (int, any, error) {
	b, err := c.balance()
	if err != nil {
		return 0, nil, err
	}
	var in amountInput
	if err := in.read(c, b.Currency); err != nil {
		return 0, nil, err
	}
	key, err := idempotencyKey(c, b.ID)
	if err != nil {
		return 0, nil, err
	}
	nb, change, err := s.cfg.Ledger.ReloadUserBalance(c.ctx, b.PartnerID, b.ID, *in.Amount, key)
	if err != nil {
		return 0, nil, err
	}
	s.partnerBalanceChanged(c, b.PartnerID, change)
	v, err := s.balanceView(c, nb)
	return http.StatusOK, v, err
}
