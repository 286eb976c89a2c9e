package panel

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/antaca/antaca/api"
)

// A partner's webhook endpoints and their delivery log: every read and
// action is the /admin/partners/{partnerId}/webhooks API.

type webhooksData struct {
	Partner   partner
	Endpoints []webhookEndpoint
	Types     []string
	// Created is the endpoint just created or whose secret was just
	// rotated: the page shows its secret, this once.
	Created *webhookEndpoint
	Rotated bool
}

func webhooksPath(partnerID string) string {
	return Prefix + "partners/" + url.PathEscape(partnerID) + "/webhooks"
}

func apiWebhooks(partnerID string) string {
	return "/admin/partners/" + url.PathEscape(partnerID) + "/webhooks"
}

// GET /panel/partners/{id}/webhooks
func (p *Panel) webhooks(w http.ResponseWriter, r *http.Request, s *session) {
	p.showWebhooks(w, r, s, http.StatusOK, nil, nil, false)
}

func (p *Panel) showWebhooks(w http.ResponseWriter, r *http.Request, s *session, status int, fe *formError, created *webhookEndpoint, rotated bool) {
	pid := r.PathValue("id")
	d := webhooksData{Types: api.WebhookEventTypes, Created: created, Rotated: rotated}
	if err := p.call(r, s, "GET", "/admin/partners/"+url.PathEscape(pid), nil, &d.Partner); err != nil {
		p.fail(w, r, s, err)
		return
	}
	var list struct{ Data []webhookEndpoint }
	if err := p.call(r, s, "GET", apiWebhooks(pid), nil, &list); err != nil {
		p.fail(w, r, s, err)
		return
	}
	d.Endpoints = list.Data
	can := map[string]bool{
		"create":    s.can(p, "POST /admin/partners/{partnerId}/webhooks"),
		"delete":    s.can(p, "DELETE /admin/partners/{partnerId}/webhooks/{endpointId}"),
		"rotate":    s.can(p, "POST /admin/partners/{partnerId}/webhooks/{endpointId}/rotate-secret"),
		"disable":   s.can(p, "POST /admin/partners/{partnerId}/webhooks/{endpointId}/disable"),
		"enable":    s.can(p, "POST /admin/partners/{partnerId}/webhooks/{endpointId}/enable"),
		"redeliver": s.can(p, "POST /admin/partners/{partnerId}/webhooks/{endpointId}/deliveries/{deliveryId}/redeliver"),
	}
	notice := noticeUnlessErr(r, fe)
	if created != nil {
		notice = ""
	}
	p.render(w, r, s, status, "webhooks", page{Title: "Webhooks of " + d.Partner.Name, Nav: "partners", Can: can,
		Notice: notice, Err: fe, Data: d})
}

// POST /panel/partners/{id}/webhooks: the answer shows the new secret.
func (p *Panel) createWebhook(w http.ResponseWriter, r *http.Request, s *session) {
	pid := r.PathValue("id")
	f := r.PostForm
	body := map[string]any{"url": strings.TrimSpace(f.Get("url")), "events": f["events"]}
	if len(f["events"]) == 0 {
		body["events"] = []string{}
	}
	var ep webhookEndpoint
	if err := p.call(r, s, "POST", apiWebhooks(pid), body, &ep); err != nil {
		if fe, st, handled := p.refusal(w, r, s, "webhook", err); !handled {
			if strings.HasPrefix(fe.Field, "events[") {
				fe.Field = "events"
			}
			p.showWebhooks(w, r, s, st, fe, nil, false)
		}
		return
	}
	p.log.InfoContext(r.Context(), "panel: webhook endpoint created", "partner", pid, "endpoint", ep.ID, "admin", s.Username)
	p.showWebhooks(w, r, s, http.StatusCreated, nil, &ep, false)
}

// POST /panel/partners/{id}/webhooks/{eid}/{action}: disable, enable,
// rotate-secret, delete.
func (p *Panel) webhookAction(w http.ResponseWriter, r *http.Request, s *session) {
	pid, eid := r.PathValue("id"), r.PathValue("eid")
	path := apiWebhooks(pid) + "/" + url.PathEscape(eid)
	action := r.PathValue("action")
	form := "hook-" + eid
	var err error
	switch action {
	case "disable", "enable":
		err = p.call(r, s, "POST", path+"/"+action, nil, nil)
	case "rotate-secret":
		if r.PostForm.Get("confirm") != "yes" {
			http.Redirect(w, r, webhooksPath(pid)+"/"+url.PathEscape(eid)+"/rotate-secret", http.StatusSeeOther)
			return
		}
		var ep webhookEndpoint
		if err = p.call(r, s, "POST", path+"/rotate-secret", nil, &ep); err == nil {
			p.log.InfoContext(r.Context(), "panel: webhook secret rotated", "partner", pid, "endpoint", eid, "admin", s.Username)
			p.showWebhooks(w, r, s, http.StatusOK, nil, &ep, true)
			return
		}
	case "delete":
		if r.PostForm.Get("confirm") != "yes" {
			http.Redirect(w, r, webhooksPath(pid)+"/"+url.PathEscape(eid)+"/delete", http.StatusSeeOther)
			return
		}
		err = p.call(r, s, "DELETE", path, nil, nil)
	default:
		p.render(w, r, s, http.StatusNotFound, "message", page{Title: "Not found", Message: "There is no such webhook action."})
		return
	}
	if err != nil {
		if fe, st, handled := p.refusal(w, r, s, form, err); !handled {
			p.showWebhooks(w, r, s, st, fe, nil, false)
		}
		return
	}
	p.log.InfoContext(r.Context(), "panel: webhook action", "action", action, "partner", pid, "endpoint", eid, "admin", s.Username)
	done(w, r, webhooksPath(pid), map[string]string{"disable": "hookdisable", "enable": "hookenable", "delete": "hookdelete"}[action])
}

