package panel

import (
	"errors"
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"

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
	PINSet                        bool
	PartnerID, First6, MaskedPan  string
	LockSource, Currency          string
}

// Masked is the PAN as an admin may see it: first 6 and last 4 digits.
func (c card) Masked() string {
	if c.First6 == "" {
		return "•••• •••• •••• " + c.Last4
	}
	return c.First6[:4] + " " + c.First6[4:] + "•• •••• " + c.Last4
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

type hold struct {
	ID, State, Currency                   string
	Requested, Amount, Captured, Released int64
	ApprovalCode, Reference               string
	CreatedAt                             time.Time
	ClosedAt                              *time.Time
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
	"lower": strings.ToLower,
	"badge": func(s string) string {
		switch s {
		case "ACTIVE", "VERIFIED", "APPROVED", "CAPTURED", "POSTED", "OPEN", "PENDING_HOLD":
			return "ok"
		case "LOCKED", "REJECTED", "DECLINED":
			return "bad"
		case "REMOVED", "NONE", "VOIDED", "EXPIRED", "RELEASED":
			return "muted"
		}
		return "info"
	},
	"reasons": lockReasons,
	"add":     func(a, b int) int { return a + b },
	"sub":     func(a, b int) int { return a - b },
	"hint":    amountHint,
	"list":    func(xs ...string) []string { return xs },
	"split": func(s string) []string {
		k, v, _ := strings.Cut(s, ":")
		return []string{k, v}
	},
}
