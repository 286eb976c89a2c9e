package panel

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/authz"
)

// Spend controls as the pages show and edit them (docs/controls.md). The
// forms only read what the admin typed into the API's Controls body; the
// API checks it (four-digit MCCs, alpha-2 countries, caps) and the panel
// shows its refusal next to the field it concerns.

// controlsView is the API's ControlsView: the controls in force, where
// they come from (card, program or none) and the current windows.
type controlsView struct {
	Controls authz.Controls      `json:"controls"`
	Source   string              `json:"source"`
	Program  string              `json:"programId"`
	Usage    []authz.WindowUsage `json:"usage"`
}

// fact is one line of a description list.
type fact struct{ Label, Value string }

var intervalNames = map[authz.Interval]string{
	authz.IntervalDay:     "Each day",
	authz.IntervalWeek:    "Each week (Monday to Sunday)",
	authz.IntervalMonth:   "Each calendar month",
	authz.IntervalAllTime: "In total (never resets)",
}

// channels are the channels a control may block, with their names.
var channels = []struct{ Value, Label string }{
	{authz.ChannelATM, "ATM (cash withdrawals)"},
	{authz.ChannelEcommerce, "E-commerce (card not present)"},
	{authz.ChannelContactless, "Contactless"},
	{authz.ChannelPOS, "In store, chip or stripe"},
}

func channelName(v string) string {
	for _, c := range channels {
		if c.Value == v {
			return c.Label
		}
	}
	return v
}

// describe turns controls into lines a person reads ("Each day: at most
// 100.00 EUR and 20 authorizations"); none for no controls.
func describe(c authz.Controls, currency string) []fact {
	var out []fact
	if c.PerTransactionMax > 0 {
		out = append(out, fact{"Per transaction", "at most " + formatMoney(c.PerTransactionMax, currency)})
	}
	for _, l := range c.Limits {
		var caps []string
		if l.Amount > 0 {
			caps = append(caps, formatMoney(l.Amount, currency))
		}
		if l.Count > 0 {
			caps = append(caps, plural(l.Count, "authorization"))
		}
		out = append(out, fact{intervalName(l.Interval), "at most " + strings.Join(caps, " and ")})
	}
	if len(c.MCCAllow) > 0 {
		out = append(out, fact{"Merchant categories allowed", "only MCC " + strings.Join(c.MCCAllow, ", ") +
			"; every other category, and a message without one, is declined"})
	}
	if len(c.MCCBlock) > 0 {
		out = append(out, fact{"Merchant categories blocked", "MCC " + strings.Join(c.MCCBlock, ", ")})
	}
	if len(c.CountriesBlock) > 0 {
		out = append(out, fact{"Countries blocked", strings.Join(c.CountriesBlock, ", ")})
	}
	if len(c.ChannelsBlock) > 0 {
		var names []string
		for _, ch := range c.ChannelsBlock {
			names = append(names, channelName(ch))
		}
		out = append(out, fact{"Channels blocked", strings.Join(names, ", ")})
	}
	return out
}

func intervalName(i authz.Interval) string {
	if n, ok := intervalNames[i]; ok {
		return n
	}
	return string(i)
}

func plural(n int64, what string) string {
	s := strconv.FormatInt(n, 10) + " " + what
	if n != 1 {
		s += "s"
	}
	return s
}

// usageRow is one window of a card's limits, as the card page shows it.
type usageRow struct {
	Name, Window         string
	Spent, AmountCap     string
	Count, CountCap      string
	Remaining, ResetsAt  string
	AmountOut, CountsOut bool // nothing left of the cap
}

