package panel

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/authz"
)

// notices are the success messages a redirect may name (?done=...).
var notices = map[string]string{
	"kyc":            "The KYC status was saved.",
	"reload":         "The balance was reloaded.",
	"lock":           "The card was locked.",
	"unlock":         "The card was unlocked.",
	"remove":         "The card was removed for good.",
	"cvv":            "A new CVV2 was generated. The customer reads it in their app; it is never shown in the panel.",
	"print":          "A digital-first plastic copy was ordered.",
	"activate":       "The card was activated.",
	"external-lock":  "The card was locked on the request of the network or acquirer; the reference is recorded with the lock.",
	"replaced":       "The card was replaced: this is the new card. The old card is locked with reason 8 (card replaced).",
	"replaced-keep":  "The card was replaced: this is the new plastic, on its way through the bureau. The old plastic keeps working until this one is activated, and is then locked with reason 8 (card replaced).",
	"hookdisable":    "The endpoint was disabled: nothing is delivered to it until it is enabled again.",
	"hookenable":     "The endpoint was enabled: events from now on are delivered, and waiting deliveries go out.",
	"hookdelete":     "The endpoint was deleted with its delivery log.",
	"redeliver":      "The delivery was queued again; it goes out in a moment.",
	"personalised":   "The plastic was reported made: a physical card is now linked and waits for activation; a digital-first copy is produced.",
	"physical":       "The physical card was ordered; it waits for the bureau.",
	"virtual":        "The virtual card was issued. The customer reads its details in their app.",
	"partner":        "The partner was created.",
	"customer":       "The customer was registered. Their KYC comes next: set it here once verified.",
	"pbalance":       "The partner balance was created.",
	"preload":        "The partner balance was reloaded.",
	"user":           "The admin user was created.",
	"userupdate":     "The admin user was updated.",
	"userdeactivate": "The admin user was deactivated; their sessions have ended.",
	"useractivate":   "The admin user was reactivated.",
	"program":        "The program was created.",
	"programupdate":  "The program was saved.",
	"pcontrols":      "The program's spend controls were saved. They apply at once to every card of the program without controls of its own.",
	"controls":       "The card's own spend controls were saved. They apply from the next authorization, instead of its program's.",
	"controlsreset":  "The card's own spend controls were dropped: its program's controls apply again.",
}

func notice(r *http.Request) string { return notices[r.URL.Query().Get("done")] }

// ---- Dashboard ----

type partnerRow struct {
	Partner partner
	partnerBalance
}

type bar struct {
	Reason   string
	Code     string
	Count    int64
	Approved bool
	Y, W     int
}

type dashboardData struct {
	Summaries    []summary
	Balances     []partnerRow
	LowCount     int
	Stats        stats
	Bars         []bar
	ChartHeight  int
	Status       *Status
	LagSeconds   string
	SummaryError string
}

