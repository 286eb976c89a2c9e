package panel

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/antaca/antaca/authz"
)

// A partner's card programs (docs/programs.md) and their default spend
// controls (docs/controls.md): every read and action is the
// /admin/partners/{partnerId}/programs API.

func programsPath(partnerID string) string {
	return Prefix + "partners/" + url.PathEscape(partnerID) + "/programs"
}

func apiPrograms(partnerID string) string {
	return "/admin/partners/" + url.PathEscape(partnerID) + "/programs"
}

// programRow is a program as the list shows it.
type programRow struct {
	authz.Program
	ControlFacts []fact // its default spend controls in words
}

// RangesText is the program's BIN ranges in one line.
func (p programRow) RangesText() string { return rangesText(p.Ranges) }

func rangesText(rs []authz.BINRange) string {
	var out []string
	for _, r := range rs {
		if r.From == r.To {
			out = append(out, r.From)
		} else {
			out = append(out, r.From+"–"+r.To)
		}
	}
	return strings.Join(out, ", ")
}

// programForm is the create or edit form of a program, filled with the
// program or with what the admin typed when the API refused it.
type programForm struct {
	Form, Prefix string
	Create       bool
	Err          *formError
	ID, Name     string
	Currency     string
	Ranges       string
	CardTypes    []checkbox
	DigitalFirst bool
	TimeZone     string
	RemoteURL    string
	Timeout      string
	StandIn      string
	StandInAmt   string
	Controls     *controlsForm // creation sets the first controls too
}

func newProgramForm(form, prefix string, create bool, pr authz.Program, fe *formError) programForm {
	f := programForm{Form: form, Prefix: prefix, Create: create, Err: fe, ID: pr.ID, Name: pr.Name, Currency: pr.Currency,
		DigitalFirst: pr.DigitalFirst, TimeZone: pr.TimeZone, RemoteURL: pr.RemoteURL, StandIn: pr.StandIn.Policy}
	var rs []string
	for _, r := range pr.Ranges {
		rs = append(rs, r.From+"-"+r.To)
	}
	f.Ranges = strings.Join(rs, "\n")
	if pr.DecisionTimeoutMS > 0 {
		f.Timeout = strconv.FormatInt(pr.DecisionTimeoutMS, 10)
	}
	if pr.StandIn.Amount > 0 {
		f.StandInAmt = inputMoney(pr.StandIn.Amount, pr.Currency)
	}
	typed := fe.On(form)
	if typed {
		v := fe.Values
		f.ID, f.Name, f.Ranges, f.TimeZone = v.Get("id"), v.Get("name"), v.Get("binRanges"), v.Get("timeZone")
		f.RemoteURL, f.Timeout, f.StandIn, f.StandInAmt = v.Get("remoteUrl"), v.Get("decisionTimeoutMs"), v.Get("standIn"), v.Get("standInAmount")
		f.DigitalFirst = v.Get("digitalFirst") == "yes"
		if create {
			f.Currency = v.Get("currency")
		}
	}
	for _, t := range []authz.CardType{authz.CardVirtual, authz.CardPhysical, authz.CardDigitalFirst} {
		on := slices.Contains(pr.CardTypes, t)
		if typed {
			on = slices.Contains(fe.Values["cardTypes"], string(t))
		}
		f.CardTypes = append(f.CardTypes, checkbox{Value: string(t), Label: cardTypeName(t), Checked: on})
	}
	return f
}

func cardTypeName(t authz.CardType) string {
	switch t {
	case authz.CardVirtual:
		return "Virtual"
	case authz.CardPhysical:
		return "Physical"
	case authz.CardDigitalFirst:
		return "Digital first (plastic copy of a virtual card)"
	}
	return string(t)
}

