package authz

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// BINRange is a range of PAN prefixes of one length (6 to 8 digits),
// From and To included.
type BINRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// ErrInvalidProgram says a program breaks a rule; the message says which.
var ErrInvalidProgram = errors.New("invalid program")

// Validate checks one range: equal lengths of 6 to 8 digits, From <= To.
func (r BINRange) Validate() error {
	if len(r.From) < 6 || len(r.From) > 8 || !digits(r.From) || len(r.To) != len(r.From) || !digits(r.To) {
		return fmt.Errorf("%w: BIN range %s-%s: from and to must be PAN prefixes of the same length, 6 to 8 digits", ErrInvalidProgram, r.From, r.To)
	}
	if r.From > r.To {
		return fmt.Errorf("%w: BIN range %s-%s: from is above to", ErrInvalidProgram, r.From, r.To)
	}
	return nil
}

// span is the range as 8-digit prefixes: the PANs it covers are exactly
// those whose first 8 digits lie in [lo, hi].
func (r BINRange) span() (lo, hi string) {
	pad := 8 - len(r.From)
	return r.From + strings.Repeat("0", pad), r.To + strings.Repeat("9", pad)
}

// Overlaps reports whether some PAN falls in both ranges.
func (r BINRange) Overlaps(o BINRange) bool {
	alo, ahi := r.span()
	blo, bhi := o.span()
	return alo <= bhi && blo <= ahi
}

// Contains reports whether the PAN falls in the range.
func (r BINRange) Contains(pan string) bool {
	n := len(r.From)
	if len(pan) < n {
		return false
	}
	p := pan[:n]
	return p >= r.From && p <= r.To
}

// Stand-in policies: what decides when the partner's backend does not
// answer in time, answers garbage, or its circuit is open.
const (
	StandInDecline         = "decline"
	StandInApprove         = "approve"
	StandInApproveIfFunded = "approve_if_funded"
)

// StandIn is a program's stand-in policy. With approve, transactions up
// to Amount are approved as the partner would have, funding what the user
// balance lacks from the partner balance (as a reload would); larger ones
// are declined.
type StandIn struct {
	Policy string `json:"policy"`
	Amount int64  `json:"amount,omitempty"`
}

// Program is a card program of a partner: its currency, BIN ranges, the
// card types it issues, its default spend controls and, optionally, the
// partner's backend that takes part in every authorization.
type Program struct {
	ID        string     `json:"id"`
	PartnerID string     `json:"partnerId"`
	Name      string     `json:"name"`
	Currency  string     `json:"currency"`
	Ranges    []BINRange `json:"binRanges"`
	CardTypes []CardType `json:"cardTypes"`
	// DigitalFirst lets the program print digital-first copies of its
	// virtual cards.
	DigitalFirst bool `json:"digitalFirst"`
	// TimeZone is the IANA zone of the day, week and month windows of
	// its controls ("" is UTC).
	TimeZone          string   `json:"timeZone,omitempty"`
	Controls          Controls `json:"controls"`
	RemoteURL         string   `json:"remoteUrl,omitempty"`
	DecisionTimeoutMS int64    `json:"decisionTimeoutMs,omitempty"`
	StandIn           StandIn  `json:"standIn"`
	// RemoteSecret signs the requests to RemoteURL (shown only when made).
	RemoteSecret string `json:"remoteSecret,omitempty"`
	CreatedAt    string `json:"createdAt,omitempty"`
	// Version is the program row's version.
	Version int64 `json:"-"`
}

// MaxDecisionTimeout bounds decision_timeout_ms: the partner's answer must
// come well inside the ISO deadline, which also pays for Antaca's own work.
const MaxDecisionTimeout = 5 * time.Second

// DefaultDecisionTimeout is decision_timeout_ms when the program sets none.
const DefaultDecisionTimeout = 1500 * time.Millisecond