func (p *Panel) dashboard(w http.ResponseWriter, r *http.Request, s *session) {
	if !s.Nav["dashboard"] && s.Nav["bureau"] {
		// The bureau's account has nothing else to see.
		http.Redirect(w, r, Prefix+"bureau", http.StatusSeeOther)
		return
	}
	d := dashboardData{}
	can := map[string]bool{
		"summaries": s.can(p, "GET /admin/summaries"),
		"partners":  s.can(p, "GET /admin/partners"),
		"stats":     s.Nav["dashboard"],
	}
	if can["summaries"] {
		var out struct{ Summaries []summary }
		if err := p.call(r, s, "GET", "/admin/summaries", nil, &out); err != nil {
			p.fail(w, r, s, err)
			return
		}
		d.Summaries = out.Summaries
	}
	if can["partners"] {
		rows, err := p.partnerBalances(r, s)
		if err != nil {
			p.fail(w, r, s, err)
			return
		}
		slices.SortStableFunc(rows, func(a, b partnerRow) int {
			if a.Low() != b.Low() {
				if a.Low() {
					return -1
				}
				return 1
			}
			return 0
		})
		for _, b := range rows {
			if b.Low() {
				d.LowCount++
			}
		}
		d.Balances = rows
	}
	if can["stats"] {
		if err := p.call(r, s, "GET", "/admin/authorizations/stats?minutes=60", nil, &d.Stats); err != nil {
			p.fail(w, r, s, err)
			return
		}
	}
	var max int64 = 1
	for _, c := range d.Stats.ByReason {
		max = maxInt(max, c.Count)
	}
	for i, c := range d.Stats.ByReason {
		if i == 12 {
			break // the rest is in the table under the chart
		}
		d.Bars = append(d.Bars, bar{Reason: c.Reason, Code: p.code(c.Reason), Count: c.Count, Approved: c.Approved,
			Y: 8 + i*30, W: int(float64(c.Count) / float64(max) * 360)})
	}
	d.ChartHeight = 16 + len(d.Bars)*30
	if p.cfg.Status != nil {
		st := p.cfg.Status(r.Context())
		d.Status = &st
		d.LagSeconds = strconv.FormatFloat(st.LagAge.Seconds(), 'f', 1, 64)
	}
	p.render(w, r, s, http.StatusOK, "dashboard", page{Title: "Dashboard", Nav: "dashboard", Can: can, Data: d})
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// code is the DE39 the switch answers for a reason ("" when unknown).
func (p *Panel) code(reason string) string {
	if p.cfg.ActionCode == nil || reason == "" {
		return ""
	}
	return p.cfg.ActionCode(authz.Reason(reason))
}

// partnerBalances reads every partner's balances.
func (p *Panel) partnerBalances(r *http.Request, s *session) ([]partnerRow, error) {
	var ps struct{ Partners []partner }
	if err := p.call(r, s, "GET", "/admin/partners", nil, &ps); err != nil {
		return nil, err
	}
	var rows []partnerRow
	for _, pt := range ps.Partners {
		var bs struct{ Balances []partnerBalance }
		if err := p.call(r, s, "GET", "/admin/partners/"+url.PathEscape(pt.ID)+"/balances", nil, &bs); err != nil {
			return nil, err
		}
		for _, b := range bs.Balances {
			rows = append(rows, partnerRow{Partner: pt, partnerBalance: b})
		}
	}
	return rows, nil
}

// ---- Customers ----

type customersData struct {
	Partners  []partner // for registering a customer
	Query     string
	Customers []customer
	Page      int
	HasMore   bool
	Searched  bool
	Prev      string
	Next      string
}

func (p *Panel) customers(w http.ResponseWriter, r *http.Request, s *session) {
	p.showCustomers(w, r, s, http.StatusOK, nil)
}

func (p *Panel) showCustomers(w http.ResponseWriter, r *http.Request, s *session, status int, fe *formError) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	pg := pageNumber(r)
	d := customersData{Query: q, Page: pg, Searched: r.URL.Query().Has("q")}
	var out struct {
		Customers []customer
		HasMore   bool
	}
	v := url.Values{"q": {q}, "page": {strconv.Itoa(pg)}, "pageSize": {"20"}}
	err := p.call(r, s, "GET", "/admin/customers?"+v.Encode(), nil, &out)
	var e *apiError
	if errors.As(err, &e) && e.Status == http.StatusBadRequest {
		p.render(w, r, s, http.StatusBadRequest, "customers", page{Title: "Customers", Nav: "customers", Data: d,
			Err: &formError{Form: "search", Field: "q", Message: sentence(e.Message)}})
		return
	}
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	d.Customers, d.HasMore = out.Customers, out.HasMore
	can := map[string]bool{"register": s.can(p, "POST /admin/partners/{partnerId}/customers") && s.can(p, "GET /admin/partners")}
	if can["register"] {
		var ps struct{ Partners []partner }
		if err := p.call(r, s, "GET", "/admin/partners", nil, &ps); err != nil {
			p.fail(w, r, s, err)
			return
		}
		d.Partners = ps.Partners
	}
	link := func(n int) string {
		return Prefix + "customers?" + url.Values{"q": {q}, "page": {strconv.Itoa(n)}}.Encode()
	}
	if pg > 1 {
		d.Prev = link(pg - 1)
	}
	if d.HasMore {
		d.Next = link(pg + 1)
	}
	p.render(w, r, s, status, "customers", page{Title: "Customers", Nav: "customers", Can: can, Err: fe, Data: d})
}

