package panel

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/antaca/antaca/authz"
)

// Form handlers: each builds the /admin request the form stands for and
// sends it to the API as the signed-in admin. The API decides; on success
// the panel redirects to the page with a notice, on a refusal it shows the
// page again with the API's message next to the form.

// refusal turns an API error into a message next to the form, or handles
// it as a page error (ended session, role, not found, unavailable).
// It reports whether the error was handled as a page error.
func (p *Panel) refusal(w http.ResponseWriter, r *http.Request, s *session, form string, err error) (*formError, int, bool) {
	var e *apiError
	if !errors.As(err, &e) {
		p.fail(w, r, s, err)
		return nil, 0, true
	}
	switch e.Status {
	case http.StatusBadRequest, http.StatusConflict, http.StatusUnprocessableEntity, http.StatusTooManyRequests:
		return fieldError(form, e, r.PostForm), e.Status, false
	}
	p.fail(w, r, s, err)
	return nil, 0, true
}

// fieldError places an API refusal by the field the API names (its
// "field"); one with no field, or a field the form does not show, stands
// at the form's top. Next to its field the message loses the "Invalid
// program: invalid controls: " the API starts it with.
func fieldError(form string, e *apiError, values url.Values) *formError {
	fe := &formError{Form: form, Field: formField(e.Field), Message: sentence(e.Message), Values: values, Code: e.Code}
	if fe.fieldShown() {
		fe.Message = withoutPrefix(e.Message)
	}
	return fe
}

func done(w http.ResponseWriter, r *http.Request, path, what string) {
	http.Redirect(w, r, path+"?done="+what, http.StatusSeeOther)
}

// POST /panel/customers: registers a customer of a partner.
func (p *Panel) registerCustomer(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	body := map[string]string{}
	for _, k := range []string{"externalId", "firstName", "lastName", "email", "phone"} {
		if v := strings.TrimSpace(f.Get(k)); v != "" || k == "firstName" || k == "lastName" {
			body[k] = v
		}
	}
	var c customer
	if err := p.call(r, s, "POST", "/admin/partners/"+url.PathEscape(f.Get("partnerId"))+"/customers", body, &c); err != nil {
		if fe, st, handled := p.refusal(w, r, s, "register", err); !handled {
			p.showCustomers(w, r, s, st, fe)
		}
		return
	}
	done(w, r, Prefix+"customers/"+url.PathEscape(c.ID), "customer")
}

// POST /panel/customers/{id}/kyc
func (p *Panel) setKYC(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	err := p.call(r, s, "PUT", "/admin/customers/"+url.PathEscape(id)+"/kyc", map[string]string{"status": r.PostForm.Get("status")}, nil)
	if err != nil {
		if fe, st, handled := p.refusal(w, r, s, "kyc", err); !handled {
			p.showCustomer(w, r, s, id, st, fe)
		}
		return
	}
	done(w, r, Prefix+"customers/"+url.PathEscape(id), "kyc")
}

// POST /panel/balances/{id}/reload (amount in major units, e.g. 12.50)
func (p *Panel) reloadBalance(w http.ResponseWriter, r *http.Request, s *session) {
	id := url.PathEscape(r.PathValue("id"))
	var b balance
	if err := p.call(r, s, "GET", "/admin/balances/"+id, nil, &b); err != nil {
		p.fail(w, r, s, err)
		return
	}
	form := "reload-" + b.ID
	amount, err := parseMoney(r.PostForm.Get("amount"), b.Currency)
	if err != nil {
		p.showCustomer(w, r, s, b.CustomerID, http.StatusBadRequest, &formError{Form: form, Field: "amount",
			Message: "Enter " + amountHint(b.Currency) + " (in " + b.Currency + ").", Values: r.PostForm})
		return
	}
	if err := p.call(r, s, "POST", "/admin/balances/"+id+"/reload", map[string]any{"amount": amount}, nil); err != nil {
		if fe, st, handled := p.refusal(w, r, s, form, err); !handled {
			p.showCustomer(w, r, s, b.CustomerID, st, fe)
		}
		return
	}
	done(w, r, Prefix+"customers/"+url.PathEscape(b.CustomerID), "reload")
}

// POST /panel/customers/{id}/cards/physical
func (p *Panel) orderPhysical(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	f := r.PostForm
	addr := deliveryAddress(f)
	if addr == nil {
		addr = map[string]string{}
	}
	body := map[string]any{"balanceId": f.Get("balanceId"), "deliveryAddress": addr}
	if prg := f.Get("programId"); prg != "" {
		body["programId"] = prg
	}
	var c card
	if err := p.call(r, s, "POST", "/admin/customers/"+url.PathEscape(id)+"/cards/physical", body, &c); err != nil {
		if fe, st, handled := p.issueRefusal(w, r, s, "physical", err); !handled {
			p.showCustomer(w, r, s, id, st, fe)
		}
		return
	}
	done(w, r, Prefix+"cards/"+url.PathEscape(c.ID), "physical")
}