// readProgram reads a program form into the API's ProgramInput (without
// id, currency and controls, which the caller adds). A field that cannot
// be read at all is named with the message.
func readProgram(f url.Values, currency string) (body map[string]any, field, msg string) {
	ranges := []authz.BINRange{}
	for _, item := range splitList(f.Get("binRanges")) {
		from, to, ok := strings.Cut(strings.ReplaceAll(item, "–", "-"), "-")
		if !ok {
			to = from
		}
		ranges = append(ranges, authz.BINRange{From: strings.TrimSpace(from), To: strings.TrimSpace(to)})
	}
	types := append([]string{}, f["cardTypes"]...)
	body = map[string]any{"name": strings.TrimSpace(f.Get("name")), "binRanges": ranges, "cardTypes": types,
		"digitalFirst": f.Get("digitalFirst") == "yes", "timeZone": strings.TrimSpace(f.Get("timeZone")),
		"remoteUrl": strings.TrimSpace(f.Get("remoteUrl"))}
	if s := strings.TrimSpace(f.Get("decisionTimeoutMs")); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, "decisionTimeoutMs", "Enter the time in milliseconds as a whole number, such as 1500, or leave it empty for 1500."
		}
		body["decisionTimeoutMs"] = n
	}
	standIn := map[string]any{"policy": f.Get("standIn")}
	if f.Get("standIn") == authz.StandInApprove {
		if s := strings.TrimSpace(f.Get("standInAmount")); s != "" {
			n, err := parseMoney(s, currency)
			if err != nil {
				return nil, "standInAmount", "Enter the largest amount approved in stand-in as " + amountHint(currency) + " (in " + currency + ")."
			}
			standIn["amount"] = n
		}
	}
	body["standIn"] = standIn
	return body, "", ""
}

// placeProgramError places the refusals of a program form that the API
// answers with a code of their own rather than a field: the id taken, a
// BIN range another program holds. The others are placed by their field
// already (refusal).
func placeProgramError(fe *formError, code string) {
	if fe == nil {
		return
	}
	switch code {
	case "ALREADY_EXISTS":
		fe.Field, fe.Message = "id", "A program with this id exists already; choose another id, or leave it empty."
	case "BIN_RANGE_IN_USE", "BIN_IN_USE":
		fe.Field = "binRanges"
	}
}

// ---- The programs of a partner ----

type programsData struct {
	Partner    partner
	Programs   []programRow
	Page       int
	Prev, Next string
	New        programForm
}

const programsPerPage = 20

// GET /panel/partners/{id}/programs
func (p *Panel) programs(w http.ResponseWriter, r *http.Request, s *session) {
	p.showPrograms(w, r, s, http.StatusOK, nil)
}

func (p *Panel) showPrograms(w http.ResponseWriter, r *http.Request, s *session, status int, fe *formError) {
	pid := r.PathValue("id")
	d := programsData{Page: pageNumber(r)}
	if err := p.call(r, s, "GET", "/admin/partners/"+url.PathEscape(pid), nil, &d.Partner); err != nil {
		p.fail(w, r, s, err)
		return
	}
	var out struct{ Programs []authz.Program }
	if err := p.call(r, s, "GET", apiPrograms(pid), nil, &out); err != nil {
		p.fail(w, r, s, err)
		return
	}
	start := (d.Page - 1) * programsPerPage
	for i, pr := range out.Programs {
		if i >= start && i < start+programsPerPage {
			d.Programs = append(d.Programs, programRow{Program: pr, ControlFacts: describe(pr.Controls, pr.Currency)})
		}
	}
	if d.Page > 1 {
		d.Prev = programsPath(pid) + "?page=" + strconv.Itoa(d.Page-1)
	}
	if start+programsPerPage < len(out.Programs) {
		d.Next = programsPath(pid) + "?page=" + strconv.Itoa(d.Page+1)
	}
	can := map[string]bool{"create": s.can(p, "POST /admin/partners/{partnerId}/programs")}
	if can["create"] {
		d.New = newProgramForm("program-new", "np", true, authz.Program{Currency: d.Partner.Currency}, fe)
		cf := newControlsForm("program-new", "npc", d.New.Currency, authz.Controls{}, fe)
		d.New.Controls = &cf
	}
	p.render(w, r, s, status, "programs", page{Title: "Programs of " + d.Partner.Name, Nav: "partners", Can: can,
		Notice: noticeUnlessErr(r, fe), Err: fe, Data: d})
}