type customerData struct {
	Customer customer
	Balances []balance
	Cards    []card
	// The program choice of the issuing forms; nil when the role may not
	// list the partner's programs (the default program applies).
	VirtualProgram, PhysicalProgram *programSelect
}

func (p *Panel) customer(w http.ResponseWriter, r *http.Request, s *session) {
	p.showCustomer(w, r, s, r.PathValue("id"), http.StatusOK, nil)
}

func (p *Panel) showCustomer(w http.ResponseWriter, r *http.Request, s *session, customerID string, status int, fe *formError) {
	id := url.PathEscape(customerID)
	var d customerData
	if err := p.call(r, s, "GET", "/admin/customers/"+id, nil, &d.Customer); err != nil {
		p.fail(w, r, s, err)
		return
	}
	var bs struct{ Balances []balance }
	if err := p.call(r, s, "GET", "/admin/customers/"+id+"/balances", nil, &bs); err != nil {
		p.fail(w, r, s, err)
		return
	}
	d.Balances = bs.Balances
	var cs struct{ Cards []card }
	if err := p.call(r, s, "GET", "/admin/customers/"+id+"/cards", nil, &cs); err != nil {
		p.fail(w, r, s, err)
		return
	}
	d.Cards = cs.Cards
	can := map[string]bool{
		"kyc":      s.can(p, "PUT /admin/customers/{customerId}/kyc"),
		"reload":   s.can(p, "POST /admin/balances/{balanceId}/reload"),
		"physical": s.can(p, "POST /admin/customers/{customerId}/cards/physical"),
		"virtual":  s.can(p, "POST /admin/customers/{customerId}/cards/virtual"),
	}
	if (can["physical"] || can["virtual"]) && len(d.Balances) > 0 && d.Customer.PartnerID != "" &&
		s.can(p, "GET /admin/partners/{partnerId}/programs") {
		var ps struct{ Programs []authz.Program }
		if err := p.call(r, s, "GET", apiPrograms(d.Customer.PartnerID), nil, &ps); err != nil {
			p.fail(w, r, s, err)
			return
		}
		pid := d.Customer.PartnerID
		d.VirtualProgram = newProgramSelect("virtual", "virt-program", pid, ps.Programs, d.Balances, authz.CardVirtual, fe)
		d.PhysicalProgram = newProgramSelect("physical", "phys-program", pid, ps.Programs, d.Balances, authz.CardPhysical, fe)
	}
	name := strings.TrimSpace(d.Customer.FirstName + " " + d.Customer.LastName)
	p.render(w, r, s, status, "customer", page{Title: name, Nav: "customers", Can: can, Notice: noticeUnlessErr(r, fe), Err: fe, Data: d})
}

func noticeUnlessErr(r *http.Request, fe *formError) string {
	if fe != nil {
		return ""
	}
	return notice(r)
}

// ---- A card ----

type cardData struct {
	Card         card
	Customer     customer
	Transactions []transaction
	// Cursor pages of the transactions (Page, Prev, Next for "pager").
	Page       int
	Prev, Next string
	First      string // the newest page, when the way back is not known
	Query      string // this page's position, carried by the details links
	// Controls are the spend controls in force (nil when the role may
	// not read them).
	Controls *cardControls
}

func (p *Panel) card(w http.ResponseWriter, r *http.Request, s *session) {
	p.showCard(w, r, s, http.StatusOK, nil)
}

