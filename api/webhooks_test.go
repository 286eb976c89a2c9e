package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/simulator/webhook"
)

// withFastWebhooks makes the dispatcher look every 20 ms and retry after
// 20 ms (doubling), and allows http receivers on 127.0.0.1.
func withFastWebhooks(cfg *api.Config) {
	cfg.WebhookAllowPrivate = true
	cfg.WebhookPoll = 20 * time.Millisecond
	cfg.WebhookBackoff = 20 * time.Millisecond
	cfg.WebhookMaxBackoff = 200 * time.Millisecond
	cfg.WebhookTimeout = 2 * time.Second
}

// runWebhooks runs the env's dispatcher until the test ends.
func (e *env) runWebhooks() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.srv.RunWebhooks(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// receiver is a webhook endpoint inside the test: it verifies every
// delivery with the documented verifier and keeps what it received.
type receiver struct {
	t      *testing.T
	url    string
	secret atomic.Value // string
	fail   atomic.Int64 // answer 500 to this many more deliveries
	mu     sync.Mutex
	events []webhook.Event
	raw    [][]byte
	sigs   []string
	bad    int // deliveries refused by the verifier
	got    chan webhook.Event
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, got: make(chan webhook.Event, 1000)}
	r.secret.Store("")
	rc := &webhook.Receiver{
		Secret: func() string { return r.secret.Load().(string) },
		Handle: func(ev webhook.Event, raw []byte) error {
			if r.fail.Add(-1) >= 0 {
				return fmt.Errorf("failing on purpose")
			}
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.raw = append(r.raw, raw)
			r.mu.Unlock()
			r.got <- ev
			return nil
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := httptest.NewRecorder()
		body := make([]byte, 0)
		req.Body = http.MaxBytesReader(w, req.Body, 1<<20)
		rc.ServeHTTP(rec, req)
		if rec.Code == http.StatusBadRequest {
			r.mu.Lock()
			r.bad++
			r.mu.Unlock()
		}
		r.mu.Lock()
		r.sigs = append(r.sigs, req.Header.Get(webhook.Header))
		r.mu.Unlock()
		_ = body
		w.WriteHeader(rec.Code)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/hooks"
	return r
}

// waitTypes waits until every type was received at least once.
func (r *receiver) waitTypes(types ...string) {
	r.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		missing := []string{}
		for _, typ := range types {
			if !slices.ContainsFunc(r.events, func(e webhook.Event) bool { return e.Type == typ }) {
				missing = append(missing, typ)
			}
		}
		r.mu.Unlock()
		if len(missing) == 0 {
			return
		}
		select {
		case <-r.got:
		case <-deadline:
			r.t.Fatalf("webhook events never received: %v", missing)
		}
	}
}

type endpointJSON struct {
	ID           string   `json:"id"`
	URL          string   `json:"url"`
	Events       []string `json:"events"`
	Status       string   `json:"status"`
	Secret       string   `json:"secret"`
	FailingSince string   `json:"failing_since"`
	DisabledAt   string   `json:"disabled_at"`
}

type deliveryJSON struct {
	ID         string `json:"id"`
	EventID    string `json:"event_id"`
	EventType  string `json:"event_type"`
	Status     string `json:"status"`
	Attempts   int    `json:"attempts"`
	LastStatus int    `json:"last_status"`
	LastError  string `json:"last_error"`
}

func (c *client) deliveries(path string) []deliveryJSON {
	c.e.t.Helper()
	var out []deliveryJSON
	after := ""
	for {
		q := "?limit=50"
		if after != "" {
			q += "&starting_after=" + after
		}
		var page struct {
			Data    []deliveryJSON `json:"data"`
			HasMore bool           `json:"has_more"`
		}
		c.json("GET", path+q, nil, 200, &page)
		out = append(out, page.Data...)
		if !page.HasMore {
			return out
		}
		after = page.Data[len(page.Data)-1].ID
	}
}

// TestWebhooksEveryEventType subscribes an endpoint to the whole catalogue,
// makes one event of every type through REST and the engine, and checks
// what the receiver got: every type, signed (the documented verifier
// accepts each delivery and refuses a tampered body), the envelope, the
// data, a card's events in order, and no card data anywhere.
func TestWebhooksEveryEventType(t *testing.T) {
	e := newEnv(t, withJournal(t), withFastWebhooks)
	e.runWebhooks()
	p := e.newProgramWithThreshold("hookbank", "45671277", 20_000)
	rcv := newReceiver(t)
	var ep endpointJSON
	p.c.json("POST", "/secure/webhooks", map[string]any{"url": rcv.url, "events": api.WebhookEventTypes}, 201, &ep)
	if !strings.HasPrefix(ep.Secret, "whsec_") || ep.Status != "enabled" || len(ep.Events) != len(api.WebhookEventTypes) {
		t.Fatalf("endpoint %+v", ep)
	}
	rcv.secret.Store(ep.Secret)
	var list struct {
		Data []endpointJSON `json:"data"`
	}
	p.c.json("GET", "/secure/webhooks", nil, 200, &list)
	if len(list.Data) != 1 || list.Data[0].ID != ep.ID || list.Data[0].Secret != "" {
		t.Fatalf("listed endpoints %+v: want the one, without its secret", list.Data)
	}

	// customer.created, customer.kyc_updated; the credit falls below its
	// threshold with the reload: balance.reloaded, partner_balance.low.
	e.root.json("POST", "/admin/partners/hookbank/balances/"+p.pbal+"/reload", map[string]int{"amount": 60_000}, 200, nil)
	cid, bid := p.verifiedCustomer(t, "Hugo")
	p.c.json("POST", "/secure/customers/"+cid+"/balances/"+bid+"/reload", map[string]int{"amount": 45_000}, 200, nil)
	// card.created, then the card's life and its authorizations.
	var full fullDataJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": bid}, 201, &full)
	card := "/secure/customers/" + cid + "/cards/" + full.ID
	n := e.network(t, full.CardNo)
	exp := n.auth(1_000)
	if _, err := e.ledger.ExpireHolds(context.Background(), p.id, -time.Second, 100); err != nil {
		t.Fatal(err)
	}
	captured := n.auth(2_000)
	n.send(authz.KindFinancialAdvice, "0220", authz.TxnPurchase, 1_500, &captured, nil)
	reversed := n.auth(3_000)
	n.send(authz.KindReversal, "0400", authz.TxnPurchase, 3_000, &reversed, nil)
	n.auth(900_000) // declined
	if !exp.d.Approved() || !captured.d.Approved() || !reversed.d.Approved() {
		t.Fatal("authorizations declined")
	}
	p.c.json("POST", card+"/lock", map[string]int{"reason": 3}, 200, nil)
	p.c.json("POST", card+"/unlock", nil, 200, nil)
	p.c.do("DELETE", card, nil)
	// card.ordered, card.personalised, card.activated.
	var phys cardJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cid+"/cards/physical", map[string]any{"balanceId": bid,
		"deliveryAddress": map[string]string{"line1": "1 Main St", "city": "Berlin", "postalCode": "10115", "country": "DE"}}, 201, &phys)
	e.root.json("POST", "/admin/bureau/cards/"+phys.ID+"/personalised", nil, 200, nil)
	p.c.json("POST", "/secure/customers/"+cid+"/cards/"+phys.ID+"/activate", nil, 200, nil)

	wantTypes := api.WebhookEventTypes
	if e.pool == nil {
		// The embedded store keeps no partner notices (docs/ledger.md).
		wantTypes = slices.DeleteFunc(slices.Clone(wantTypes), func(t string) bool { return t == "partner_balance.low" })
	}
	rcv.waitTypes(wantTypes...)

	rcv.mu.Lock()
	events := slices.Clone(rcv.events)
	raws := slices.Clone(rcv.raw)
	bad := rcv.bad
	rcv.mu.Unlock()
	if bad != 0 {
		t.Fatalf("%d deliveries failed the signature check", bad)
	}
	ids := map[string]bool{}
	var cardOrder []string
	for i, ev := range events {
		if ev.PartnerID != "hookbank" || !strings.HasPrefix(ev.ID, "evt_") || ev.CreatedAt.IsZero() || len(ev.Data) == 0 {
			t.Errorf("event %d: %+v", i, ev)
		}
		if ids[ev.ID] {
			t.Errorf("event %s delivered twice to a receiver that answered 2xx", ev.ID)
		}
		ids[ev.ID] = true
		if contains(raws[i], full.CardNo) || contains(raws[i], `"`+full.CVV+`"`) || contains(raws[i], "cvv") || contains(raws[i], "pan") {
			t.Fatalf("event %s carries card data: %s", ev.Type, raws[i])
		}
		var data struct {
			ID     string `json:"id"`
			CardID string `json:"card_id"`
			Status string `json:"status"`
		}
		_ = json.Unmarshal(ev.Data, &data)
		if data.ID == full.ID || data.CardID == full.ID {
			cardOrder = append(cardOrder, ev.Type+":"+data.Status)
		}
		switch ev.Type {
		case "partner_balance.low":
			var d struct {
				Available, Threshold int64
				Currency             string
			}
			_ = json.Unmarshal(ev.Data, &d)
			if d.Available != 15_000 || d.Threshold != 20_000 || d.Currency != "EUR" {
				t.Errorf("partner_balance.low data %s", ev.Data)
			}
		case "balance.reloaded":
			var d struct {
				Amount    int64  `json:"amount"`
				BalanceID string `json:"balance_id"`
				Type      string `json:"type"`
			}
			_ = json.Unmarshal(ev.Data, &d)
			if d.Amount != 45_000 || d.BalanceID != bid || d.Type != "reload" {
				t.Errorf("balance.reloaded data %s", ev.Data)
			}
		case "customer.kyc_updated":
			if !strings.Contains(string(ev.Data), `"kycStatus":"VERIFIED"`) {
				t.Errorf("customer.kyc_updated data %s", ev.Data)
			}
		case "card.locked":
			if !strings.Contains(string(ev.Data), `"lockReason":3`) {
				t.Errorf("card.locked data %s", ev.Data)
			}
		case "authorization.declined":
			if !strings.Contains(string(ev.Data), `"reason":"INSUFFICIENT_USER_FUNDS"`) || !strings.Contains(string(ev.Data), `"action_code":"1016"`) {
				t.Errorf("authorization.declined data %s", ev.Data)
			}
		}
	}
	// The card's events in the order they happened, each transaction as it
	// stood after its event.
	want := []string{"card.created:ACTIVE", "authorization.approved:pending", "authorization.expired:expired",
		"authorization.approved:pending", "authorization.captured:partially_captured",
		"authorization.approved:pending", "authorization.reversed:reversed", "authorization.declined:declined",
		"card.locked:ACTIVE", "card.unlocked:ACTIVE", "card.removed:REMOVED"}
	if !slices.Equal(cardOrder, want) {
		t.Fatalf("the card's events:\n got %v\nwant %v", cardOrder, want)
	}

	// The documented verifier refuses a tampered body, another secret and
	// an old signature.
	sig := api.Sign(ep.Secret, time.Now(), raws[0])
	if err := webhook.Verify(ep.Secret, sig, raws[0], webhook.DefaultTolerance, time.Now()); err != nil {
		t.Fatalf("a genuine delivery: %v", err)
	}
	tampered := []byte(strings.Replace(string(raws[0]), `"hookbank"`, `"hookbonk"`, 1))
	if err := webhook.Verify(ep.Secret, sig, tampered, webhook.DefaultTolerance, time.Now()); err == nil {
		t.Fatal("a tampered body passed the verifier")
	}
	if err := webhook.Verify("whsec_other", sig, raws[0], webhook.DefaultTolerance, time.Now()); err == nil {
		t.Fatal("another secret passed the verifier")
	}
	if err := webhook.Verify(ep.Secret, sig, raws[0], webhook.DefaultTolerance, time.Now().Add(time.Hour)); err == nil {
		t.Fatal("a signature of an hour ago passed the verifier")
	}

	// The delivery log: every delivery delivered once. A first attempt is
	// made before the delivery is stored, so the log may trail the
	// receiver by a moment.
	var ds []deliveryJSON
	waitUntil(t, 10*time.Second, "every delivery recorded", func() bool {
		ds = p.c.deliveries("/secure/webhooks/" + ep.ID + "/deliveries")
		return len(ds) >= len(events) && !slices.ContainsFunc(ds, func(d deliveryJSON) bool { return d.Status == "pending" })
	})
	if len(ds) != len(events) {
		t.Fatalf("delivery log holds %d deliveries, receiver got %d", len(ds), len(events))
	}
	for _, d := range ds {
		if d.Status != "delivered" || d.Attempts != 1 || d.LastStatus != 204 {
			t.Errorf("delivery %+v", d)
		}
	}

	// Another partner sees none of it.
	q := e.newProgram("otherhookbank", "45671266", "DEPOSIT", 0)
	if r := q.c.do("GET", "/secure/webhooks/"+ep.ID+"/deliveries", nil); r.status != 404 || r.code() != "WEBHOOK_NOT_FOUND" {
		t.Fatalf("another partner's delivery log: %d %s", r.status, r.body)
	}
	if r := q.c.do("DELETE", "/secure/webhooks/"+ep.ID, nil); r.status != 404 {
		t.Fatalf("another partner deleting: %d %s", r.status, r.body)
	}
	q.c.json("GET", "/secure/webhooks", nil, 200, &list)
	if len(list.Data) != 0 {
		t.Fatalf("another partner lists %+v", list.Data)
	}
	if e.metric("antaca_webhook_deliveries_total", map[string]string{"endpoint": ep.ID, "result": "delivered"}) != float64(len(events)) {
		t.Errorf("delivered metric %v, want %d", e.metric("antaca_webhook_deliveries_total", map[string]string{"endpoint": ep.ID, "result": "delivered"}), len(events))
	}
}

