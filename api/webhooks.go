package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/antaca/antaca/api/signing"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
)

// Webhooks (api/README.md, "Webhooks"): partners register endpoints for
// event types; a dispatcher turns committed journal entries into events
// and delivers them, signed, at least once and in order per card, with
// retries. Nothing here runs on the authorization path: the dispatcher
// reads Postgres after the write-behind committed.

// WebhookEventTypes is the event catalogue.
var WebhookEventTypes = []string{
	"authorization.approved", "authorization.declined", "authorization.reversed", "authorization.captured", "authorization.expired",
	"card.created", "card.activated", "card.locked", "card.unlocked", "card.removed", "card.ordered", "card.personalised",
	"balance.reloaded",
	"customer.created", "customer.kyc_updated",
	"partner_balance.low",
}

// maxEndpoints is the most endpoints a partner may have.
const maxEndpoints = 16

// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">".
const SignatureHeader = signing.Header

// Sign returns the Antaca-Signature value of body sent at t with secret.
func Sign(secret string, t time.Time, body []byte) string { return signing.Sign(secret, t, body) }

// WebhookEnvelope is the body of every delivery.
type WebhookEnvelope struct {
	ID        string          `json:"id"` // the same in every delivery of the event
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	PartnerID string          `json:"partner_id"`
	Data      json.RawMessage `json:"data"`
}

var (
	errEndpointNotFound = apiErr(404, "WEBHOOK_NOT_FOUND", "webhook endpoint not found")
	errDeliveryNotFound = apiErr(404, "DELIVERY_NOT_FOUND", "webhook delivery not found")
	errTooManyEndpoints = apiErr(409, "TOO_MANY_WEBHOOKS", fmt.Sprintf("a partner has at most %d webhook endpoints", maxEndpoints))
	errEndpointDisabled = apiErr(409, "WEBHOOK_DISABLED", "the webhook endpoint is disabled: enable it first")
	errForbiddenAddress = errors.New("webhook address not allowed: loopback, link-local, private or otherwise not public")
)

type webhookEndpointView struct {
	ID           string     `json:"id"`
	URL          string     `json:"url"`
	Events       []string   `json:"events"`
	Status       string     `json:"status"` // enabled, failing, disabled
	FailingSince *time.Time `json:"failing_since,omitempty"`
	DisabledAt   *time.Time `json:"disabled_at,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	// Secret is shown when the endpoint is created and when it is rotated, never again.
	Secret string `json:"secret,omitempty"`
}

func endpointView(e pgstore.Endpoint, withSecret bool) webhookEndpointView {
	v := webhookEndpointView{ID: e.ID, URL: e.URL, Events: e.Events, Status: "enabled", FailingSince: e.FailingSince, CreatedAt: e.CreatedAt.UTC()}
	if e.FailingSince != nil {
		v.Status = "failing"
		t := e.FailingSince.UTC()
		v.FailingSince = &t
	}
	if e.DisabledAt != nil {
		v.Status = "disabled"
		t := e.DisabledAt.UTC()
		v.DisabledAt = &t
	}
	if withSecret {
		v.Secret = e.Secret
	}
	return v
}

type deliveryView struct {
	ID            string     `json:"id"`
	EventID       string     `json:"event_id"`
	EventType     string     `json:"event_type"`
	Status        string     `json:"status"` // pending, delivered, failed
	Attempts      int        `json:"attempts"`
	LastStatus    int        `json:"last_status,omitempty"` // HTTP status of the last attempt
	LastError     string     `json:"last_error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func deliveryViewOf(d pgstore.Delivery) deliveryView {
	v := deliveryView{ID: "dlv_" + strconv.FormatInt(d.ID, 10), EventID: d.EventID, EventType: d.EventType, Status: strings.ToLower(d.State),
		Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError, CreatedAt: d.CreatedAt.UTC(),
		LastAttemptAt: utcPtr(d.LastAttemptAt), DeliveredAt: utcPtr(d.DeliveredAt)}
	if d.State == "PENDING" {
		v.NextAttemptAt = utcPtr(&d.NextAt)
	}
	return v
}

// webhookPartner is the partner whose endpoints a request manages: the
// certificate's on /secure, the path's on /admin (which must exist).
func (c *call) webhookPartner() (string, error) {
	if c.rt.ch == adminCh {
		p, err := c.partner()
		if err != nil {
			return "", err
		}
		return p.ID, nil
	}
	return c.partnerID, nil
}

type endpointRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// POST .../webhooks
func (s *Server) createWebhook(c *call) (int, any, error) {
	pid, err := c.webhookPartner()
	if err != nil {
		return 0, nil, err
	}
	var req endpointRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	if err := s.checkWebhookURL(req.URL); err != nil {
		return 0, nil, err
	}
	if len(req.Events) == 0 {
		return 0, nil, invalid("events", "events must list at least one event type")
	}
	seen := map[string]bool{}
	for i, ev := range req.Events {
		if !slices.Contains(WebhookEventTypes, ev) {
			return 0, nil, invalid(fmt.Sprintf("events[%d]", i), fmt.Sprintf("unknown event type %q", ev))
		}
		if seen[ev] {
			return 0, nil, invalid(fmt.Sprintf("events[%d]", i), fmt.Sprintf("event type %q listed twice", ev))
		}
		seen[ev] = true
	}
	secret, err := newWebhookSecret()
	if err != nil {
		return 0, nil, err
	}
	ep, err := s.outbox.CreateEndpoint(c.ctx, pgstore.Endpoint{ID: ledger.NewID("whe"), PartnerID: pid, URL: req.URL, Events: req.Events, Secret: secret}, maxEndpoints)
	if errors.Is(err, pgstore.ErrTooManyEndpoints) {
		return 0, nil, errTooManyEndpoints
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, endpointView(ep, true), nil
}

// GET .../webhooks
func (s *Server) listWebhooks(c *call) (int, any, error) {
	pid, err := c.webhookPartner()
	if err != nil {
		return 0, nil, err
	}
	eps, err := s.outbox.Endpoints(c.ctx, pid)
	if err != nil {
		return 0, nil, err
	}
	out := make([]webhookEndpointView, 0, len(eps))
	for _, e := range eps {
		out = append(out, endpointView(e, false))
	}
	return http.StatusOK, map[string]any{"data": out}, nil
}

// endpoint reads the endpoint named by the path, of the partner in scope.
func (c *call) endpoint() (pgstore.Endpoint, error) {
	pid, err := c.webhookPartner()
	if err != nil {
		return pgstore.Endpoint{}, err
	}
	e, err := c.s.outbox.Endpoint(c.ctx, pid, c.r.PathValue("endpointId"))
	if errors.Is(err, pgstore.ErrEndpointNotFound) {
		return pgstore.Endpoint{}, errEndpointNotFound
	}
	return e, err
}

// DELETE .../webhooks/{endpointId}
func (s *Server) deleteWebhook(c *call) (int, any, error) {
	e, err := c.endpoint()
	if err != nil {
		return 0, nil, err
	}
	if err := s.outbox.DeleteEndpoint(c.ctx, e.PartnerID, e.ID); err != nil {
		if errors.Is(err, pgstore.ErrEndpointNotFound) {
			return 0, nil, errEndpointNotFound
		}
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// POST .../webhooks/{endpointId}/rotate-secret
func (s *Server) rotateWebhookSecret(c *call) (int, any, error) {
	e, err := c.endpoint()
	if err != nil {
		return 0, nil, err
	}
	secret, err := newWebhookSecret()
	if err != nil {
		return 0, nil, err
	}
	e, err = s.outbox.RotateSecret(c.ctx, e.PartnerID, e.ID, secret)
	if errors.Is(err, pgstore.ErrEndpointNotFound) {
		return 0, nil, errEndpointNotFound
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, endpointView(e, true), nil
}

// POST .../webhooks/{endpointId}/disable: no delivery is made for the
// endpoint from now on (events of the meantime are not kept for it), and
// its pending deliveries wait. Disabling a disabled endpoint changes
// nothing.
func (s *Server) disableWebhook(c *call) (int, any, error) {
	return s.setWebhookDisabled(c, true)
}

// POST .../webhooks/{endpointId}/enable: the endpoint receives the events
// of entries committed from now on, and its waiting deliveries go out.
func (s *Server) enableWebhook(c *call) (int, any, error) {
	return s.setWebhookDisabled(c, false)
}

func (s *Server) setWebhookDisabled(c *call, disabled bool) (int, any, error) {
	e, err := c.endpoint()
	if err != nil {
		return 0, nil, err
	}
	e, err = s.outbox.SetDisabled(c.ctx, e.PartnerID, e.ID, disabled)
	if errors.Is(err, pgstore.ErrEndpointNotFound) {
		return 0, nil, errEndpointNotFound
	}
	if err != nil {
		return 0, nil, err
	}
	if !disabled {
		s.wakeWebhooks()
	}
	return http.StatusOK, endpointView(e, false), nil
}

// GET .../webhooks/{endpointId}/deliveries?limit=&starting_after=
func (s *Server) listDeliveries(c *call) (int, any, error) {
	e, err := c.endpoint()
	if err != nil {
		return 0, nil, err
	}
	q := c.r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 100 {
			return 0, nil, invalid("limit", "limit must be an integer from 1 to 100")
		}
	}
	var before int64
	if v := q.Get("starting_after"); v != "" {
		id, ok := parseDeliveryID(v)
		if !ok {
			return 0, nil, errInvalidCursor
		}
		before = id
	}
	ds, more, err := s.outbox.Deliveries(c.ctx, e.ID, limit, before)
	if err != nil {
		return 0, nil, err
	}
	out := make([]deliveryView, 0, len(ds))
	for _, d := range ds {
		out = append(out, deliveryViewOf(d))
	}
	return http.StatusOK, map[string]any{"data": out, "has_more": more}, nil
}

func parseDeliveryID(s string) (int64, bool) {
	rest, ok := strings.CutPrefix(s, "dlv_")
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, ok && err == nil && n > 0
}

// POST .../webhooks/{endpointId}/deliveries/{deliveryId}/redeliver
func (s *Server) redeliver(c *call) (int, any, error) {
	e, err := c.endpoint()
	if err != nil {
		return 0, nil, err
	}
	id, ok := parseDeliveryID(c.r.PathValue("deliveryId"))
	if !ok {
		return 0, nil, errDeliveryNotFound
	}
	if e.DisabledAt != nil {
		return 0, nil, errEndpointDisabled
	}
	if err := s.outbox.Redeliver(c.ctx, e.ID, id, s.cfg.WebhookRetryFor); err != nil {
		if errors.Is(err, pgstore.ErrDeliveryNotFound) {
			return 0, nil, errDeliveryNotFound
		}
		return 0, nil, err
	}
	s.wakeWebhooks()
	return http.StatusAccepted, map[string]string{"id": c.r.PathValue("deliveryId"), "status": "pending"}, nil
}

func newWebhookSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making a webhook secret: %w", err)
	}
	return "whsec_" + base64.RawURLEncoding.EncodeToString(b), nil
}

// checkWebhookURL refuses what may not be an endpoint: anything but an
// absolute https URL without credentials, and hosts that are loopback,
// link-local or private addresses or names for them. The address a name
// resolves to is checked again at every delivery (webhookDialer).
// WebhookAllowPrivate lifts both rules (http and such addresses).
func (s *Server) checkWebhookURL(raw string) error {
	bad := func(msg string) error { return invalid("url", msg) }
	if raw == "" || len(raw) > 2048 {
		return bad("url must be an https URL of at most 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Hostname() == "" {
		return bad("url must be an absolute https URL")
	}
	if u.User != nil || u.Fragment != "" {
		return bad("url must not carry credentials or a fragment")
	}
	if s.cfg.WebhookAllowPrivate {
		if u.Scheme != "https" && u.Scheme != "http" {
			return bad("url must be an http or https URL")
		}
		return nil
	}
	if u.Scheme != "https" {
		return bad("url must be an https URL")
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || strings.HasSuffix(host, ".local") || strings.HasSuffix(host, ".internal") {
		return bad("url must name a public host")
	}
	if ip, err := netip.ParseAddr(host); err == nil && !publicAddr(ip) {
		return bad("url must name a public address, not a loopback, link-local or private one")
	}
	return nil
}

var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 can reach IPv4 private space
	netip.MustParsePrefix("2002::/16"),    // 6to4 likewise
}

// publicAddr reports an address a webhook may be sent to.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// webhookClient sends deliveries: no proxy from the environment, no
// redirects followed, the whole exchange bounded by WebhookTimeout, and
// (unless WebhookAllowPrivate) every connection refused whose address,
// resolved at that moment, is not public.
func webhookClient(timeout time.Duration, allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: timeout, Control: func(network, address string, _ syscall.RawConn) error {
		if allowPrivate {
			return nil
		}
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return errForbiddenAddress
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !publicAddr(ip) {
			return errForbiddenAddress
		}
		return nil
	}}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: d.DialContext, TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost: webhookSenders, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// wakeWebhooks makes the dispatcher look now rather than at its next tick.
func (s *Server) wakeWebhooks() {
	select {
	case s.hookWake <- struct{}{}:
	default:
	}
}

// RunWebhooks runs the dispatcher until ctx ends: every WebhookPoll (or
// when woken) it turns the followed partners' new journal entries into
// events, delivers what is due, and every few seconds refreshes the
// backlog metrics. Run it on every switch: dispatchers share the work
// through row locks in Postgres.
func (s *Server) RunWebhooks(ctx context.Context) error {
	t := time.NewTicker(s.cfg.WebhookPoll)
	defer t.Stop()
	var lastBacklog time.Time
	for {
		s.dispatchOnce(ctx)
		if time.Since(lastBacklog) >= 5*time.Second {
			s.refreshBacklog(ctx)
			lastBacklog = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.hookWake:
		}
	}
}

const advanceBatch = 500

// dispatchOnce advances every cursor and sends every due delivery.
func (s *Server) dispatchOnce(ctx context.Context) {
	partners, err := s.outbox.Partners(ctx)
	if err != nil {
		s.logHookErr(ctx, "listing partners", err)
		return
	}
	s.cfg.RecentJournal.Follow(partners)
	opts := pgstore.AdvanceOptions{Batch: advanceBatch, GapTimeout: s.cfg.WebhookGapTimeout, RetryFor: s.cfg.WebhookRetryFor,
		Build: s.eventsOf, Recent: s.cfg.RecentJournal, Skipped: func(pid string, seq int64) {
			s.log.Error("webhooks: a journal entry never reached Postgres; its events are skipped", "partner", pid, "seq", seq)
			s.hooks.skipped.Inc()
		},
		// New events go out at once to endpoints with nothing pending, and
		// are stored with the outcome: one insert per delivery instead of
		// an insert, a claim and a record.
		Send:  s.sendAll,
		Sent:  func(outs []pgstore.Outcome, gaveUp []pgstore.Delivery) { s.noteOutcomes(ctx, outs, gaveUp) },
		Lease: 2*s.cfg.WebhookTimeout + 30*time.Second,
	}
	for _, pid := range partners {
		for ctx.Err() == nil {
			n, err := s.outbox.Advance(ctx, pid, opts)
			if err != nil {
				s.logHookErr(ctx, "advancing", err, "partner", pid)
				break
			}
			if n < advanceBatch {
				break
			}
		}
	}
	for ctx.Err() == nil {
		ds, err := s.outbox.Claim(ctx, claimBatch, claimPerKey, s.cfg.WebhookTimeout+30*time.Second)
		if err != nil {
			s.logHookErr(ctx, "claiming deliveries", err)
			return
		}
		s.deliverAll(ctx, ds)
		if len(ds) < claimBatch {
			return
		}
	}
}

// What one round of the dispatcher claims: at most claimBatch deliveries,
// claimPerKey of one endpoint and order key, sent by webhookSenders
// goroutines (and as many idle connections kept per host).
const (
	claimBatch     = 512
	claimPerKey    = 64
	webhookSenders = 16
)

// deliverAll sends claimed deliveries (sendAll) and records every outcome
// in one transaction.
func (s *Server) deliverAll(ctx context.Context, ds []pgstore.Delivery) {
	if len(ds) == 0 {
		return
	}
	outs := s.sendAll(ctx, ds)
	gaveUp, err := s.outbox.Record(context.WithoutCancel(ctx), outs)
	if err != nil {
		// Leases run out and the deliveries are sent again: at least once.
		s.logHookErr(ctx, "recording deliveries", err)
		return
	}
	s.noteOutcomes(ctx, outs, gaveUp)
}

// sendAll attempts deliveries and returns their outcomes, in the order of
// ds. The deliveries of one endpoint and key are sent one after the
// other, in order; the first that fails stops its key, and once one
// delivery to an endpoint has failed no other is attempted for it in
// this round (a receiver that hangs costs one timeout per sender, not one
// per delivery). Those not attempted are given back untried. Keys go out
// in parallel, webhookSenders at a time.
func (s *Server) sendAll(ctx context.Context, ds []pgstore.Delivery) []pgstore.Outcome {
	type key struct{ endpoint, order string }
	var chains [][]int // indexes into ds, per key, in order
	at := map[key]int{}
	for i, d := range ds {
		k := key{d.EndpointID, d.OrderKey}
		c, ok := at[k]
		if !ok {
			c = len(chains)
			at[k] = c
			chains = append(chains, nil)
		}
		chains[c] = append(chains[c], i)
	}
	outs := make([]pgstore.Outcome, len(ds))
	for i, d := range ds {
		outs[i].Delivery = d
	}
	var (
		mu     sync.Mutex
		failed = map[string]bool{} // endpoints that failed this round
	)
	down := func(endpoint string) bool {
		mu.Lock()
		defer mu.Unlock()
		return failed[endpoint]
	}
	work := make(chan []int)
	var wg sync.WaitGroup
	for range min(webhookSenders, len(chains)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chain := range work {
				for _, i := range chain {
					if ctx.Err() != nil || down(ds[i].EndpointID) {
						break
					}
					s.attempt(ctx, &outs[i])
					if outs[i].Err != "" {
						mu.Lock()
						failed[ds[i].EndpointID] = true
						mu.Unlock()
						break
					}
				}
			}
		}()
	}
	for _, c := range chains {
		work <- c
	}
	close(work)
	wg.Wait()
	return outs
}

// noteOutcomes counts and logs the recorded outcomes of attempts.
func (s *Server) noteOutcomes(ctx context.Context, outs []pgstore.Outcome, gaveUp []pgstore.Delivery) {
	for _, oc := range outs {
		d := oc.Delivery
		switch {
		case !oc.Tried:
		case oc.Err == "":
			s.hooks.deliveries.WithLabelValues(d.PartnerID, d.EndpointID, "delivered").Inc()
		case slices.ContainsFunc(gaveUp, func(g pgstore.Delivery) bool { return g.EndpointID == d.EndpointID && g.EventID == d.EventID }):
			s.hooks.deliveries.WithLabelValues(d.PartnerID, d.EndpointID, "failed").Inc()
			s.log.WarnContext(ctx, "webhooks: delivery given up, endpoint marked failing", "partner", d.PartnerID, "endpoint", d.EndpointID,
				"event", d.EventID, "attempts", d.Attempts, "err", oc.Err)
		default:
			s.hooks.deliveries.WithLabelValues(d.PartnerID, d.EndpointID, "retry").Inc()
			s.log.InfoContext(ctx, "webhooks: delivery failed, will retry", "partner", d.PartnerID, "endpoint", d.EndpointID,
				"event", d.EventID, "attempt", d.Attempts, "in", oc.Wait, "err", oc.Err)
		}
	}
}

// attempt makes one attempt at a claimed delivery and notes its outcome.
func (s *Server) attempt(ctx context.Context, oc *pgstore.Outcome) {
	d := oc.Delivery
	start := time.Now()
	status, err := s.postDelivery(ctx, d)
	s.hooks.latency.WithLabelValues(d.PartnerID).Observe(time.Since(start).Seconds())
	oc.Tried, oc.Status = true, status
	if err != nil {
		oc.Err, oc.Wait = err.Error(), s.retryWait(d.Attempts)
	}
}

func (s *Server) logHookErr(ctx context.Context, what string, err error, kv ...any) {
	if ctx.Err() != nil {
		return
	}
	s.log.WarnContext(ctx, "webhooks: "+what, append(kv, "err", err)...)
}

// retryWait is the pause after attempt n: WebhookBackoff doubled each
// time, at most WebhookMaxBackoff, times a random factor from 0.5 to 1.5.
func (s *Server) retryWait(attempt int) time.Duration {
	base := float64(s.cfg.WebhookBackoff) * math.Pow(2, float64(max(attempt-1, 0)))
	base = min(base, float64(s.cfg.WebhookMaxBackoff))
	return time.Duration(base * (0.5 + mrand.Float64()))
}

// postDelivery POSTs the event; a 2xx answer is success.
func (s *Server) postDelivery(ctx context.Context, d pgstore.Delivery) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return 0, fmt.Errorf("building the request: %w", err)
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Antaca-Webhooks/1")
	h.Set("Antaca-Event-Id", d.EventID)
	h.Set("Antaca-Event-Type", d.EventType)
	h.Set("Idempotency-Key", d.EventID)
	if d.Secret != "" {
		h.Set(SignatureHeader, Sign(d.Secret, s.now(), d.Body))
	}
	client := s.hookClient
	if d.PartnerID == pgstore.OperatorPartner {
		client = s.opClient
	}
	resp, err := client.Do(req)
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // without the URL, which may carry a token
	}
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("endpoint answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}

// refreshBacklog sets the backlog gauges from Postgres.
func (s *Server) refreshBacklog(ctx context.Context) {
	bs, err := s.outbox.Backlogs(ctx)
	if err != nil {
		s.logHookErr(ctx, "reading the backlog", err)
		return
	}
	s.hooks.backlog.Reset()
	s.hooks.oldest.Reset()
	s.hooks.failing.Reset()
	for _, b := range bs {
		s.hooks.backlog.WithLabelValues(b.PartnerID, b.EndpointID).Set(float64(b.Pending))
		s.hooks.oldest.WithLabelValues(b.PartnerID, b.EndpointID).Set(b.OldestPending.Seconds())
		f := 0.0
		if b.Failing {
			f = 1
		}
		s.hooks.failing.WithLabelValues(b.PartnerID, b.EndpointID).Set(f)
	}
}

// eventID names the i-th event made from a journal entry: the same every
// time the entry is turned into events.
func eventID(partnerID string, seq int64, i int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", partnerID, seq, i))
	return "evt_" + hex.EncodeToString(h[:12])
}

// eventsOf turns committed journal entries into events (the catalogue in
// api/README.md). Entries of other types make none.
//
// The histories of the holds the entries touch are read in one query for
// the whole batch (entries are one partner's, in sequence order); each
// event shows its hold as it stood after its own entry.
func (s *Server) eventsOf(ctx context.Context, entries []pgstore.JournalRow) ([]pgstore.NewEvent, error) {
	hist, err := s.holdHistories(ctx, entries)
	if err != nil {
		return nil, err
	}
	var out []pgstore.NewEvent
	for _, e := range entries {
		type ev struct {
			typ, key string
			data     any
		}
		var evs []ev
		holdEvent := func(typ, holdID string) {
			h := hist[holdID]
			n := 0
			for n < len(h) && h[n].Seq <= e.Seq {
				n++
			}
			if n == 0 {
				return
			}
			v := s.holdTransaction(pgstore.FoldHold(holdID, e.PartnerID, h[:n]), h[:n])
			key := v.CardID
			if key == "" {
				key = v.BalanceID
			}
			evs = append(evs, ev{typ, key, v})
		}
		switch e.Type {
		case "reserve", "financial", "force_post", "refund":
			holdEvent("authorization.approved", firstHold(e))
		case "capture":
			holdEvent("authorization.captured", firstHold(e))
		case "void", "late_cancel":
			holdEvent("authorization.reversed", firstHold(e))
		case "expire":
			for _, c := range e.Changes {
				if c.Table == "holds" {
					holdEvent("authorization.expired", c.ID)
				}
			}
		case "decline":
			if card := pgstore.DeclinedCard(e); card != "" {
				evs = append(evs, ev{"authorization.declined", card, s.entryTransaction(ctx, e, "")})
			}
		case "user_balance_reload":
			v := s.entryTransaction(ctx, e, "")
			evs = append(evs, ev{"balance.reloaded", v.BalanceID, v})
		case "card_create", "card_activate", "card_lock", "card_unlock", "card_remove", "card_personalise":
			if c, ok := firstChange(e, "cards"); ok {
				typ := map[string]string{"card_create": "card.created", "card_activate": "card.activated", "card_lock": "card.locked",
					"card_unlock": "card.unlocked", "card_remove": "card.removed", "card_personalise": "card.personalised"}[e.Type]
				if e.Type == "card_create" && c.Set["status"] == "ORDERED" {
					typ = "card.ordered"
				}
				evs = append(evs, ev{typ, c.ID, s.cardEventData(ctx, e.PartnerID, e.Seq, c)})
			}
		case "customer_create", "customer_kyc":
			if c, ok := firstChange(e, "customers"); ok {
				typ := map[string]string{"customer_create": "customer.created", "customer_kyc": "customer.kyc_updated"}[e.Type]
				evs = append(evs, ev{typ, c.ID, s.customerEventData(ctx, e.PartnerID, c)})
			}
		}
		for i, x := range evs {
			body, err := json.Marshal(envelopeOf(eventID(e.PartnerID, e.Seq, i), x.typ, msUTC(e.TsMs), e.PartnerID, x.data))
			if err != nil {
				return nil, fmt.Errorf("encoding event: %w", err)
			}
			out = append(out, pgstore.NewEvent{ID: eventID(e.PartnerID, e.Seq, i), Type: x.typ, OrderKey: x.key, Body: body})
			s.hooks.events.WithLabelValues(x.typ).Inc()
		}
	}
	return out, nil
}

// firstHold is the first hold an entry changed ("" when none).
func firstHold(e pgstore.JournalRow) string {
	for _, c := range e.Changes {
		if c.Table == "holds" {
			return c.ID
		}
	}
	return ""
}

// holdHistories returns the history, up to the last entry, of every hold
// whose event the entries make. A hold created within the entries has
// its whole history among them; the others are read in one query.
func (s *Server) holdHistories(ctx context.Context, entries []pgstore.JournalRow) (map[string][]pgstore.JournalRow, error) {
	hist := map[string][]pgstore.JournalRow{}
	var older []string // holds created before the entries
	for _, e := range entries {
		for _, c := range e.Changes {
			if c.Table != "holds" {
				continue
			}
			if _, seen := hist[c.ID]; !seen && !slices.Contains(older, c.ID) {
				if _, created := c.Set["created_ms"]; !created {
					older = append(older, c.ID)
					continue
				}
			}
			if !slices.Contains(older, c.ID) {
				hist[c.ID] = append(hist[c.ID], e)
			}
		}
	}
	if len(older) == 0 {
		return hist, nil
	}
	last := entries[len(entries)-1]
	read, err := s.txns.Histories(ctx, last.PartnerID, older, last.Seq)
	if err != nil {
		return nil, err
	}
	maps.Copy(hist, read)
	return hist, nil
}

type envelope struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	PartnerID string    `json:"partner_id"`
	Data      any       `json:"data"`
}