// loadCard reads the card with its masked PAN and its customer.
func (p *Panel) loadCard(r *http.Request, s *session) (card, customer, error) {
	id := url.PathEscape(r.PathValue("id"))
	var c card
	if err := p.call(r, s, "GET", "/admin/cards/"+id+"/status", nil, &c); err != nil {
		return c, customer{}, err
	}
	var cu customer
	if err := p.call(r, s, "GET", "/admin/customers/"+url.PathEscape(c.CustomerID), nil, &cu); err != nil {
		return c, cu, err
	}
	var cs struct{ Cards []card }
	if err := p.call(r, s, "GET", "/admin/customers/"+url.PathEscape(c.CustomerID)+"/cards", nil, &cs); err != nil {
		return c, cu, err
	}
	for _, x := range cs.Cards {
		if x.ID == c.ID {
			c = x
		}
	}
	return c, cu, nil
}

// txnsPerPage is the length of a page of a card's transactions.
const txnsPerPage = 20

func (p *Panel) showCard(w http.ResponseWriter, r *http.Request, s *session, status int, fe *formError) {
	c, cu, err := p.loadCard(r, s)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	d := cardData{Card: c, Customer: cu}
	cur := readCursor(r)
	v := url.Values{"limit": {strconv.Itoa(txnsPerPage)}}
	if cur.after != "" {
		v.Set("starting_after", cur.after)
	}
	var tx struct {
		Data    []transaction
		HasMore bool `json:"has_more"`
	}
	if err := p.call(r, s, "GET", "/admin/cards/"+url.PathEscape(c.ID)+"/transactions?"+v.Encode(), nil, &tx); err != nil {
		p.fail(w, r, s, err)
		return
	}
	d.Transactions = tx.Data
	last := ""
	if len(tx.Data) > 0 {
		last = tx.Data[len(tx.Data)-1].ID
	}
	d.Page, d.Prev, d.Next, d.First = cur.links(Prefix+"cards/"+url.PathEscape(c.ID), "#transactions", last, tx.HasMore)
	d.Query = cur.query().Encode()
	if s.can(p, "GET /admin/cards/{cardId}/controls") {
		if d.Controls, err = p.loadCardControls(r, s, c, fe); err != nil {
			p.fail(w, r, s, err)
			return
		}
	}
	removed := c.Status == string(authz.StatusRemoved)
	virtualish := c.Type == string(authz.CardVirtual) || c.Type == string(authz.CardDigitalFirst)
	replaceRoute := s.can(p, "POST /admin/cards/{cardId}/replace")
	if c.Type == string(authz.CardVirtual) {
		// A virtual replacement is a new virtual card: for the roles
		// that may create one (the API checks the same).
		replaceRoute = replaceRoute && s.can(p, "POST /admin/customers/{customerId}/cards/virtual")
	}
	can := map[string]bool{
		"lock":     !removed && !c.Locked() && s.can(p, "POST /admin/cards/{cardId}/lock"),
		"unlock":   !removed && c.Locked() && !c.Irreversible() && s.can(p, "POST /admin/cards/{cardId}/unlock"),
		"remove":   !removed && s.can(p, "DELETE /admin/cards/{cardId}"),
		"cvv":      !removed && virtualish && s.can(p, "POST /admin/cards/{cardId}/cvv"),
		"print":    !removed && c.Type == string(authz.CardVirtual) && s.can(p, "POST /admin/cards/{cardId}/print"),
		"activate": c.Type == string(authz.CardPhysical) && c.Status == string(authz.StatusLinked) && s.can(p, "POST /admin/cards/{cardId}/activate"),
		// The role may unlock, but this lock is for good: the page says why.
		"unlockRole": s.can(p, "POST /admin/cards/{cardId}/unlock"),
		// A lock asked for by a network or an acquirer may replace a
		// reversible lock; a permanent one stays.
		"xlock": !removed && !c.Irreversible() && s.can(p, "POST /admin/cards/{cardId}/external-lock"),
		// A digital-first copy is replaced with its virtual card; a card
		// is replaced once.
		"replace":  !removed && c.ReplacedBy == "" && c.Type != string(authz.CardDigitalFirst) && replaceRoute,
		"physical": c.Type == string(authz.CardPhysical),
		// A card's own controls replace its program's; DELETE hands it
		// back to them.
		"controls":      !removed && s.can(p, "PUT /admin/cards/{cardId}/controls"),
		"controlsRole":  s.can(p, "PUT /admin/cards/{cardId}/controls"),
		"controlsReset": !removed && d.Controls != nil && d.Controls.Source == "card" && s.can(p, "DELETE /admin/cards/{cardId}/controls"),
		"programLink":   c.PartnerID != "" && s.can(p, "GET /admin/partners/{partnerId}/programs/{programId}"),
	}
	p.render(w, r, s, status, "card", page{Title: "Card " + c.Masked(), Nav: "customers", Can: can,
		Notice: noticeUnlessErr(r, fe), Err: fe, Data: d})
}