func usageRows(us []authz.WindowUsage, currency string) []usageRow {
	var out []usageRow
	for _, u := range us {
		r := usageRow{Name: intervalName(u.Interval), Window: u.Window, Spent: formatMoney(u.Spent, currency),
			Count: strconv.FormatInt(u.Count, 10), AmountCap: "no cap", CountCap: "no cap", ResetsAt: "never"}
		if u.Amount > 0 {
			r.AmountCap = formatMoney(u.Amount, currency)
		}
		if u.CountLimit > 0 {
			r.CountCap = strconv.FormatInt(u.CountLimit, 10)
		}
		var left []string
		if u.RemainingAmount != nil {
			left = append(left, formatMoney(*u.RemainingAmount, currency))
			r.AmountOut = *u.RemainingAmount == 0
		}
		if u.RemainingCount != nil {
			left = append(left, plural(*u.RemainingCount, "authorization"))
			r.CountsOut = *u.RemainingCount == 0
		}
		r.Remaining = strings.Join(left, " and ")
		if u.ResetsAt != nil {
			r.ResetsAt = u.ResetsAt.UTC().Format("2006-01-02 15:04") + " UTC"
		}
		out = append(out, r)
	}
	return out
}

// checkbox is one box of a group.
type checkbox struct {
	Value, Label string
	Checked      bool
}

// limitInput is one interval's row of the limits in a controls form.
type limitInput struct {
	Interval, Name, Amount, Count string
}

// controlsForm is a controls form's fields, filled with the controls it
// starts from, or with what the admin typed when the API refused it.
type controlsForm struct {
	Form      string // the form's name for its errors
	Prefix    string // of the element ids
	Currency  string
	Err       *formError
	Max       string
	Limits    []limitInput
	MCCAllow  string
	MCCBlock  string
	Countries string
	Channels  []checkbox
}

func newControlsForm(form, prefix, currency string, c authz.Controls, fe *formError) controlsForm {
	f := controlsForm{Form: form, Prefix: prefix, Currency: currency, Err: fe}
	typed := fe.On(form)
	v := func(key, def string) string {
		if typed {
			return fe.Values.Get(key)
		}
		return def
	}
	if c.PerTransactionMax > 0 {
		f.Max = inputMoney(c.PerTransactionMax, currency)
	}
	f.Max = v("per_transaction_max", f.Max)
	for _, iv := range authz.Intervals {
		in := limitInput{Interval: string(iv), Name: intervalName(iv)}
		for _, l := range c.Limits {
			if l.Interval == iv {
				if l.Amount > 0 {
					in.Amount = inputMoney(l.Amount, currency)
				}
				if l.Count > 0 {
					in.Count = strconv.FormatInt(l.Count, 10)
				}
			}
		}
		in.Amount, in.Count = v(string(iv)+"_amount", in.Amount), v(string(iv)+"_count", in.Count)
		f.Limits = append(f.Limits, in)
	}
	f.MCCAllow = v("mcc_allow", strings.Join(c.MCCAllow, ", "))
	f.MCCBlock = v("mcc_block", strings.Join(c.MCCBlock, ", "))
	f.Countries = v("countries_block", strings.Join(c.CountriesBlock, ", "))
	for _, ch := range channels {
		on := slices.Contains(c.ChannelsBlock, ch.Value)
		if typed {
			on = slices.Contains(fe.Values["channels_block"], ch.Value)
		}
		f.Channels = append(f.Channels, checkbox{Value: ch.Value, Label: ch.Label, Checked: on})
	}
	return f
}

// inputMoney shows minor units as an admin types them ("1250.50").
func inputMoney(minor int64, currency string) string {
	exp := exponent(currency)
	s := strconv.FormatInt(minor, 10)
	if exp == 0 {
		return s
	}
	for len(s) <= exp {
		s = "0" + s
	}
	return s[:len(s)-exp] + "." + s[len(s)-exp:]
}

// splitList splits what an admin typed into a list ("7995, 5933" or one a line).
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\n' || r == '\r' || r == '\t'
	})
}

