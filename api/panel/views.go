package panel

import (
	"errors"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/authz"
)

// What the pages read from the /admin API (api/openapi.yaml).

type summary struct {
	Currency                string
	Users, Partners, Wallet int64
}

type partner struct {
	ID, Name, BIN, Currency, FundingModel string
	CreatedAt                             time.Time
}

type partnerBalance struct {
	ID, PartnerID, Type, Currency string
	Available, Reserved, Settled  int64
	LowBalanceThreshold           int64
	State                         string
}

// Low reports a balance under its alert threshold.
func (b partnerBalance) Low() bool {
	return b.LowBalanceThreshold > 0 && b.Available < b.LowBalanceThreshold
}

type customer struct {
	ID, PartnerID, ExternalID, FirstName, LastName, Email, Phone, KYCStatus string
	CreatedAt                                                               time.Time
}

type card struct {
	ID, Type, Status              string
	LockReason                    int
	Last4, Expiry                 string
	BalanceID, CustomerID, CopyOf string
	// ProgramID is the program the card belongs to: the API names the
	// partner's default program for a card issued without one.
	ProgramID                    string
	PINSet                       bool
	PartnerID, First6, MaskedPan string
	LockSource, Currency         string
	LockReference, DeliveryState string
	Replaces, ReplacedBy         string
}

// Masked is the PAN as an admin may see it: first 6 and last 4 digits.
func (c card) Masked() string {
	if c.First6 == "" {
		return "•••• •••• •••• " + c.Last4
	}
	return c.First6[:4] + " " + c.First6[4:] + "•• •••• " + c.Last4
}

// DefaultProgram reports a card of its partner's default program.
func (c card) DefaultProgram() bool {
	return c.PartnerID != "" && c.ProgramID == authz.DefaultProgramID(c.PartnerID)
}

// Locked reports a lock (any reason).
func (c card) Locked() bool { return c.LockReason > 0 }

// Irreversible reports a lock that can never be lifted.
func (c card) Irreversible() bool { return authz.LockReason(c.LockReason).Irreversible() }

// LockName is the lock reason in words.
func (c card) LockName() string { return lockName(c.LockReason) }

// State is the card's badge text: the status, or LOCKED.
func (c card) State() string {
	if c.Locked() && c.Status != string(authz.StatusRemoved) {
		return "LOCKED"
	}
	return c.Status
}

type balance struct {
	ID, CustomerID, Currency string
	Available, Held          int64
	State                    string
	Cards                    []card
}

type authorization struct {
	Seq                                          int64
	At                                           time.Time
	Type, Reason                                 string
	Approved                                     bool
	MTI                                          string
	Amount                                       int64
	Currency, STAN, RRN, Terminal, Merchant, MCC string
	Code                                         string // DE39, filled by the panel
	Money                                        string // the amount with its currency, filled by the panel
}

// transaction is the API's Transaction (api/README.md, "Transactions"),
// with its events explained for the detail page.
type transaction struct {
	api.Transaction
	History []txnHistory `json:"-"` // filled by the panel
}

// txnHistory is one event of a transaction as the detail page shows it.
type txnHistory struct {
	api.TxnEvent
	Title   string // the event in words
	Explain string // what it did to the money
	Held    int64  // still held on the balance after the event
	Sign    string // "+", "−" or "" for the held column
}

// Open is what the transaction still holds on the balance.
func (t transaction) Open() int64 {
	if t.Type != "authorization" || t.Status == "declined" {
		return 0
	}
	return max(t.ApprovedAmount-t.CapturedAmount-t.ReleasedAmount, 0)
}

// Title is the type with a capital letter.
func (t transaction) Title() string {
	if t.Type == "" {
		return "Transaction"
	}
	return strings.ToUpper(t.Type[:1]) + t.Type[1:]
}

// StatusText is the status in words.
func (t transaction) StatusText() string { return strings.ReplaceAll(t.Status, "_", " ") }

// history explains the events oldest first: each with what the hold
// still held after it.
func (t transaction) history() []txnHistory {
	var out []txnHistory
	var held int64
	for i, e := range t.Events {
		h := txnHistory{TxnEvent: e}
		switch e.Type {
		case "authorized":
			held += e.Amount
			h.Title, h.Sign = "Authorization approved", "+"
			h.Explain = "The amount was put on hold on the balance."
			if i > 0 {
				h.Title = "Further authorization approved"
			}
		case "captured":
			// A completion closes the hold: what it did not post goes back.
			rest := held - e.Amount
			held = 0
			h.Title = "Captured"
			h.Explain = "The completion posted this amount to the balance, closing the hold."
			if rest > 0 {
				h.Title = "Captured in part"
				h.Explain = "The completion posted this amount to the balance and closed the hold; the rest, " +
					formatMoney(rest, t.Currency) + ", went back to the balance."
			}
		case "reversed":
			partial := held-e.Amount > 0
			held -= e.Amount
			h.Title, h.Sign = "Reversed", "−"
			h.Explain = "A reversal gave this amount back to the balance."
			if partial {
				h.Title = "Partial reversal"
			}
		case "expired":
			held -= e.Amount
			h.Title, h.Sign = "Expired", "−"
			h.Explain = "No completion came in time: the hold was released."
		case "cancelled":
			held -= e.Amount
			h.Title, h.Sign = "Cancelled", "−"
			h.Explain = "The approval could not be made durable in time, so the switch answered issuer unavailable and released the hold."
		case "posted":
			h.Title, h.Explain = "Posted", "A financial message (or forced post) took this amount from the balance at once."
		case "refunded":
			h.Title, h.Explain = "Refunded", "The amount was given back to the balance."
		case "declined":
			h.Title, h.Explain = "Declined", "Nothing was held or posted."
		case "reloaded":
			h.Title, h.Explain = "Balance reloaded", "The amount was added to the balance."
		default:
			h.Title = e.Type
		}
		h.Held = max(held, 0)
		out = append(out, h)
	}
	return out
}