// GET /panel/cards/{id}/transactions/{txn}: one transaction with its history.
func (p *Panel) transaction(w http.ResponseWriter, r *http.Request, s *session) {
	c, cu, err := p.loadCard(r, s)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	var t transaction
	if err := p.call(r, s, "GET", "/admin/cards/"+url.PathEscape(c.ID)+"/transactions/"+url.PathEscape(r.PathValue("txn")), nil, &t); err != nil {
		p.fail(w, r, s, err)
		return
	}
	t.History = t.history()
	p.render(w, r, s, http.StatusOK, "transaction", page{Title: t.Title() + " of " + formatMoney(t.Amount, t.Currency), Nav: "customers",
		Data: map[string]any{"Card": c, "Customer": cu, "Txn": t, "Back": readCursor(r).url(Prefix+"cards/"+url.PathEscape(c.ID), "#transactions")}})
}

type messagesData struct {
	Card           card
	Customer       customer
	Authorizations []authorization
	Page           int
	Prev, Next     string
}

// GET /panel/cards/{id}/messages: the card's ISO messages as the journal
// recorded them (RRN, STAN, terminal), for tracing one with the network.
func (p *Panel) messages(w http.ResponseWriter, r *http.Request, s *session) {
	c, cu, err := p.loadCard(r, s)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	d := messagesData{Card: c, Customer: cu, Page: pageNumber(r)}
	var tx struct {
		Authorizations []authorization
		HasMore        bool
	}
	v := url.Values{"page": {strconv.Itoa(d.Page)}, "pageSize": {"20"}}
	if err := p.call(r, s, "GET", "/admin/cards/"+url.PathEscape(c.ID)+"/authorizations?"+v.Encode(), nil, &tx); err != nil {
		p.fail(w, r, s, err)
		return
	}
	for i := range tx.Authorizations {
		a := &tx.Authorizations[i]
		a.Code = p.code(a.Reason)
		if alpha := authz.AlphaCurrency(a.Currency); alpha != "" {
			a.Money = formatMoney(a.Amount, alpha)
		} else {
			a.Money = strings.TrimSpace(strconv.FormatInt(a.Amount, 10) + " " + a.Currency)
		}
	}
	d.Authorizations = tx.Authorizations
	link := func(n int) string {
		return Prefix + "cards/" + url.PathEscape(c.ID) + "/messages?page=" + strconv.Itoa(n)
	}
	if d.Page > 1 {
		d.Prev = link(d.Page - 1)
	}
	if tx.HasMore {
		d.Next = link(d.Page + 1)
	}
	p.render(w, r, s, http.StatusOK, "messages", page{Title: "Messages of card " + c.Masked(), Nav: "customers", Data: d})
}

func (p *Panel) confirmRemove(w http.ResponseWriter, r *http.Request, s *session) {
	c, cu, err := p.loadCard(r, s)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	p.render(w, r, s, http.StatusOK, "remove", page{Title: "Remove card " + c.Masked(), Nav: "customers",
		Data: cardData{Card: c, Customer: cu}})
}

// ---- Partners ----

type partnersData struct {
	Partners   []partnerView
	Page       int
	Prev, Next string
}

type partnerView struct {
	partner
	Balances []partnerBalance
}

const partnersPerPage = 10

func (p *Panel) partners(w http.ResponseWriter, r *http.Request, s *session) {
	p.showPartners(w, r, s, http.StatusOK, nil)
}

