package authz

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Interval is the window of a spend limit (docs/controls.md).
type Interval string

const (
	IntervalDay     Interval = "day"   // calendar day in the program's time zone
	IntervalWeek    Interval = "week"  // ISO week, Monday to Sunday, in the program's time zone
	IntervalMonth   Interval = "month" // calendar month in the program's time zone
	IntervalAllTime Interval = "all_time"
)

// Intervals lists the intervals in the order answers show them.
var Intervals = []Interval{IntervalDay, IntervalWeek, IntervalMonth, IntervalAllTime}

// Channels a transaction comes through (docs/controls.md, "Channel").
const (
	ChannelATM         = "atm"
	ChannelEcommerce   = "ecommerce"
	ChannelContactless = "contactless"
	ChannelPOS         = "pos"
)

var knownChannels = []string{ChannelATM, ChannelEcommerce, ChannelContactless, ChannelPOS}

// Limit caps what a card spends (Amount, minor units) and how many
// authorizations it makes (Count) in one window of Interval; 0 is no cap.
type Limit struct {
	Interval Interval `json:"interval"`
	Amount   int64    `json:"amount,omitempty"`
	Count    int64    `json:"count,omitempty"`
}

// Controls are the spend controls of a card or, as the default of its
// cards, of a program.
type Controls struct {
	// PerTransactionMax declines a single authorization above it (0: none).
	PerTransactionMax int64    `json:"per_transaction_max,omitempty"`
	Limits            []Limit  `json:"limits,omitempty"`
	MCCAllow          []string `json:"mcc_allow,omitempty"`
	MCCBlock          []string `json:"mcc_block,omitempty"`
	CountriesBlock    []string `json:"countries_block,omitempty"`
	ChannelsBlock     []string `json:"channels_block,omitempty"`
}

// ErrInvalidControls says a controls body breaks a rule; the message says which.
var ErrInvalidControls = errors.New("invalid controls")

// FieldError is a validation error about one field of a body: Field is its
// JSON name, dotted below the top level ("controls.mcc_block"); Err wraps
// the sentinel (ErrInvalidControls, ErrInvalidProgram) and says what is
// wrong.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ErrLoosens says a change would allow what the controls in force decline.
var ErrLoosens = errors.New("the change loosens the controls in force")

// IsZero reports whether the controls restrict nothing.
func (c Controls) IsZero() bool {
	return c.PerTransactionMax == 0 && len(c.Limits) == 0 && len(c.MCCAllow) == 0 && len(c.MCCBlock) == 0 &&
		len(c.CountriesBlock) == 0 && len(c.ChannelsBlock) == 0
}