// Location is the program's time zone (UTC when unset or unknown).
func (p Program) Location() *time.Location {
	if p.TimeZone == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(p.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// DecisionTimeout is the window the partner has to answer.
func (p Program) DecisionTimeout() time.Duration {
	if p.DecisionTimeoutMS <= 0 {
		return DefaultDecisionTimeout
	}
	return time.Duration(p.DecisionTimeoutMS) * time.Millisecond
}

// Issues reports whether the program issues cards of type t (every type
// when the program names none).
func (p Program) Issues(t CardType) bool {
	return len(p.CardTypes) == 0 || slices.Contains(p.CardTypes, t)
}

// Validate checks a program: name, currency, ranges (valid, not
// overlapping each other), card types, controls, remote URL and stand-in.
// Overlap with other programs is checked where all ranges are known.
func (p *Program) Validate() error {
	bad := func(field, f string, a ...any) error {
		return &FieldError{Field: field, Err: fmt.Errorf("%w: %s", ErrInvalidProgram, fmt.Sprintf(f, a...))}
	}
	if strings.TrimSpace(p.Name) == "" || len(p.Name) > 200 {
		return bad("name", "name must be 1 to 200 characters")
	}
	if !KnownCurrency(p.Currency) {
		return bad("currency", "currency %q is not a supported ISO 4217 alpha code", p.Currency)
	}
	if len(p.Ranges) > 50 {
		return bad("binRanges", "at most 50 BIN ranges")
	}
	for i, r := range p.Ranges {
		if err := r.Validate(); err != nil {
			return &FieldError{Field: "binRanges", Err: err}
		}
		for _, o := range p.Ranges[:i] {
			if r.Overlaps(o) {
				return bad("binRanges", "BIN ranges %s-%s and %s-%s overlap", r.From, r.To, o.From, o.To)
			}
		}
	}
	for _, t := range p.CardTypes {
		if !t.Valid() {
			return bad("cardTypes", "card type %q is not VIRTUAL, PHYSICAL or DIGITAL_FIRST", t)
		}
	}
	if p.TimeZone != "" {
		if _, err := time.LoadLocation(p.TimeZone); err != nil {
			return bad("timeZone", "time zone %q is not an IANA zone", p.TimeZone)
		}
	}
	p.Controls.Normalize()
	if err := p.Controls.Validate(); err != nil {
		field := "controls"
		var fe *FieldError
		if errors.As(err, &fe) && fe.Field != "" {
			field += "." + fe.Field
		}
		return &FieldError{Field: field, Err: fmt.Errorf("%w: %w", ErrInvalidProgram, err)}
	}
	if p.RemoteURL != "" {
		u, err := url.Parse(p.RemoteURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(p.RemoteURL) > 2000 {
			return bad("remoteUrl", "remoteUrl must be an absolute http(s) URL")
		}
	}
	if p.DecisionTimeoutMS < 0 || time.Duration(p.DecisionTimeoutMS)*time.Millisecond > MaxDecisionTimeout {
		return bad("decisionTimeoutMs", "decisionTimeoutMs must be 0 to %d", MaxDecisionTimeout.Milliseconds())
	}
	switch p.StandIn.Policy {
	case "":
		p.StandIn.Policy = StandInDecline
	case StandInDecline, StandInApproveIfFunded:
	case StandInApprove:
		if p.StandIn.Amount <= 0 || p.StandIn.Amount > MaxAmount {
			return bad("standIn", "standIn approve needs an amount of 1 to %d", MaxAmount)
		}
	default:
		return bad("standIn", "standIn policy must be decline, approve or approve_if_funded")
	}
	return nil
}

// RouteTable finds the program of a PAN among all programs' ranges, in
// process. Ranges never overlap (CreateProgram refuses it), so at most one
// matches; the lookup still tries the longest prefixes first.
type RouteTable struct {
	byLen [3][]routeEntry // index: prefix length - 6, sorted by From
}

type routeEntry struct {
	r                    BINRange
	partnerID, programID string
}

// Route is where a PAN goes.
type Route struct {
	PartnerID, ProgramID string
	Range                BINRange
}

// NewRouteTable builds the table from routes.
func NewRouteTable(routes []Route) *RouteTable {
	t := &RouteTable{}
	for _, r := range routes {
		n := len(r.Range.From) - 6
		if n < 0 || n > 2 {
			continue
		}
		t.byLen[n] = append(t.byLen[n], routeEntry{r.Range, r.PartnerID, r.ProgramID})
	}
	for i := range t.byLen {
		sort.Slice(t.byLen[i], func(a, b int) bool { return t.byLen[i][a].r.From < t.byLen[i][b].r.From })
	}
	return t
}

// Lookup returns the route of a PAN by its longest matching range.
func (t *RouteTable) Lookup(pan string) (Route, bool) {
	if t == nil {
		return Route{}, false
	}
	for n := 2; n >= 0; n-- {
		l := n + 6
		if len(pan) < l {
			continue
		}
		es := t.byLen[n]
		p := pan[:l]
		// The last range whose From <= p.
		i := sort.Search(len(es), func(i int) bool { return es[i].r.From > p }) - 1
		if i >= 0 && p <= es[i].r.To {
			return Route{PartnerID: es[i].partnerID, ProgramID: es[i].programID, Range: es[i].r}, true
		}
	}
	return Route{}, false
}

// DefaultProgramID is the id of the program a partner's single BIN became
// (every partner created before programs has one).
func DefaultProgramID(partnerID string) string { return "prg_" + partnerID }

// ProgramOfCard is the program a card belongs to: its own, else the
// partner's default program.
func ProgramOfCard(partnerID, programID string) string {
	if programID == "" {
		return DefaultProgramID(partnerID)
	}
	return programID
}