func (p *Panel) showPartners(w http.ResponseWriter, r *http.Request, s *session, status int, fe *formError) {
	var ps struct{ Partners []partner }
	if err := p.call(r, s, "GET", "/admin/partners", nil, &ps); err != nil {
		p.fail(w, r, s, err)
		return
	}
	d := partnersData{Page: pageNumber(r)}
	start := (d.Page - 1) * partnersPerPage
	for i, pt := range ps.Partners {
		if i < start || i >= start+partnersPerPage {
			continue
		}
		var bs struct{ Balances []partnerBalance }
		if err := p.call(r, s, "GET", "/admin/partners/"+url.PathEscape(pt.ID)+"/balances", nil, &bs); err != nil {
			p.fail(w, r, s, err)
			return
		}
		d.Partners = append(d.Partners, partnerView{partner: pt, Balances: bs.Balances})
	}
	if d.Page > 1 {
		d.Prev = Prefix + "partners?page=" + strconv.Itoa(d.Page-1)
	}
	if start+partnersPerPage < len(ps.Partners) {
		d.Next = Prefix + "partners?page=" + strconv.Itoa(d.Page+1)
	}
	can := map[string]bool{
		"create":   s.can(p, "POST /admin/partners"),
		"pbalance": s.can(p, "POST /admin/partners/{partnerId}/balances"),
		"reload":   s.can(p, "POST /admin/partners/{partnerId}/balances/{balanceId}/reload"),
		"webhooks": s.can(p, "GET /admin/partners/{partnerId}/webhooks"),
		"programs": s.can(p, "GET /admin/partners/{partnerId}/programs"),
	}
	p.render(w, r, s, status, "partners", page{Title: "Partners", Nav: "partners", Can: can,
		Notice: noticeUnlessErr(r, fe), Err: fe, Data: d})
}

// ---- The bureau's queue ----

type bureauOrder struct {
	card
	Blank           bool
	DeliveryAddress *struct{ Name, Line1, Line2, City, PostalCode, Country string }
	OrderedAt       time.Time
}

// GET /panel/bureau: plastics waiting for the personalisation bureau.
func (p *Panel) bureau(w http.ResponseWriter, r *http.Request, s *session) {
	var out struct{ Orders []bureauOrder }
	if err := p.call(r, s, "GET", "/admin/bureau/orders", nil, &out); err != nil {
		p.fail(w, r, s, err)
		return
	}
	can := map[string]bool{
		"made":  s.can(p, "POST /admin/bureau/cards/{cardId}/personalised"),
		"cards": s.can(p, "GET /admin/cards/{cardId}/status"),
	}
	p.render(w, r, s, http.StatusOK, "bureau", page{Title: "Bureau", Nav: "bureau", Can: can, Notice: notice(r), Data: out.Orders})
}

// POST /panel/bureau/{id}/personalised: the plastic is made.
func (p *Panel) personalised(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if err := p.call(r, s, "POST", "/admin/bureau/cards/"+url.PathEscape(id)+"/personalised", nil, nil); err != nil {
		p.fail(w, r, s, err)
		return
	}
	p.log.InfoContext(r.Context(), "panel: plastic reported made", "card", id, "admin", s.Username)
	done(w, r, Prefix+"bureau", "personalised")
}

// ---- Admin users ----

func (p *Panel) users(w http.ResponseWriter, r *http.Request, s *session) {
	p.showUsers(w, r, s, http.StatusOK, nil)
}

func (p *Panel) showUsers(w http.ResponseWriter, r *http.Request, s *session, status int, fe *formError) {
	var us struct{ Users []adminUser }
	if err := p.call(r, s, "GET", "/admin/users", nil, &us); err != nil {
		p.fail(w, r, s, err)
		return
	}
	p.render(w, r, s, status, "users", page{Title: "Admin users", Nav: "users", Notice: noticeUnlessErr(r, fe), Err: fe,
		Data: map[string]any{"Users": us.Users, "Roles": []string{"Admin", "Manager", "Employee", "Bureau"}, "Now": time.Now()}})
}