func envelopeOf(id, typ string, at time.Time, partnerID string, data any) envelope {
	return envelope{ID: id, Type: typ, CreatedAt: at, PartnerID: partnerID, Data: data}
}

func firstChange(e pgstore.JournalRow, table string) (pgstore.RowChange, bool) {
	for _, c := range e.Changes {
		if c.Table == table {
			return c, true
		}
	}
	return pgstore.RowChange{}, false
}

// cardEventData is the card as REST shows it (no card data), read when
// the event is made, with the columns the event itself set.
func (s *Server) cardEventData(ctx context.Context, partnerID string, seq int64, c pgstore.RowChange) any {
	k, err := s.cfg.Ledger.Card(ctx, partnerID, c.ID)
	if err != nil {
		return map[string]string{"id": c.ID}
	}
	// Status and lock as they stood after the event: the card's life-cycle
	// entries up to it (a card may have changed again since).
	hist, err := s.txns.Histories(ctx, partnerID, []string{c.ID}, seq)
	if err != nil {
		return map[string]string{"id": c.ID}
	}
	for _, e := range hist[c.ID] {
		ch, _ := e.Change("cards", c.ID)
		if v, ok := ch.Set["status"]; ok {
			k.Status = v
		}
		if v, ok := ch.Set["lock_reason"]; ok {
			k.LockReason, _ = strconv.Atoi(v)
		}
	}
	v, err := s.cfg.Issuing.View(ctx, k)
	if err != nil {
		return map[string]string{"id": c.ID}
	}
	return v
}

// customerEventData is the customer's id, external id and KYC status.
func (s *Server) customerEventData(ctx context.Context, partnerID string, c pgstore.RowChange) any {
	out := map[string]string{"id": c.ID}
	if cust, err := s.cfg.Ledger.Customer(ctx, partnerID, c.ID); err == nil {
		out["externalId"], out["kycStatus"] = cust.ExternalID, cust.KYCStatus
	}
	if v, ok := c.Set["kyc_status"]; ok {
		out["kycStatus"] = v
	}
	if v, ok := c.Set["external_id"]; ok {
		out["externalId"] = v
	}
	return out
}