// POST /panel/partners/{id}/programs: creates a program with its first
// controls; a remote-decision secret made with it is shown this once.
func (p *Panel) createProgram(w http.ResponseWriter, r *http.Request, s *session) {
	pid := r.PathValue("id")
	f := r.PostForm
	const form = "program-new"
	cur := strings.ToUpper(strings.TrimSpace(f.Get("currency")))
	body, field, msg := readProgram(f, cur)
	var ctl authz.Controls
	if field == "" {
		ctl, field, msg = readControls(f, cur)
	}
	if field != "" {
		p.showPrograms(w, r, s, http.StatusBadRequest, &formError{Form: form, Field: field, Message: msg, Values: f})
		return
	}
	body["id"], body["currency"] = strings.TrimSpace(f.Get("id")), cur
	if !ctl.IsZero() {
		body["controls"] = ctl
	}
	var created authz.Program
	if err := p.call(r, s, "POST", apiPrograms(pid), body, &created); err != nil {
		if fe, st, handled := p.refusal(w, r, s, form, err); !handled {
			placeProgramError(fe, apiCode(err))
			p.showPrograms(w, r, s, st, fe)
		}
		return
	}
	p.log.InfoContext(r.Context(), "panel: program created", "partner", pid, "program", created.ID, "admin", s.Username)
	if created.RemoteSecret == "" {
		done(w, r, programsPath(pid)+"/"+url.PathEscape(created.ID), "program")
		return
	}
	r.SetPathValue("pid", created.ID)
	p.showProgram(w, r, s, http.StatusCreated, nil, programExtras{secret: created.RemoteSecret, notice: notices["program"]})
}