// TestWebhookRedeliveryAndFailing: a receiver that fails gets the event
// again with the same id until it answers 2xx; a delivery failing past
// the retry period marks its endpoint failing, and a redelivery through
// the API delivers it and clears that; the secret rotates.
func TestWebhookRedeliveryAndFailing(t *testing.T) {
	e := newEnv(t, withJournal(t), withFastWebhooks, func(cfg *api.Config) { cfg.WebhookRetryFor = 1500 * time.Millisecond })
	e.runWebhooks()
	p := e.newProgram("retrybank", "45671255", "CREDIT", 0)
	rcv := newReceiver(t)
	var ep endpointJSON
	e.root.json("POST", "/admin/partners/retrybank/webhooks", map[string]any{"url": rcv.url, "events": []string{"customer.created", "customer.kyc_updated"}}, 201, &ep)
	rcv.secret.Store(ep.Secret)
	base := "/admin/partners/retrybank/webhooks/" + ep.ID

	// Three failures, then success: the same event, retried.
	rcv.fail.Store(3)
	var cust customerJSON
	p.c.json("POST", "/secure/customers", map[string]string{"externalId": "r1", "firstName": "Rita", "lastName": "Retry", "email": "r@example.com", "phone": "+48123456789"}, 201, &cust)
	rcv.waitTypes("customer.created")
	var ds []deliveryJSON
	waitUntil(t, 10*time.Second, "the delivery recorded", func() bool {
		ds = e.root.deliveries(base + "/deliveries")
		return len(ds) == 1 && ds[0].Status != "pending"
	})
	if len(ds) != 1 || ds[0].Status != "delivered" || ds[0].Attempts != 4 {
		t.Fatalf("after three failures: %+v", ds)
	}

	// Failing for longer than the retry period: given up, endpoint failing.
	rcv.fail.Store(1 << 40)
	p.c.json("PUT", "/secure/customers/"+cust.ID+"/kyc", map[string]string{"status": "VERIFIED"}, 200, nil)
	var failed deliveryJSON
	waitUntil(t, 20*time.Second, "the delivery given up", func() bool {
		for _, d := range e.root.deliveries(base + "/deliveries") {
			if d.EventType == "customer.kyc_updated" && d.Status == "failed" {
				failed = d
				return true
			}
		}
		return false
	})
	if failed.Attempts < 2 || failed.LastStatus != 500 {
		t.Fatalf("given-up delivery %+v", failed)
	}
	var list struct {
		Data []endpointJSON `json:"data"`
	}
	e.root.json("GET", "/admin/partners/retrybank/webhooks", nil, 200, &list)
	if len(list.Data) != 1 || list.Data[0].Status != "failing" || list.Data[0].FailingSince == "" {
		t.Fatalf("endpoint after a given-up delivery: %+v", list.Data)
	}
	waitUntil(t, 10*time.Second, "the failing gauge", func() bool {
		return e.metric("antaca_webhook_endpoint_failing", map[string]string{"endpoint": ep.ID}) == 1
	})
	if e.metric("antaca_webhook_deliveries_total", map[string]string{"endpoint": ep.ID, "result": "failed"}) != 1 {
		t.Fatal("the given-up delivery was not counted")
	}

	// Rotate the secret, let the receiver recover, redeliver by the API.
	var rotated endpointJSON
	e.root.json("POST", base+"/rotate-secret", nil, 200, &rotated)
	if rotated.Secret == "" || rotated.Secret == ep.Secret {
		t.Fatalf("rotated secret %q", rotated.Secret)
	}
	rcv.secret.Store(rotated.Secret)
	rcv.fail.Store(0)
	e.root.json("POST", base+"/deliveries/"+failed.ID+"/redeliver", nil, 202, nil)
	rcv.waitTypes("customer.kyc_updated")
	waitUntil(t, 10*time.Second, "the endpoint enabled again after a successful redelivery", func() bool {
		list.Data = nil
		e.root.json("GET", "/admin/partners/retrybank/webhooks", nil, 200, &list)
		return list.Data[0].Status == "enabled" && list.Data[0].FailingSince == ""
	})
	// Redelivering a delivered one sends the same event again (same id).
	var first webhook.Event
	rcv.mu.Lock()
	first = rcv.events[0]
	n := len(rcv.events)
	rcv.mu.Unlock()
	p.c.json("POST", "/secure/webhooks/"+ep.ID+"/deliveries/"+ds[0].ID+"/redeliver", nil, 202, nil)
	waitUntil(t, 10*time.Second, "the redelivery", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return len(rcv.events) > n && rcv.events[n].ID == first.ID
	})
	if r := e.root.do("POST", base+"/deliveries/dlv_999999/redeliver", nil); r.status != 404 || r.code() != "DELIVERY_NOT_FOUND" {
		t.Fatalf("unknown delivery: %d %s", r.status, r.body)
	}
	// Deleting the endpoint ends its deliveries.
	e.root.do("DELETE", base, nil)
	if r := p.c.do("DELETE", "/secure/webhooks/"+ep.ID, nil); r.status != 404 {
		t.Fatalf("deleting twice: %d", r.status)
	}
	var again endpointJSON
	p.c.json("POST", "/secure/webhooks", map[string]any{"url": rcv.url, "events": []string{"card.created"}}, 201, &again)
	var rot endpointJSON
	p.c.json("POST", "/secure/webhooks/"+again.ID+"/rotate-secret", nil, 200, &rot)
	if r := p.c.do("DELETE", "/secure/webhooks/"+again.ID, nil); r.status != 204 {
		t.Fatalf("deleting: %d %s", r.status, r.body)
	}
}