// readControls reads a controls form into the API's body. A field that
// cannot be read at all (letters for an amount) is named with the message.
func readControls(f url.Values, currency string) (c authz.Controls, field, msg string) {
	money := func(key, what string) (int64, bool) {
		s := strings.TrimSpace(f.Get(key))
		if s == "" {
			return 0, true
		}
		n, err := parseMoney(s, currency)
		if err != nil {
			field, msg = key, "Enter "+what+" as "+amountHint(currency)+" (in "+currency+"), or leave it empty."
			return 0, false
		}
		return n, true
	}
	var ok bool
	if c.PerTransactionMax, ok = money("per_transaction_max", "the most one transaction may be"); !ok {
		return
	}
	for _, iv := range authz.Intervals {
		l := authz.Limit{Interval: iv}
		if l.Amount, ok = money(string(iv)+"_amount", "the amount"); !ok {
			return
		}
		if s := strings.TrimSpace(f.Get(string(iv) + "_count")); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n <= 0 {
				field, msg = string(iv)+"_count", "Enter a whole number of authorizations, such as 20, or leave it empty."
				return
			}
			l.Count = n
		}
		if l.Amount > 0 || l.Count > 0 {
			c.Limits = append(c.Limits, l)
		}
	}
	c.MCCAllow, c.MCCBlock = splitList(f.Get("mcc_allow")), splitList(f.Get("mcc_block"))
	c.CountriesBlock = splitList(strings.ToUpper(f.Get("countries_block")))
	c.ChannelsBlock = f["channels_block"]
	return c, "", ""
}

// withoutPrefix drops the "Invalid program: invalid controls: " an API
// message starts with.
func withoutPrefix(msg string) string {
	for {
		low := strings.ToLower(msg)
		cut := false
		for _, p := range []string{"invalid program: ", "invalid controls: "} {
			if strings.HasPrefix(low, p) {
				msg, cut = msg[len(p):], true
			}
		}
		if !cut {
			return sentence(msg)
		}
	}
}

// ---- The replay of controls on past traffic ----

// sinceOptions are the periods a replay may look back over.
var sinceOptions = []struct{ Value, Label string }{
	{"24h", "the last day"}, {"168h", "the last 7 days"}, {"720h", "the last 30 days"},
	{"2160h", "the last 90 days"}, {"8760h", "the last 365 days"},
}

// replayView is the API's ReplayReport, in words and money.
type replayView struct {
	Since, Until                    time.Time
	Evaluated, Declined, Approved   string
	EvaluatedN, DeclinedN           int64
	ApprovedN                       int64
	ByReason                        []replayReason
	TopCards, TopMCCs, TopCountries []replayTop
	SkippedCards                    int
	Controls                        []fact
}

type replayReason struct {
	Reason, Code, Money string
	Count               int64
}

type replayTop struct {
	Key, Money string
	Count      int64
}