func apiCode(err error) string {
	var e *apiError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ---- A program ----

type programData struct {
	Partner  partner
	Program  programRow
	Source   string // of its controls: program or none
	Edit     programForm
	Controls controlsForm
	Replay   controlsForm
	Since    []checkbox // the replay's periods; Checked is the one chosen
	Result   *replayView
	// Secret is the remote-decision secret just made: shown this once.
	Secret string
}

// programExtras is what a page answering a form adds to the program page.
type programExtras struct {
	secret, notice string
	result         *replayView
	tried          authz.Controls // the controls the result is for
}

// GET /panel/partners/{id}/programs/{pid}
func (p *Panel) program(w http.ResponseWriter, r *http.Request, s *session) {
	p.showProgram(w, r, s, http.StatusOK, nil, programExtras{})
}

func (p *Panel) showProgram(w http.ResponseWriter, r *http.Request, s *session, status int, fe *formError, x programExtras) {
	pid, prg := r.PathValue("id"), r.PathValue("pid")
	var d programData
	if err := p.call(r, s, "GET", "/admin/partners/"+url.PathEscape(pid), nil, &d.Partner); err != nil {
		p.fail(w, r, s, err)
		return
	}
	var pr authz.Program
	if err := p.call(r, s, "GET", apiPrograms(pid)+"/"+url.PathEscape(prg), nil, &pr); err != nil {
		p.fail(w, r, s, err)
		return
	}
	var cv controlsView
	if err := p.call(r, s, "GET", apiPrograms(pid)+"/"+url.PathEscape(prg)+"/controls", nil, &cv); err != nil {
		p.fail(w, r, s, err)
		return
	}
	pr.RemoteSecret = "" // never from a read; only x.secret, once
	d.Program = programRow{Program: pr, ControlFacts: describe(cv.Controls, pr.Currency)}
	d.Source, d.Secret, d.Result = cv.Source, x.secret, x.result
	can := map[string]bool{
		"edit":     s.can(p, "PUT /admin/partners/{partnerId}/programs/{programId}"),
		"controls": s.can(p, "PUT /admin/partners/{partnerId}/programs/{programId}/controls"),
		"replay":   s.can(p, "POST /admin/partners/{partnerId}/programs/{programId}/controls/replay"),
		"cards":    s.can(p, "GET /admin/cards/{cardId}/status"),
	}
	if can["edit"] {
		d.Edit = newProgramForm("program", "pe", false, pr, fe)
	}
	if can["controls"] {
		d.Controls = newControlsForm("controls", "pc", pr.Currency, cv.Controls, fe)
	}
	if can["replay"] {
		start := cv.Controls
		if x.result != nil {
			start = x.tried
		}
		d.Replay = newControlsForm("replay", "rp", pr.Currency, start, fe)
		since := "720h"
		if fe.On("replay") || x.result != nil {
			since = r.PostForm.Get("since")
		}
		for _, o := range sinceOptions {
			d.Since = append(d.Since, checkbox{Value: o.Value, Label: o.Label, Checked: o.Value == since})
		}
	}
	notice := noticeUnlessErr(r, fe)
	if x.notice != "" {
		notice = x.notice
	}
	p.render(w, r, s, status, "program", page{Title: pr.Name, Nav: "partners", Can: can, Notice: notice, Err: fe, Data: d})
}

// POST /panel/partners/{id}/programs/{pid}: changes the program's fields
// (PUT replaces all but id, currency and the controls, which it leaves).
func (p *Panel) updateProgram(w http.ResponseWriter, r *http.Request, s *session) {
	pid, prg := r.PathValue("id"), r.PathValue("pid")
	path := apiPrograms(pid) + "/" + url.PathEscape(prg)
	const form = "program"
	var cur authz.Program
	if err := p.call(r, s, "GET", path, nil, &cur); err != nil {
		p.fail(w, r, s, err)
		return
	}
	body, field, msg := readProgram(r.PostForm, cur.Currency)
	if field != "" {
		p.showProgram(w, r, s, http.StatusBadRequest, &formError{Form: form, Field: field, Message: msg, Values: r.PostForm}, programExtras{})
		return
	}
	var got authz.Program
	if err := p.call(r, s, "PUT", path, body, &got); err != nil {
		if fe, st, handled := p.refusal(w, r, s, form, err); !handled {
			placeProgramError(fe, apiCode(err))
			p.showProgram(w, r, s, st, fe, programExtras{})
		}
		return
	}
	p.log.InfoContext(r.Context(), "panel: program updated", "partner", pid, "program", prg, "admin", s.Username)
	if got.RemoteSecret != "" {
		p.showProgram(w, r, s, http.StatusOK, nil, programExtras{secret: got.RemoteSecret, notice: notices["programupdate"]})
		return
	}
	done(w, r, programsPath(pid)+"/"+url.PathEscape(prg), "programupdate")
}

// programControlsForm reads the program of the path and the controls
// form posted on its page (form names it), in the program's currency. A
// form the panel cannot read shows the page again with the error; ok is
// false when the answer is written.
func (p *Panel) programControlsForm(w http.ResponseWriter, r *http.Request, s *session, form string) (path string, cur authz.Program, ctl authz.Controls, ok bool) {
	path = apiPrograms(r.PathValue("id")) + "/" + url.PathEscape(r.PathValue("pid"))
	if err := p.call(r, s, "GET", path, nil, &cur); err != nil {
		p.fail(w, r, s, err)
		return "", cur, ctl, false
	}
	ctl, field, msg := readControls(r.PostForm, cur.Currency)
	if field != "" {
		p.showProgram(w, r, s, http.StatusBadRequest, &formError{Form: form, Field: field, Message: msg, Values: r.PostForm}, programExtras{})
		return "", cur, ctl, false
	}
	return path, cur, ctl, true
}

// POST /panel/partners/{id}/programs/{pid}/controls
func (p *Panel) setProgramControls(w http.ResponseWriter, r *http.Request, s *session) {
	pid, prg := r.PathValue("id"), r.PathValue("pid")
	const form = "controls"
	path, _, ctl, ok := p.programControlsForm(w, r, s, form)
	if !ok {
		return
	}
	if err := p.call(r, s, "PUT", path+"/controls", ctl, nil); err != nil {
		if fe, st, handled := p.refusal(w, r, s, form, err); !handled {
			p.showProgram(w, r, s, st, fe, programExtras{})
		}
		return
	}
	p.log.InfoContext(r.Context(), "panel: program controls set", "partner", pid, "program", prg, "admin", s.Username)
	done(w, r, programsPath(pid)+"/"+url.PathEscape(prg), "pcontrols")
}

// POST /panel/partners/{id}/programs/{pid}/replay: what the controls of
// the form would have done to the program's past traffic. Changes
// nothing; the answer is shown on the program page.
func (p *Panel) replay(w http.ResponseWriter, r *http.Request, s *session) {
	const form = "replay"
	path, cur, ctl, ok := p.programControlsForm(w, r, s, form)
	if !ok {
		return
	}
	var rep authz.ReplayReport
	err := p.call(r, s, "POST", path+"/controls/replay", map[string]any{"controls": ctl, "since": r.PostForm.Get("since")}, &rep)
	var e *apiError
	if errors.As(err, &e) && e.Status == http.StatusNotImplemented {
		// antaca demo keeps no journal in PostgreSQL to replay.
		p.showProgram(w, r, s, e.Status, &formError{Form: form, Message: sentence(e.Message), Values: r.PostForm}, programExtras{})
		return
	}
	if err != nil {
		if fe, st, handled := p.refusal(w, r, s, form, err); !handled {
			p.showProgram(w, r, s, st, fe, programExtras{})
		}
		return
	}
	v := p.replayOf(rep, cur.Currency, ctl)
	p.showProgram(w, r, s, http.StatusOK, nil, programExtras{result: &v, tried: ctl})
}

// ---- The program a new card is issued under ----

// programSelect is the program choice of a form that issues a card: the
// partner's default program first (the API's choice when none is sent),
// then the partner's other programs, each with its currency and the card
// types it issues. The panel lists them all: the API refuses a program
// that does not issue the card type or is not in the balance's currency,
// and the refusal stands next to the select.
type programSelect struct {
	Form, ID string // the form's name and the select's element id
	Default  string // the label of the default program's option
	Options  []checkbox
	Err      *formError
}

func newProgramSelect(form, id, partnerID string, programs []authz.Program, balances []balance, typ authz.CardType, fe *formError) *programSelect {
	sel := &programSelect{Form: form, ID: id, Default: "The partner's default program", Err: fe}
	chosen := fe.Value(form, "programId")
	def := authz.DefaultProgramID(partnerID)
	for _, pr := range programs {
		if pr.ID == def {
			sel.Default += " (" + pr.Name + ")" // short: a select shows one line
			continue
		}
		sel.Options = append(sel.Options, checkbox{Value: pr.ID, Label: programLabel(pr), Checked: pr.ID == chosen})
	}
	if fe.On(form) {
		placeIssueError(fe, partnerID, programs, balances, typ)
	}
	return sel
}

// programLabel names a program in a select: "Gold debit (gold) · EUR ·
// virtual cards only".
func programLabel(pr authz.Program) string {
	return pr.Name + " (" + pr.ID + ") · " + pr.Currency + " · " + issuesText(pr.CardTypes)
}

// issuesText says which card types a program issues, in words.
func issuesText(ts []authz.CardType) string {
	if len(ts) == 0 {
		return "all card types"
	}
	var words []string
	for _, t := range ts {
		words = append(words, cardTypeWord(t))
	}
	if len(words) == 1 {
		return words[0] + " cards only"
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1] + " cards"
}

func cardTypeWord(t authz.CardType) string {
	switch t {
	case authz.CardVirtual:
		return "virtual"
	case authz.CardPhysical:
		return "physical"
	case authz.CardDigitalFirst:
		return "digital-first"
	}
	return strings.ToLower(string(t))
}

// placeIssueError puts the API's refusal of the program chosen for a new
// card next to the program's select, in words that name the program, the
// card type and the currencies. The API names no field for these (409
// CARD_TYPE_NOT_IN_PROGRAM, PROGRAM_CURRENCY_MISMATCH; 404
// PROGRAM_NOT_FOUND): its code does.
func placeIssueError(fe *formError, partnerID string, programs []authz.Program, balances []balance, typ authz.CardType) {
	chosen := fe.Values.Get("programId")
	id := authz.ProgramOfCard(partnerID, chosen)
	var pr *authz.Program
	for i := range programs {
		if programs[i].ID == id {
			pr = &programs[i]
		}
	}
	name := ""
	if pr != nil {
		name = "The program " + pr.Name + " (" + pr.ID + ")"
		if chosen == "" {
			name = "The partner's default program, " + pr.Name + " (" + pr.ID + "),"
		}
	}
	switch fe.Code {
	case "CARD_TYPE_NOT_IN_PROGRAM":
		fe.Field = "programId"
		if pr != nil {
			fe.Message = name + " does not issue " + cardTypeWord(typ) + " cards; it issues " + issuesText(pr.CardTypes) +
				". Choose a program that issues them."
		}
	case "PROGRAM_CURRENCY_MISMATCH":
		fe.Field = "programId"
		cur := ""
		for _, b := range balances {
			if b.ID == fe.Values.Get("balanceId") {
				cur = b.Currency
			}
		}
		if pr != nil && cur != "" {
			fe.Message = name + " issues cards in " + pr.Currency + ", and the balance " + fe.Values.Get("balanceId") + " is in " + cur +
				". Choose a balance in " + pr.Currency + ", or a program in " + cur + "."
		}
	case "PROGRAM_NOT_FOUND":
		fe.Field = "programId"
		fe.Message = "This partner has no program “" + chosen + "”. Choose one from the list."
	}
}