// issueRefusal is refusal for the forms that issue a card, where a
// program chosen that the partner does not have (404 PROGRAM_NOT_FOUND)
// is a refusal of the form too, shown next to the program's select.
func (p *Panel) issueRefusal(w http.ResponseWriter, r *http.Request, s *session, form string, err error) (*formError, int, bool) {
	var e *apiError
	if errors.As(err, &e) && e.Code == "PROGRAM_NOT_FOUND" && r.PostForm.Get("programId") != "" {
		return fieldError(form, e, r.PostForm), e.Status, false
	}
	return p.refusal(w, r, s, form, err)
}

// deliveryAddress reads the address fields of a form; nil when all are empty.
func deliveryAddress(f url.Values) map[string]string {
	addr := map[string]string{}
	empty := true
	for _, k := range []string{"name", "line1", "line2", "city", "postalCode", "country"} {
		v := strings.TrimSpace(f.Get(k))
		if k == "country" {
			v = strings.ToUpper(v)
		}
		addr[k] = v
		empty = empty && v == ""
	}
	if empty {
		return nil
	}
	return addr
}

// POST /panel/customers/{id}/cards/virtual
func (p *Panel) issueVirtual(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	body := map[string]string{"balanceId": r.PostForm.Get("balanceId")}
	if prg := r.PostForm.Get("programId"); prg != "" {
		body["programId"] = prg
	}
	var c card
	if err := p.call(r, s, "POST", "/admin/customers/"+url.PathEscape(id)+"/cards/virtual", body, &c); err != nil {
		if fe, st, handled := p.issueRefusal(w, r, s, "virtual", err); !handled {
			p.showCustomer(w, r, s, id, st, fe)
		}
		return
	}
	done(w, r, Prefix+"cards/"+url.PathEscape(c.ID), "virtual")
}

// POST /panel/cards/{id}/{action}: lock, unlock, remove, cvv, print,
// activate, external-lock, replace.
func (p *Panel) cardAction(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	base := "/admin/cards/" + url.PathEscape(id)
	action := r.PathValue("action")
	var method, path string
	var body any
	switch action {
	case "lock":
		n, err := strconv.Atoi(r.PostForm.Get("reason"))
		if err != nil || n < 1 || n > 8 {
			p.showCard(w, r, s, http.StatusBadRequest, &formError{Form: "lock", Field: "reason",
				Message: "Choose why the card is locked.", Values: r.PostForm})
			return
		}
		method, path, body = "POST", base+"/lock", map[string]int{"reason": n}
	case "external-lock":
		f := r.PostForm
		n, err := strconv.Atoi(f.Get("reason"))
		if err != nil || n < 1 || n > 8 {
			p.showCard(w, r, s, http.StatusBadRequest, &formError{Form: action, Field: "reason",
				Message: "Choose the reason the network or acquirer gave.", Values: f})
			return
		}
		method, path = "POST", base+"/external-lock"
		body = map[string]any{"reason": n, "source": f.Get("source"), "reference": strings.TrimSpace(f.Get("reference"))}
	case "replace":
		f := r.PostForm
		if f.Get("confirm") != "yes" {
			p.showCard(w, r, s, http.StatusBadRequest, &formError{Form: action, Field: "confirm",
				Message: "Tick the box to confirm: the old card is locked for good when it is replaced.", Values: f})
			return
		}
		in := map[string]any{"keep_old_until_activated": f.Get("keepOld") == "yes"}
		if addr := deliveryAddress(f); addr != nil {
			in["deliveryAddress"] = addr
		}
		var out struct{ Card card }
		if err := p.call(r, s, "POST", base+"/replace", in, &out); err != nil {
			if fe, st, handled := p.refusal(w, r, s, action, err); !handled {
				p.showCard(w, r, s, st, fe)
			}
			return
		}
		p.log.InfoContext(r.Context(), "panel: card action", "action", action, "card", id, "new_card", out.Card.ID, "admin", s.Username)
		what := "replaced"
		if in["keep_old_until_activated"] == true && out.Card.Type == string(authz.CardPhysical) {
			what = "replaced-keep"
		}
		done(w, r, Prefix+"cards/"+url.PathEscape(out.Card.ID), what)
		return
	case "unlock", "activate":
		method, path = "POST", base+"/"+action
	case "cvv", "print":
		method, path, body = "POST", base+"/"+action, map[string]any{}
	case "remove":
		if r.PostForm.Get("confirm") != "yes" {
			http.Redirect(w, r, Prefix+"cards/"+url.PathEscape(id)+"/remove", http.StatusSeeOther)
			return
		}
		method, path = "DELETE", base
	default:
		p.render(w, r, s, http.StatusNotFound, "message", page{Title: "Not found", Message: "There is no such card action."})
		return
	}
	if err := p.call(r, s, method, path, body, nil); err != nil {
		if fe, st, handled := p.refusal(w, r, s, action, err); !handled {
			p.showCard(w, r, s, st, fe)
		}
		return
	}
	p.log.InfoContext(r.Context(), "panel: card action", "action", action, "card", id, "admin", s.Username)
	done(w, r, Prefix+"cards/"+url.PathEscape(id), action)
}