type webhookEndpoint struct {
	ID           string     `json:"id"`
	URL          string     `json:"url"`
	Events       []string   `json:"events"`
	Status       string     `json:"status"`
	FailingSince *time.Time `json:"failing_since"`
	DisabledAt   *time.Time `json:"disabled_at"`
	CreatedAt    time.Time  `json:"created_at"`
	Secret       string     `json:"secret"`
}

type webhookDelivery struct {
	ID            string     `json:"id"`
	EventID       string     `json:"event_id"`
	EventType     string     `json:"event_type"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	LastStatus    int        `json:"last_status"`
	LastError     string     `json:"last_error"`
	CreatedAt     time.Time  `json:"created_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	LastAttemptAt *time.Time `json:"last_attempt_at"`
	DeliveredAt   *time.Time `json:"delivered_at"`
}

type reasonCount struct {
	Reason   string
	Approved bool
	Count    int64
}

type stats struct {
	Since, Until       time.Time
	Approved, Declined int64
	ByReason           []reasonCount
}

type adminUser struct {
	Username, Role, CreatedBy string
	CreatedAt                 time.Time
	Active                    bool
}

func lockName(r int) string {
	if r == 0 {
		return ""
	}
	return authz.LockReason(r).String()
}

// lockReasons lists the eight lock reasons for the lock form.
func lockReasons() []struct {
	N            int
	Name         string
	Irreversible bool
} {
	var out []struct {
		N            int
		Name         string
		Irreversible bool
	}
	for r := authz.LockLost; r <= authz.LockReplaced; r++ {
		out = append(out, struct {
			N            int
			Name         string
			Irreversible bool
		}{int(r), r.String(), r.Irreversible()})
	}
	return out
}

// exponent is the number of minor-unit digits of a currency.
func exponent(currency string) int {
	switch currency {
	case "JPY", "KRW", "ISK", "CLP", "VND":
		return 0
	}
	return 2
}

// formatMoney shows minor units as "1,234.56 EUR".
func formatMoney(minor int64, currency string) string {
	neg := minor < 0
	if neg {
		minor = -minor
	}
	exp := exponent(currency)
	div := int64(math.Pow10(exp))
	whole, frac := minor/div, minor%div
	ws := strconv.FormatInt(whole, 10)
	var b strings.Builder
	for i, ch := range ws {
		if i > 0 && (len(ws)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	s := b.String()
	if exp > 0 {
		s += fmt.Sprintf(".%0*d", exp, frac)
	}
	if neg {
		s = "−" + s
	}
	return strings.TrimSpace(s + " " + currency)
}

var errAmount = errors.New("amount")

// parseMoney reads what an admin types ("12.50", "1,000", "7") into minor units.
func parseMoney(s, currency string) (int64, error) {
	s = strings.ReplaceAll(strings.ReplaceAll(strings.TrimSpace(s), ",", ""), " ", "")
	if s == "" {
		return 0, errAmount
	}
	exp := exponent(currency)
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" {
		whole = "0"
	}
	if dot && (len(frac) == 0 || len(frac) > exp) {
		return 0, errAmount
	}
	for _, part := range []string{whole, frac} {
		for _, ch := range part {
			if ch < '0' || ch > '9' {
				return 0, errAmount
			}
		}
	}
	frac += strings.Repeat("0", exp-len(frac))
	if len(whole) > 13 {
		return 0, errAmount
	}
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil || n <= 0 {
		return 0, errAmount
	}
	return n, nil
}

func amountHint(currency string) string {
	if exponent(currency) == 0 {
		return "a whole amount, e.g. 500"
	}
	return "an amount such as 25 or 12.50"
}

var funcs = template.FuncMap{
	"money": formatMoney,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
	},
	"whenp": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
	},
	// stamp shows a time the API gives as text: Unix milliseconds (a
	// program's createdAt) or RFC 3339.
	"stamp": func(s string) string {
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms > 0 {
			return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05") + " UTC"
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
		}
		return s
	},
	"lower": strings.ToLower,
	"badge": func(s string) string {
		switch s {
		case "ACTIVE", "VERIFIED", "APPROVED", "CAPTURED", "POSTED", "OPEN", "PENDING_HOLD",
			"captured", "partially_captured", "completed", "delivered", "enabled":
			return "ok"
		case "LOCKED", "REJECTED", "DECLINED", "declined", "failed", "failing":
			return "bad"
		case "REMOVED", "NONE", "VOIDED", "EXPIRED", "RELEASED", "reversed", "expired", "disabled":
			return "muted"
		}
		return "info"
	},
	"reasons": lockReasons,
	"add":     func(a, b int) int { return a + b },
	"sub":     func(a, b int) int { return a - b },
	"hint":    amountHint,
	"list":    func(xs ...string) []string { return xs },
	"has":     func(xs []string, x string) bool { return slices.Contains(xs, x) },
	"split": func(s string) []string {
		k, v, _ := strings.Cut(s, ":")
		return []string{k, v}
	},
}