// endpointOf finds one endpoint of the partner (the API lists them; there
// are at most 16).
func (p *Panel) endpointOf(r *http.Request, s *session, pid, eid string) (partner, webhookEndpoint, bool, error) {
	var pt partner
	if err := p.call(r, s, "GET", "/admin/partners/"+url.PathEscape(pid), nil, &pt); err != nil {
		return pt, webhookEndpoint{}, false, err
	}
	var list struct{ Data []webhookEndpoint }
	if err := p.call(r, s, "GET", apiWebhooks(pid), nil, &list); err != nil {
		return pt, webhookEndpoint{}, false, err
	}
	for _, e := range list.Data {
		if e.ID == eid {
			return pt, e, true, nil
		}
	}
	return pt, webhookEndpoint{}, false, nil
}

// GET /panel/partners/{id}/webhooks/{eid}/delete and .../rotate-secret:
// the confirmation of what cannot be undone.
func (p *Panel) confirmWebhookAction(w http.ResponseWriter, r *http.Request, s *session) {
	action := r.PathValue("action")
	if action != "delete" && action != "rotate-secret" {
		p.render(w, r, s, http.StatusNotFound, "message", page{Title: "Not found", Message: "There is no such page in the administration panel."})
		return
	}
	pt, ep, ok, err := p.endpointOf(r, s, r.PathValue("id"), r.PathValue("eid"))
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	if !ok {
		p.render(w, r, s, http.StatusNotFound, "message", page{Title: "Not found", Message: "Webhook endpoint not found."})
		return
	}
	title := map[string]string{"delete": "Delete webhook endpoint", "rotate-secret": "Rotate webhook secret"}[action]
	p.render(w, r, s, http.StatusOK, "webhookconfirm", page{Title: title, Nav: "partners",
		Data: map[string]any{"Partner": pt, "Endpoint": ep, "Action": action}})
}

type deliveriesData struct {
	Partner    partner
	Endpoint   webhookEndpoint
	Deliveries []webhookDelivery
	Page       int
	Prev, Next string
	First      string
	Query      string // this page's position, which a redelivery comes back to
}

// GET /panel/partners/{id}/webhooks/{eid}: the delivery log.
func (p *Panel) deliveries(w http.ResponseWriter, r *http.Request, s *session) {
	p.showDeliveries(w, r, s, http.StatusOK, nil)
}

const deliveriesPerPage = 25

func (p *Panel) showDeliveries(w http.ResponseWriter, r *http.Request, s *session, status int, fe *formError) {
	pid, eid := r.PathValue("id"), r.PathValue("eid")
	pt, ep, ok, err := p.endpointOf(r, s, pid, eid)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	if !ok {
		p.render(w, r, s, http.StatusNotFound, "message", page{Title: "Not found", Message: "Webhook endpoint not found."})
		return
	}
	cur := readCursor(r)
	v := url.Values{"limit": {strconv.Itoa(deliveriesPerPage)}}
	if cur.after != "" {
		v.Set("starting_after", cur.after)
	}
	var out struct {
		Data    []webhookDelivery
		HasMore bool `json:"has_more"`
	}
	if err := p.call(r, s, "GET", apiWebhooks(pid)+"/"+url.PathEscape(eid)+"/deliveries?"+v.Encode(), nil, &out); err != nil {
		p.fail(w, r, s, err)
		return
	}
	base := webhooksPath(pid) + "/" + url.PathEscape(eid)
	d := deliveriesData{Partner: pt, Endpoint: ep, Deliveries: out.Data, Query: cur.query().Encode()}
	last := ""
	if len(out.Data) > 0 {
		last = out.Data[len(out.Data)-1].ID
	}
	d.Page, d.Prev, d.Next, d.First = cur.links(base, "", last, out.HasMore)
	can := map[string]bool{
		"redeliver": ep.Status != "disabled" &&
			s.can(p, "POST /admin/partners/{partnerId}/webhooks/{endpointId}/deliveries/{deliveryId}/redeliver"),
	}
	p.render(w, r, s, status, "deliveries", page{Title: "Deliveries to " + ep.URL, Nav: "partners", Can: can,
		Notice: noticeUnlessErr(r, fe), Err: fe, Data: d})
}

// POST /panel/partners/{id}/webhooks/{eid}/deliveries/{did}/redeliver
func (p *Panel) redeliver(w http.ResponseWriter, r *http.Request, s *session) {
	pid, eid, did := r.PathValue("id"), r.PathValue("eid"), r.PathValue("did")
	path := apiWebhooks(pid) + "/" + url.PathEscape(eid) + "/deliveries/" + url.PathEscape(did) + "/redeliver"
	if err := p.call(r, s, "POST", path, nil, nil); err != nil {
		if fe, st, handled := p.refusal(w, r, s, "redeliver-"+did, err); !handled {
			p.showDeliveries(w, r, s, st, fe)
		}
		return
	}
	p.log.InfoContext(r.Context(), "panel: webhook redelivery", "partner", pid, "endpoint", eid, "delivery", did, "admin", s.Username)
	// Back to the page of the log the button was on.
	back := webhooksPath(pid) + "/" + url.PathEscape(eid)
	if q := readCursor(r).query(); len(q) > 0 {
		q.Set("done", "redeliver")
		http.Redirect(w, r, back+"?"+q.Encode(), http.StatusSeeOther)
		return
	}
	done(w, r, back, "redeliver")
}
