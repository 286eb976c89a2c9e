package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/antaca/antaca/api/signing"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
)

// KYC at a provider (docs/kyc.md). With KYCProviderURL set, starting KYC
// (POST .../register) records a check in Postgres and POSTs the
// customer's data to the provider, signed like webhooks with
// KYCProviderSecret; a failed POST is retried in the background (the
// notice loop) for WebhookRetryFor, then the check is FAILED. The
// provider answers later by POST /kyc/callback, signed with the same
// secret, {"id", "reference", "status": "VERIFIED"|"REJECTED"}, or at
// once in its answer to the POST. The partner (or an admin) may still set
// the status with PUT .../kyc: that cancels the open check.

// KYCRequest is what the provider receives.
type KYCRequest struct {
	ID          string    `json:"id"` // the check's id: the callback names it
	PartnerID   string    `json:"partnerId"`
	CustomerID  string    `json:"customerId"`
	ExternalID  string    `json:"externalId"`
	FirstName   string    `json:"firstName"`
	LastName    string    `json:"lastName"`
	Email       string    `json:"email"`
	Phone       string    `json:"phone"`
	CallbackURL string    `json:"callbackUrl,omitempty"`
	RequestedAt time.Time `json:"requestedAt"`
}

// KYCResult is the provider's answer to the request or its callback.
type KYCResult struct {
	ID        string `json:"id"`
	Reference string `json:"reference"`
	// Status is VERIFIED or REJECTED; in the answer to the request it may
	// also be PENDING (or absent): the result follows by callback.
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

var (
	errKYCCheckNotFound = apiErr(http.StatusNotFound, "KYC_CHECK_NOT_FOUND", "KYC check not found")
	errKYCCheckClosed   = apiErr(http.StatusConflict, "KYC_CHECK_CLOSED", "the KYC check was already closed otherwise (its status was set, or it has another result)")
	errBadSignature     = apiErr(http.StatusUnauthorized, "INVALID_SIGNATURE", "the Antaca-Signature header is missing, malformed, too old or does not match the body")
	errNoKYCProvider    = apiErr(http.StatusNotFound, "NOT_FOUND", "no KYC provider is configured")
)

// kycTolerance is how far a callback's signature time may be from now.
const kycTolerance = 5 * time.Minute

type kycCheckView struct {
	ID          string     `json:"id"`
	Status      string     `json:"status"` // sending, sent, failed, verified, rejected, cancelled
	Attempts    int        `json:"attempts"`
	LastStatus  int        `json:"lastStatus,omitempty"` // the provider's HTTP status of the last attempt
	LastError   string     `json:"lastError,omitempty"`
	Reference   string     `json:"reference,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
	SentAt      *time.Time `json:"sentAt,omitempty"`
	CompletedAt *time.Time `json:"completedAt,omitempty"`
	NextAttempt *time.Time `json:"nextAttemptAt,omitempty"`
}

func kycViewOf(k pgstore.KYCCheck) kycCheckView {
	v := kycCheckView{ID: k.ID, Status: strings.ToLower(k.State), Attempts: k.Attempts, LastStatus: k.LastStatus, LastError: k.LastError,
		Reference: k.Reference, CreatedAt: k.CreatedAt.UTC(), SentAt: utcPtr(k.SentAt), CompletedAt: utcPtr(k.CompletedAt)}
	if k.State == pgstore.KYCSending {
		v.NextAttempt = utcPtr(&k.NextAt)
	}
	return v
}

// registerView is a customer with the KYC check its start made.
type registerView struct {
	customerView
	KYCCheck *kycCheckView `json:"kycCheck,omitempty"`
}

// startProviderKYC records the customer's check (or finds the open one)
// and, when new, makes the first attempt at once.
func (s *Server) startProviderKYC(c *call, cust ledger.Customer) (*kycCheckView, error) {
	pid := cust.PartnerID
	req := KYCRequest{ID: ledger.NewID("kyc"), PartnerID: pid, CustomerID: cust.ID, ExternalID: cust.ExternalID,
		FirstName: cust.FirstName, LastName: cust.LastName, Email: cust.Email, Phone: cust.Phone,
		CallbackURL: s.cfg.KYCCallbackURL, RequestedAt: s.now().UTC()}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding KYC request: %w", err)
	}
	k, created, err := s.kyc.Open(c.ctx, pid, cust.ID, req.ID, body, s.cfg.WebhookRetryFor, s.cfg.WebhookTimeout+5*time.Second)
	if err != nil {
		return nil, err
	}
	if created {
		s.kycm.started.Inc()
		s.sendKYC(c.ctx, k.ID)
		if k, err = s.kyc.Get(c.ctx, k.ID); err != nil {
			return nil, err
		}
	}
	v := kycViewOf(k)
	return &v, nil
}

// sendKYC makes an attempt of check id now (when no one else is at it),
// or, with id "", of every check due.
func (s *Server) sendKYC(ctx context.Context, id string) {
	if s.cfg.KYCProviderURL == "" {
		return
	}
	for ctx.Err() == nil {
		ks, err := s.kyc.Claim(ctx, id, 16, s.cfg.WebhookTimeout+time.Minute)
		if err != nil {
			s.logHookErr(ctx, "claiming KYC checks", err)
			return
		}
		for _, k := range ks {
			s.postKYC(ctx, k)
		}
		if id != "" || len(ks) < 16 {
			return
		}
	}
}

// postKYC POSTs the check's request to the provider and records the outcome.
func (s *Server) postKYC(ctx context.Context, k pgstore.KYCCheck) {
	rec := context.WithoutCancel(ctx)
	status, answer, err := s.postToProvider(ctx, k)
	if err == nil {
		var res KYCResult
		_ = json.Unmarshal(answer, &res)
		s.kycm.requests.WithLabelValues("sent").Inc()
		if err := s.kyc.Sent(rec, k.ID, status, res.Reference, string(answer)); err != nil {
			s.logHookErr(ctx, "recording a KYC request", err)
			return
		}
		if res.Status == pgstore.KYCVerified || res.Status == pgstore.KYCRejected {
			if _, err := s.applyKYC(rec, k.ID, res, answer); err != nil && !errors.Is(err, errKYCCheckClosed) {
				s.logHookErr(ctx, "applying the KYC provider's answer", err, "check", k.ID)
			}
		}
		return
	}
	permanent := status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
	wait := s.retryWait(k.Attempts)
	gaveUp, rerr := s.kyc.SendFailed(rec, k.ID, status, err.Error(), string(answer), wait, permanent)
	if rerr != nil {
		s.logHookErr(ctx, "recording a KYC attempt", rerr)
		return
	}
	if gaveUp {
		s.kycm.requests.WithLabelValues("failed").Inc()
		s.log.WarnContext(ctx, "KYC request given up: the customer stays PENDING until KYC is started again or its status is set",
			"partner", k.PartnerID, "customer", k.CustomerID, "check", k.ID, "attempts", k.Attempts, "status", status, "err", err)
		return
	}
	s.kycm.requests.WithLabelValues("retry").Inc()
	s.log.InfoContext(ctx, "KYC request failed, will retry", "partner", k.PartnerID, "check", k.ID, "attempt", k.Attempts,
		"in", wait, "status", status, "err", err)
}

// postToProvider makes one POST; a 2xx answer is success. It returns the
// status and the answer's start.
func (s *Server) postToProvider(ctx context.Context, k pgstore.KYCCheck) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.KYCProviderURL, bytes.NewReader(k.Request))
	if err != nil {
		return 0, nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Antaca-KYC/1")
	req.Header.Set("Idempotency-Key", k.ID)
	if s.cfg.KYCProviderSecret != "" {
		req.Header.Set(SignatureHeader, Sign(s.cfg.KYCProviderSecret, s.now(), k.Request))
	}
	resp, err := s.opClient.Do(req)
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // without the URL, which may carry a token
	}
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, answer, fmt.Errorf("KYC provider answered %s", resp.Status)
	}
	return resp.StatusCode, answer, nil
}

// applyKYC records a result of the provider and sets the customer's KYC
// status to it. A repeated result changes nothing and is not an error.
func (s *Server) applyKYC(ctx context.Context, id string, res KYCResult, raw []byte) (pgstore.KYCCheck, error) {
	before, applied, err := s.kyc.Complete(ctx, id, res.Status, res.Reference, raw)
	switch {
	case errors.Is(err, pgstore.ErrKYCCheckNotFound):
		return before, errKYCCheckNotFound
	case errors.Is(err, pgstore.ErrKYCCheckClosed):
		s.log.WarnContext(ctx, "KYC result for a closed check refused", "partner", before.PartnerID, "check", id,
			"state", before.State, "result", res.Status)
		return before, errKYCCheckClosed
	case err != nil:
		return before, err
	}
	// Applied, or repeated (a provider retrying after an error of ours):
	// the customer's status is set either way, which changes nothing when
	// it already is.
	if err := s.cfg.Ledger.SetKYC(ctx, before.PartnerID, before.CustomerID, res.Status); err != nil {
		return before, err
	}
	if applied {
		s.kycm.results.WithLabelValues(res.Status).Inc()
		s.log.InfoContext(ctx, "KYC result", "partner", before.PartnerID, "customer", before.CustomerID, "check", id,
			"status", res.Status, "reference", res.Reference)
	}
	return before, nil
}

// POST /kyc/callback: the provider's result, signed with the provider
// secret over the raw body.
func (s *Server) kycCallback(c *call) (int, any, error) {
	if !s.noticesOn() {
		return 0, nil, errNoticesUnavailable
	}
	if s.cfg.KYCProviderURL == "" {
		return 0, nil, errNoKYCProvider
	}
	if err := signing.Verify(s.cfg.KYCProviderSecret, c.r.Header.Get(SignatureHeader), c.body, kycTolerance, s.now()); err != nil {
		s.kycm.callbacks.WithLabelValues("bad_signature").Inc()
		return 0, nil, errBadSignature
	}
	var res KYCResult
	if err := c.decode(&res); err != nil {
		return 0, nil, err
	}
	if res.ID == "" {
		return 0, nil, invalid("id", "id is required (the check's id the request carried)")
	}
	if res.Status != pgstore.KYCVerified && res.Status != pgstore.KYCRejected {
		return 0, nil, invalid("status", "status must be VERIFIED or REJECTED")
	}
	if err := checkText("reference", res.Reference, false, 200); err != nil {
		return 0, nil, err
	}
	k, err := s.applyKYC(c.ctx, res.ID, res, c.body)
	if err != nil {
		s.kycm.callbacks.WithLabelValues("refused").Inc()
		return 0, nil, err
	}
	s.kycm.callbacks.WithLabelValues("accepted").Inc()
	return http.StatusOK, map[string]string{"id": k.ID, "status": res.Status}, nil
}

// GET .../kyc-checks: the customer's checks, newest first.
func (s *Server) listKYCChecks(c *call) (int, any, error) {
	if !s.noticesOn() {
		return 0, nil, errNoticesUnavailable
	}
	cust, err := c.customer()
	if err != nil {
		return 0, nil, err
	}
	ks, err := s.kyc.List(c.ctx, cust.PartnerID, cust.ID, 50)
	if err != nil {
		return 0, nil, err
	}
	out := make([]kycCheckView, 0, len(ks))
	for _, k := range ks {
		out = append(out, kycViewOf(k))
	}
	return http.StatusOK, map[string]any{"data": out}, nil
}

// kycMetrics are the KYC provider's.
type kycMetrics struct {
	started   prometheus.Counter
	requests  *prometheus.CounterVec // result
	results   *prometheus.CounterVec // status
	callbacks *prometheus.CounterVec // result
}

func newKYCMetrics(reg prometheus.Registerer) (*kycMetrics, error) {
	m := &kycMetrics{
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "antaca_kyc_checks_started_total",
			Help: "KYC checks started at the provider.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_kyc_requests_total",
			Help: "Attempts to send a KYC check to the provider by result: sent (2xx), retry (failed, tried again later), failed (refused for good or past the retry period: given up).",
		}, []string{"result"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_kyc_results_total",
			Help: "KYC results from the provider, by status (VERIFIED, REJECTED).",
		}, []string{"status"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "antaca_kyc_callbacks_total",
			Help: "KYC provider callbacks by result: accepted, refused (unknown or closed check, bad body), bad_signature.",
		}, []string{"result"}),
	}
	var err error
	m.started, err = register(reg, m.started)
	if err == nil {
		m.requests, err = register(reg, m.requests)
	}
	if err == nil {
		m.results, err = register(reg, m.results)
	}
	if err == nil {
		m.callbacks, err = register(reg, m.callbacks)
	}
	return m, err
}