// Normalize sorts and upper-cases the lists and orders the limits, so that
// equal controls encode equally.
func (c *Controls) Normalize() {
	up := func(s []string) []string {
		out := make([]string, 0, len(s))
		for _, v := range s {
			out = append(out, strings.ToUpper(strings.TrimSpace(v)))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	low := func(s []string) []string {
		out := make([]string, 0, len(s))
		for _, v := range s {
			out = append(out, strings.ToLower(strings.TrimSpace(v)))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	c.MCCAllow, c.MCCBlock = up(c.MCCAllow), up(c.MCCBlock)
	c.CountriesBlock, c.ChannelsBlock = up(c.CountriesBlock), low(c.ChannelsBlock)
	slices.SortFunc(c.Limits, func(a, b Limit) int {
		return slices.Index(Intervals, a.Interval) - slices.Index(Intervals, b.Interval)
	})
}

// Validate checks the controls: amounts within MaxAmount, one limit per
// interval, four-digit MCCs, alpha-2 countries, known channels.
func (c Controls) Validate() error {
	bad := func(field, f string, a ...any) error {
		return &FieldError{Field: field, Err: fmt.Errorf("%w: %s", ErrInvalidControls, fmt.Sprintf(f, a...))}
	}
	if c.PerTransactionMax < 0 || c.PerTransactionMax > MaxAmount {
		return bad("per_transaction_max", "per_transaction_max must be 0 to %d", MaxAmount)
	}
	seen := map[Interval]bool{}
	for _, l := range c.Limits {
		if !slices.Contains(Intervals, l.Interval) {
			return bad("limits", "limit interval %q is not one of day, week, month, all_time", l.Interval)
		}
		if seen[l.Interval] {
			return bad("limits", "two limits for interval %s", l.Interval)
		}
		seen[l.Interval] = true
		if l.Amount < 0 || l.Amount > MaxAmount || l.Count < 0 || l.Count > 1_000_000_000 {
			return bad("limits", "limit %s: amount must be 0 to %d and count 0 to 1000000000", l.Interval, MaxAmount)
		}
		if l.Amount == 0 && l.Count == 0 {
			return bad("limits", "limit %s sets neither amount nor count", l.Interval)
		}
	}
	if len(c.MCCAllow)+len(c.MCCBlock)+len(c.CountriesBlock)+len(c.ChannelsBlock) > 500 {
		return bad("", "at most 500 list entries")
	}
	for _, list := range []struct {
		field string
		mccs  []string
	}{{"mcc_allow", c.MCCAllow}, {"mcc_block", c.MCCBlock}} {
		for _, m := range list.mccs {
			if len(m) != 4 || !digits(m) {
				return bad(list.field, "MCC %q is not four digits", m)
			}
		}
	}
	for _, cc := range c.CountriesBlock {
		if len(cc) != 2 || !isUpperAlpha(cc) {
			return bad("countries_block", "country %q is not an ISO 3166-1 alpha-2 code", cc)
		}
	}
	for _, ch := range c.ChannelsBlock {
		if !slices.Contains(knownChannels, ch) {
			return bad("channels_block", "channel %q is not one of atm, ecommerce, contactless, pos", ch)
		}
	}
	return nil
}

func isUpperAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return s != ""
}

// Limit returns the limit of an interval (ok false when there is none).
func (c Controls) Limit(iv Interval) (Limit, bool) {
	for _, l := range c.Limits {
		if l.Interval == iv {
			return l, true
		}
	}
	return Limit{}, false
}

// CheckTightens reports ErrLoosens when next would let through anything
// that c (the controls in force) declines: a customer may only tighten.
func (c Controls) CheckTightens(next Controls) error {
	loosens := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrLoosens, fmt.Sprintf(f, a...)) }
	capped := func(old, new int64) bool { return old == 0 || (new > 0 && new <= old) }
	if !capped(c.PerTransactionMax, next.PerTransactionMax) {
		return loosens("per_transaction_max")
	}
	for _, l := range c.Limits {
		n, ok := next.Limit(l.Interval)
		if !ok || !capped(l.Amount, n.Amount) || !capped(l.Count, n.Count) {
			return loosens("limit %s", l.Interval)
		}
	}
	if len(c.MCCAllow) > 0 {
		if len(next.MCCAllow) == 0 {
			return loosens("mcc_allow")
		}
		for _, m := range next.MCCAllow {
			if !slices.Contains(c.MCCAllow, m) {
				return loosens("mcc_allow adds %s", m)
			}
		}
	}
	for _, pair := range [][2][]string{{c.MCCBlock, next.MCCBlock}, {c.CountriesBlock, next.CountriesBlock}, {c.ChannelsBlock, next.ChannelsBlock}} {
		for _, v := range pair[0] {
			if !slices.Contains(pair[1], v) {
				return loosens("a block list drops %s", v)
			}
		}
	}
	return nil
}

// Facts are what the controls look at in one authorization.
type Facts struct {
	Amount  int64  // in the card's currency
	MCC     string // DE18, "" when absent
	Country string // alpha-2, "" when unknown (no DE43 country, no DE19)
	Channel string // "" when unknown (no DE22 on a purchase)
}

// FactsOf derives the facts of a request.
func FactsOf(req *Request, amount int64) Facts {
	return Facts{Amount: amount, MCC: req.MCC, Country: CountryOf(req), Channel: ChannelOf(req)}
}

// StaticReason is the decline of the controls that need no window: the
// per-transaction maximum, MCC allow and block lists, countries and
// channels ("" when they let the transaction through). A fact that is
// absent passes a block list and fails an allow list (docs/controls.md).
func (c Controls) StaticReason(f Facts) Reason {
	if c.PerTransactionMax > 0 && f.Amount > c.PerTransactionMax {
		return ReasonControlTransactionMax
	}
	if len(c.MCCAllow) > 0 && !slices.Contains(c.MCCAllow, f.MCC) {
		return ReasonControlMCC
	}
	if f.MCC != "" && slices.Contains(c.MCCBlock, f.MCC) {
		return ReasonControlMCC
	}
	if f.Country != "" && slices.Contains(c.CountriesBlock, f.Country) {
		return ReasonControlCountry
	}
	if f.Channel != "" && slices.Contains(c.ChannelsBlock, f.Channel) {
		return ReasonControlChannel
	}
	return ""
}

// ChannelOf tells the channel of a request: cash (DE3 01) is atm; else the
// PAN entry mode, the first two digits of DE22: 01 (keyed), 10 (credential
// on file) and 81 (e-commerce) are ecommerce, 07 and 91 contactless, 02,
// 05, 80, 90 and 95 pos. Anything else, or no DE22, is unknown ("").
func ChannelOf(req *Request) string {
	if req.TxnType == TxnCash {
		return ChannelATM
	}
	if len(req.POSEntryMode) < 2 {
		return ""
	}
	switch req.POSEntryMode[:2] {
	case "01", "10", "81":
		return ChannelEcommerce
	case "07", "91":
		return ChannelContactless
	case "02", "05", "80", "90", "95":
		return ChannelPOS
	}
	return ""
}

// CountryOf tells the merchant's country, alpha-2: the last two characters
// of a full 40-character DE43 (name 25, city 13, country 2) when they are
// letters, else DE19 (acquiring institution country, numeric), else "".
func CountryOf(req *Request) string {
	if req.MerchantCountry != "" {
		return req.MerchantCountry
	}
	return countryNumeric[req.AcquirerCountry]
}

// CountryFromDE43 extracts the country of a raw 40-character DE43 ("" when
// it carries none).
func CountryFromDE43(raw string) string {
	if len(raw) != 40 {
		return ""
	}
	cc := strings.ToUpper(raw[38:])
	if !isUpperAlpha(cc) {
		return ""
	}
	return cc
}

// Window is one window of an interval: its id (part of the counter's
// key) and its end (zero for all_time).
type Window struct {
	Interval Interval
	ID       string
	End      time.Time
}

// WindowOf returns the window of an interval that holds now, in loc.
func WindowOf(iv Interval, now time.Time, loc *time.Location) Window {
	if loc == nil {
		loc = time.UTC
	}
	t := now.In(loc)
	y, m, d := t.Date()
	switch iv {
	case IntervalDay:
		start := time.Date(y, m, d, 0, 0, 0, 0, loc)
		return Window{iv, "d" + start.Format("20060102"), start.AddDate(0, 0, 1)}
	case IntervalWeek:
		wd := (int(t.Weekday()) + 6) % 7 // Monday 0
		start := time.Date(y, m, d-wd, 0, 0, 0, 0, loc)
		iy, iw := start.ISOWeek()
		return Window{iv, fmt.Sprintf("w%04d%02d", iy, iw), start.AddDate(0, 0, 7)}
	case IntervalMonth:
		start := time.Date(y, m, 1, 0, 0, 0, 0, loc)
		return Window{iv, "m" + start.Format("200601"), start.AddDate(0, 1, 0)}
	}
	return Window{Interval: IntervalAllTime, ID: "a"}
}

// WindowSpec encodes the windows of every interval that holds now for
// the reservation script: "interval=id:end_ms" joined by commas.
func WindowSpec(now time.Time, loc *time.Location) string {
	var b strings.Builder
	for i, iv := range Intervals {
		w := WindowOf(iv, now, loc)
		if i > 0 {
			b.WriteByte(',')
		}
		end := int64(0)
		if !w.End.IsZero() {
			end = w.End.UnixMilli()
		}
		b.WriteString(string(iv) + "=" + w.ID + ":" + strconv.FormatInt(end, 10))
	}
	return b.String()
}

// WindowUsage is what a card spent and counted in the current window of
// a limit, and what remains (nil when the limit does not cap it).
type WindowUsage struct {
	Interval        Interval   `json:"interval"`
	Window          string     `json:"window"`
	ResetsAt        *time.Time `json:"resetsAt,omitempty"`
	Spent           int64      `json:"spent"`
	Count           int64      `json:"count"`
	Amount          int64      `json:"amount,omitempty"`
	CountLimit      int64      `json:"countLimit,omitempty"`
	RemainingAmount *int64     `json:"remainingAmount,omitempty"`
	RemainingCount  *int64     `json:"remainingCount,omitempty"`
}