func (p *Panel) replayOf(rep authz.ReplayReport, currency string, tried authz.Controls) replayView {
	v := replayView{Since: rep.Since, Until: rep.Until,
		Evaluated: formatMoney(rep.Evaluated.Amount, currency), EvaluatedN: rep.Evaluated.Count,
		Declined: formatMoney(rep.NewlyDeclined.Amount, currency), DeclinedN: rep.NewlyDeclined.Count,
		Approved: formatMoney(rep.NewlyApproved.Amount, currency), ApprovedN: rep.NewlyApproved.Count,
		SkippedCards: rep.SkippedCards, Controls: describe(tried, currency)}
	for r, n := range rep.ByReason {
		v.ByReason = append(v.ByReason, replayReason{Reason: string(r), Code: p.code(string(r)), Count: n.Count,
			Money: formatMoney(n.Amount, currency)})
	}
	slices.SortFunc(v.ByReason, func(a, b replayReason) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	top := func(ts []authz.ReplayTop) []replayTop {
		var out []replayTop
		for _, t := range ts {
			out = append(out, replayTop{Key: t.Key, Count: t.Count, Money: formatMoney(t.Amount, currency)})
		}
		return out
	}
	v.TopCards, v.TopMCCs, v.TopCountries = top(rep.TopCards), top(rep.TopMCCs), top(rep.TopCountries)
	return v
}

// ---- A card's spend controls ----

// cardControls is the card page's "Spend controls" section.
type cardControls struct {
	Source      string // card, program or none
	Program     string
	ProgramLink string // "" when the role may not read programs
	Lines       []fact
	Usage       []usageRow
	Form        controlsForm
}

func (p *Panel) loadCardControls(r *http.Request, s *session, c card, fe *formError) (*cardControls, error) {
	var v controlsView
	if err := p.call(r, s, "GET", "/admin/cards/"+url.PathEscape(c.ID)+"/controls", nil, &v); err != nil {
		return nil, err
	}
	cc := &cardControls{Source: v.Source, Program: v.Program, Lines: describe(v.Controls, c.Currency),
		Usage: usageRows(v.Usage, c.Currency), Form: newControlsForm("card-controls", "cc", c.Currency, v.Controls, fe)}
	if c.PartnerID != "" && v.Program != "" && s.can(p, "GET /admin/partners/{partnerId}/programs/{programId}") {
		cc.ProgramLink = programsPath(c.PartnerID) + "/" + url.PathEscape(v.Program)
	}
	return cc, nil
}

// POST /panel/cards/{id}/controls: the card's own controls, which replace
// its program's for this card.
func (p *Panel) setCardControls(w http.ResponseWriter, r *http.Request, s *session) {
	const form = "card-controls"
	c, _, err := p.loadCard(r, s)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	ctl, field, msg := readControls(r.PostForm, c.Currency)
	if field != "" {
		p.showCard(w, r, s, http.StatusBadRequest, &formError{Form: form, Field: field, Message: msg, Values: r.PostForm})
		return
	}
	if err := p.call(r, s, "PUT", "/admin/cards/"+url.PathEscape(c.ID)+"/controls", ctl, nil); err != nil {
		if fe, st, handled := p.refusal(w, r, s, form, err); !handled {
			p.showCard(w, r, s, st, fe)
		}
		return
	}
	p.log.InfoContext(r.Context(), "panel: card controls set", "card", c.ID, "admin", s.Username)
	done(w, r, Prefix+"cards/"+url.PathEscape(c.ID), "controls")
}

// GET /panel/cards/{id}/controls/reset: the confirmation, with the
// program's controls that will apply.
func (p *Panel) confirmControlsReset(w http.ResponseWriter, r *http.Request, s *session) {
	c, cu, err := p.loadCard(r, s)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	cc, err := p.loadCardControls(r, s, c, nil)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	d := map[string]any{"Card": c, "Customer": cu, "Controls": cc}
	if c.PartnerID != "" && s.can(p, "GET /admin/partners/{partnerId}/programs/{programId}/controls") {
		var pv controlsView
		if err := p.call(r, s, "GET", apiPrograms(c.PartnerID)+"/"+url.PathEscape(cc.Program)+"/controls", nil, &pv); err != nil {
			p.fail(w, r, s, err)
			return
		}
		d["Program"] = describe(pv.Controls, c.Currency)
		d["ProgramKnown"] = true
	}
	p.render(w, r, s, http.StatusOK, "controlsreset", page{Title: "Use the program's controls for card " + c.Masked(), Nav: "customers", Data: d})
}

// POST /panel/cards/{id}/controls/reset: drops the card's own controls
// (DELETE); its program's apply again.
func (p *Panel) resetCardControls(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if r.PostForm.Get("confirm") != "yes" {
		http.Redirect(w, r, Prefix+"cards/"+url.PathEscape(id)+"/controls/reset", http.StatusSeeOther)
		return
	}
	if err := p.call(r, s, "DELETE", "/admin/cards/"+url.PathEscape(id)+"/controls", nil, nil); err != nil {
		if fe, st, handled := p.refusal(w, r, s, "card-controls", err); !handled {
			p.showCard(w, r, s, st, fe)
		}
		return
	}
	p.log.InfoContext(r.Context(), "panel: card controls removed", "card", id, "admin", s.Username)
	done(w, r, Prefix+"cards/"+url.PathEscape(id), "controlsreset")
}