// TestWebhookDisableAndEnable: a disabled endpoint gets no delivery of
// what happens meanwhile and its pending delivery waits; enabled again,
// the waiting delivery goes out and new events arrive; a redelivery to a
// disabled endpoint is refused; on /admin only an Admin disables.
func TestWebhookDisableAndEnable(t *testing.T) {
	e := newEnv(t, withJournal(t), withFastWebhooks)
	e.runWebhooks()
	p := e.newProgram("offbank", "45671233", "CREDIT", 0)
	types := []string{"customer.created", "customer.kyc_updated"}
	rcv, witness := newReceiver(t), newReceiver(t)
	var ep, wep endpointJSON
	p.c.json("POST", "/secure/webhooks", map[string]any{"url": rcv.url, "events": types}, 201, &ep)
	p.c.json("POST", "/secure/webhooks", map[string]any{"url": witness.url, "events": types}, 201, &wep)
	rcv.secret.Store(ep.Secret)
	witness.secret.Store(wep.Secret)
	base := "/secure/webhooks/" + ep.ID

	// A delivery that keeps failing: pending, tried.
	rcv.fail.Store(1 << 40)
	var first customerJSON
	p.c.json("POST", "/secure/customers", map[string]string{"externalId": "o1", "firstName": "Olga", "lastName": "Off", "email": "o@example.com", "phone": "+48123456789"}, 201, &first)
	var pending deliveryJSON
	waitUntil(t, 10*time.Second, "a failed attempt", func() bool {
		ds := p.c.deliveries(base + "/deliveries")
		if len(ds) == 1 && ds[0].Attempts > 0 && ds[0].LastStatus == 500 {
			pending = ds[0]
			return true
		}
		return false
	})
	if pending.Status != "pending" {
		t.Fatalf("failing delivery %+v", pending)
	}

	var off, again endpointJSON
	p.c.json("POST", base+"/disable", nil, 200, &off)
	if off.Status != "disabled" || off.DisabledAt == "" || off.Secret != "" {
		t.Fatalf("disabled endpoint %+v", off)
	}
	p.c.json("POST", base+"/disable", nil, 200, &again)
	if again.DisabledAt != off.DisabledAt {
		t.Fatalf("disabling twice moved disabled_at from %s to %s", off.DisabledAt, again.DisabledAt)
	}
	var list struct {
		Data []endpointJSON `json:"data"`
	}
	p.c.json("GET", "/secure/webhooks", nil, 200, &list)
	if len(list.Data) != 2 || list.Data[0].Status != "disabled" || list.Data[1].Status != "enabled" {
		t.Fatalf("listed endpoints %+v", list.Data)
	}
	if r := p.c.do("POST", base+"/deliveries/"+pending.ID+"/redeliver", nil); r.status != 409 || r.code() != "WEBHOOK_DISABLED" {
		t.Fatalf("redelivering to a disabled endpoint: %d %s", r.status, r.body)
	}

	// An event while disabled: the witness endpoint, made deliveries in the
	// same step, receives it; the disabled one gets no delivery of it.
	p.c.json("PUT", "/secure/customers/"+first.ID+"/kyc", map[string]string{"status": "VERIFIED"}, 200, nil)
	witness.waitTypes("customer.kyc_updated")
	var missed string
	witness.mu.Lock()
	for _, ev := range witness.events {
		if ev.Type == "customer.kyc_updated" {
			missed = ev.ID
		}
	}
	witness.mu.Unlock()
	if ds := p.c.deliveries(base + "/deliveries"); len(ds) != 1 || ds[0].ID != pending.ID {
		t.Fatalf("deliveries of the disabled endpoint: %+v", ds)
	}

	// Enabled again (by an Admin on /admin; a Manager may not): the waiting
	// delivery goes out, and so do new events.
	mgr := e.newAdmin("hooks.mgr", "Manager")
	admin := "/admin/partners/offbank/webhooks/" + ep.ID
	if r := mgr.do("POST", admin+"/enable", nil); r.status != 403 {
		t.Fatalf("a Manager enabling: %d %s", r.status, r.body)
	}
	rcv.fail.Store(0)
	var on endpointJSON
	e.root.json("POST", admin+"/enable", nil, 200, &on)
	if on.Status != "enabled" || on.DisabledAt != "" {
		t.Fatalf("enabled endpoint %+v", on)
	}
	rcv.waitTypes("customer.created")
	p.c.json("POST", "/secure/customers", map[string]string{"externalId": "o2", "firstName": "Oleg", "lastName": "On", "email": "o2@example.com", "phone": "+48123456789"}, 201, nil)
	p.c.json("PUT", "/secure/customers/"+first.ID+"/kyc", map[string]string{"status": "REJECTED"}, 200, nil)
	rcv.waitTypes("customer.kyc_updated")
	rcv.mu.Lock()
	for _, ev := range rcv.events {
		if ev.ID == missed {
			t.Errorf("the event of the disabled time reached the endpoint")
		}
	}
	rcv.mu.Unlock()
	e.root.json("POST", admin+"/disable", nil, 200, &off)
	if off.Status != "disabled" {
		t.Fatalf("disabled by an Admin: %+v", off)
	}
	p.c.json("POST", base+"/enable", nil, 200, &on)
	if on.Status != "enabled" {
		t.Fatalf("enabled by the partner: %+v", on)
	}
	q := e.newProgram("otheroffbank", "45671222", "DEPOSIT", 0)
	if r := q.c.do("POST", base+"/enable", nil); r.status != 404 || r.code() != "WEBHOOK_NOT_FOUND" {
		t.Fatalf("another partner enabling: %d %s", r.status, r.body)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWebhookEndpointRules: only https URLs of public hosts, unless
// WebhookAllowPrivate; known event types; a name resolving to a private
// address is refused when the delivery connects.
func TestWebhookEndpointRules(t *testing.T) {
	e := newEnv(t, withJournal(t), func(cfg *api.Config) {
		cfg.WebhookPoll = 20 * time.Millisecond
		cfg.WebhookBackoff = 20 * time.Millisecond
	})
	e.runWebhooks()
	p := e.newProgram("rulebank", "45671244", "CREDIT", 0)
	for _, tt := range []struct {
		name string
		body map[string]any
	}{
		{"http", map[string]any{"url": "http://example.com/hook", "events": []string{"card.created"}}},
		{"loopback", map[string]any{"url": "https://127.0.0.1/hook", "events": []string{"card.created"}}},
		{"loopback v6", map[string]any{"url": "https://[::1]/hook", "events": []string{"card.created"}}},
		{"private", map[string]any{"url": "https://10.1.2.3/hook", "events": []string{"card.created"}}},
		{"link-local", map[string]any{"url": "https://169.254.169.254/latest", "events": []string{"card.created"}}},
		{"mapped", map[string]any{"url": "https://[::ffff:192.168.1.1]/hook", "events": []string{"card.created"}}},
		{"localhost", map[string]any{"url": "https://localhost:8443/hook", "events": []string{"card.created"}}},
		{"credentials", map[string]any{"url": "https://user:pw@example.com/hook", "events": []string{"card.created"}}},
		{"relative", map[string]any{"url": "/hook", "events": []string{"card.created"}}},
		{"no events", map[string]any{"url": "https://example.com/hook", "events": []string{}}},
		{"unknown event", map[string]any{"url": "https://example.com/hook", "events": []string{"card.exploded"}}},
		{"twice", map[string]any{"url": "https://example.com/hook", "events": []string{"card.created", "card.created"}}},
	} {
		if r := p.c.do("POST", "/secure/webhooks", tt.body, invalidRequest); r.status != 400 || r.code() != "VALIDATION_ERROR" {
			t.Errorf("%s: %d %s, want 400 VALIDATION_ERROR", tt.name, r.status, r.body)
		}
	}
	var ok endpointJSON
	p.c.json("POST", "/secure/webhooks", map[string]any{"url": "https://example.com/hook", "events": []string{"card.created"}}, 201, &ok)

	// A name that is not refused by itself but resolves to a loopback or
	// private address: the delivery's connection is refused.
	host, _ := os.Hostname()
	addrs, err := net.LookupHost(host)
	if err != nil || len(addrs) == 0 {
		t.Skipf("the host name %q does not resolve: %v", host, err)
	}
	if ip, err := netip.ParseAddr(addrs[0]); err != nil || ip.IsGlobalUnicast() && !ip.IsPrivate() {
		t.Skipf("the host name %q resolves to the public %s", host, addrs[0])
	}
	hits := atomic.Int64{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	var ep endpointJSON
	p.c.json("POST", "/secure/webhooks", map[string]any{"url": "https://" + host + ":" + port + "/hook", "events": []string{"customer.created"}}, 201, &ep)
	p.verifiedCustomer(t, "Sam")
	var d deliveryJSON
	waitUntil(t, 20*time.Second, "a refused attempt", func() bool {
		ds := p.c.deliveries("/secure/webhooks/" + ep.ID + "/deliveries")
		if len(ds) > 0 && ds[0].Attempts > 0 && ds[0].LastError != "" {
			d = ds[0]
			return true
		}
		return false
	})
	if d.Status != "pending" || !strings.Contains(d.LastError, "not allowed") || hits.Load() != 0 {
		t.Fatalf("delivery to %s (%s): %+v, %d requests reached it", host, addrs[0], d, hits.Load())
	}
}