// POST /panel/partners
func (p *Panel) createPartner(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	body := map[string]string{"id": strings.TrimSpace(f.Get("id")), "name": strings.TrimSpace(f.Get("name")),
		"bin": strings.TrimSpace(f.Get("bin")), "currency": strings.ToUpper(strings.TrimSpace(f.Get("currency"))),
		"fundingModel": f.Get("fundingModel")}
	if err := p.call(r, s, "POST", "/admin/partners", body, nil); err != nil {
		if fe, st, handled := p.refusal(w, r, s, "partner", err); !handled {
			p.showPartners(w, r, s, st, fe)
		}
		return
	}
	done(w, r, Prefix+"partners", "partner")
}

// POST /panel/partners/{id}/balances
func (p *Panel) createPartnerBalance(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	f := r.PostForm
	cur := strings.ToUpper(strings.TrimSpace(f.Get("currency")))
	form := "pbalance-" + id
	var threshold int64
	if t := strings.TrimSpace(f.Get("lowBalanceThreshold")); t != "" && t != "0" {
		n, err := parseMoney(t, cur)
		if err != nil {
			p.showPartners(w, r, s, http.StatusBadRequest, &formError{Form: form, Field: "lowBalanceThreshold",
				Message: "Enter the alert threshold as " + amountHint(cur) + ", or leave it empty for no alert.", Values: f})
			return
		}
		threshold = n
	}
	body := map[string]any{"type": f.Get("type"), "currency": cur, "lowBalanceThreshold": threshold}
	if err := p.call(r, s, "POST", "/admin/partners/"+url.PathEscape(id)+"/balances", body, nil); err != nil {
		if fe, st, handled := p.refusal(w, r, s, form, err); !handled {
			p.showPartners(w, r, s, st, fe)
		}
		return
	}
	done(w, r, Prefix+"partners", "pbalance")
}

// POST /panel/partners/{id}/balances/{bid}/reload
func (p *Panel) reloadPartnerBalance(w http.ResponseWriter, r *http.Request, s *session) {
	path := "/admin/partners/" + url.PathEscape(r.PathValue("id")) + "/balances/" + url.PathEscape(r.PathValue("bid"))
	var b partnerBalance
	if err := p.call(r, s, "GET", path, nil, &b); err != nil {
		p.fail(w, r, s, err)
		return
	}
	form := "preload-" + b.ID
	amount, err := parseMoney(r.PostForm.Get("amount"), b.Currency)
	if err != nil {
		p.showPartners(w, r, s, http.StatusBadRequest, &formError{Form: form, Field: "amount",
			Message: "Enter " + amountHint(b.Currency) + " (in " + b.Currency + ").", Values: r.PostForm})
		return
	}
	if err := p.call(r, s, "POST", path+"/reload", map[string]any{"amount": amount}, nil); err != nil {
		if fe, st, handled := p.refusal(w, r, s, form, err); !handled {
			p.showPartners(w, r, s, st, fe)
		}
		return
	}
	done(w, r, Prefix+"partners", "preload")
}

// POST /panel/users
func (p *Panel) createUser(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	body := map[string]string{"username": strings.TrimSpace(f.Get("username")), "password": f.Get("password"), "role": f.Get("role")}
	if err := p.call(r, s, "POST", "/admin/users", body, nil); err != nil {
		if fe, st, handled := p.refusal(w, r, s, "user", err); !handled {
			fe.Values.Del("password")
			p.showUsers(w, r, s, st, fe)
		}
		return
	}
	done(w, r, Prefix+"users", "user")
}

// POST /panel/users/{name}: role=..., or active=false / active=true.
func (p *Panel) updateUser(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	f := r.PostForm
	body := map[string]any{}
	what := "userupdate"
	if v := f.Get("role"); v != "" {
		body["role"] = v
	}
	switch f.Get("active") {
	case "false":
		body["active"], what = false, "userdeactivate"
	case "true":
		body["active"], what = true, "useractivate"
	}
	if err := p.call(r, s, "PATCH", "/admin/users/"+url.PathEscape(name), body, nil); err != nil {
		if fe, st, handled := p.refusal(w, r, s, "user-"+name, err); !handled {
			p.showUsers(w, r, s, st, fe)
		}
		return
	}
	done(w, r, Prefix+"users", what)
}
