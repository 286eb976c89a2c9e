package simulator

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/antaca/antaca/simulator/webhook"
)

// KYCProvider plays the KYC provider Antaca sends customers to
// (docs/kyc.md): it takes the switch's signed requests, answers 202 with
// a reference, and calls back (signed with the same secret) with VERIFIED
// or REJECTED by the rule a tester set. It is an http.Handler.
type KYCProvider struct {
	// Secret verifies requests and signs callbacks (the switch's
	// ANTACA_KYC_PROVIDER_SECRET).
	Secret string
	Rule   KYCRule
	// Delay is the time between a request and its callback.
	Delay time.Duration
	// CallbackURL, when set, is used instead of the request's callbackUrl.
	CallbackURL string
	// Client sends callbacks (a client with a 10 s timeout when nil).
	Client *http.Client
	Logger *slog.Logger

	mu       sync.Mutex
	seen     map[string]KYCDecision // by check id: a repeated request gets the same
	wg       sync.WaitGroup
	stopping chan struct{}
	once     sync.Once
}

// KYCRule decides a check.
type KYCRule struct {
	// RejectLastNames rejects customers with one of these last names
	// (compared without case).
	RejectLastNames []string
	// HoldLastNames are never answered: the check stays open (a slow
	// provider, or one that lost it).
	HoldLastNames []string
	// RejectPercent rejects this share (0-100) of the other customers,
	// chosen by a hash of the customer id: the same customer always gets
	// the same answer.
	RejectPercent int
	// Sync answers the result in the answer to the request instead of a
	// callback.
	Sync bool
}

// KYCDecision is the provider's result for one check.
type KYCDecision struct {
	CheckID, CustomerID, Reference, Status, Reason string
	// Delivered is set once the callback was accepted (or the result went
	// in the answer).
	Delivered bool
}

type kycRequest struct {
	ID          string `json:"id"`
	CustomerID  string `json:"customerId"`
	LastName    string `json:"lastName"`
	CallbackURL string `json:"callbackUrl"`
}

type kycResult struct {
	ID        string `json:"id"`
	Reference string `json:"reference"`
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
}

// Decide applies the rule: VERIFIED, REJECTED, or PENDING for a check
// held unanswered.
func (r KYCRule) Decide(customerID, lastName string) (status, reason string) {
	named := func(list []string) bool {
		return slices.ContainsFunc(list, func(n string) bool { return strings.EqualFold(strings.TrimSpace(n), strings.TrimSpace(lastName)) })
	}
	if named(r.HoldLastNames) {
		return "PENDING", "held unanswered"
	}
	if named(r.RejectLastNames) {
		return "REJECTED", "last name on the rejection list"
	}
	if r.RejectPercent > 0 {
		h := sha256.Sum256([]byte(customerID))
		if int(binary.BigEndian.Uint64(h[:8])%100) < r.RejectPercent {
			return "REJECTED", fmt.Sprintf("in the %d%% rejected", r.RejectPercent)
		}
	}
	return "VERIFIED", ""
}

func (p *KYCProvider) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func (p *KYCProvider) init() {
	p.once.Do(func() {
		p.seen = map[string]KYCDecision{}
		p.stopping = make(chan struct{})
		if p.Client == nil {
			p.Client = &http.Client{Timeout: 10 * time.Second}
		}
	})
}

// ServeHTTP takes a KYC request.
func (p *KYCProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.init()
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "reading the body", http.StatusBadRequest)
		return
	}
	if err := webhook.Verify(p.Secret, r.Header.Get(webhook.Header), body, webhook.DefaultTolerance, time.Now()); err != nil {
		p.log().Warn("kyc provider: request refused", "err", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var req kycRequest
	if err := json.Unmarshal(body, &req); err != nil || req.ID == "" || req.CustomerID == "" {
		http.Error(w, "want {id, customerId, ...}", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	d, repeat := p.seen[req.ID]
	if !repeat {
		status, reason := p.Rule.Decide(req.CustomerID, req.LastName)
		d = KYCDecision{CheckID: req.ID, CustomerID: req.CustomerID, Reference: "simkyc-" + req.ID, Status: status, Reason: reason}
		p.seen[req.ID] = d
	}
	p.mu.Unlock()
	res := kycResult{ID: d.CheckID, Reference: d.Reference, Status: "PENDING"}
	if p.Rule.Sync && d.Status != "PENDING" {
		res.Status, res.Reason = d.Status, d.Reason
		p.markDelivered(d.CheckID)
	} else if !repeat && d.Status != "PENDING" {
		p.mu.Lock()
		cb := p.CallbackURL
		p.mu.Unlock()
		if cb == "" {
			cb = req.CallbackURL
		}
		if cb == "" {
			p.log().Warn("kyc provider: no callback URL (give --callback-url or set ANTACA_KYC_CALLBACK_URL on the switch)", "check", req.ID)
		} else {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.callBack(cb, d)
			}()
		}
	}
	p.log().Info("kyc provider: request", "check", req.ID, "decision", d.Status, "repeat", repeat)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(res)
}

// callBack posts d to url after Delay, retrying a refused or failed call
// (5 attempts, 1 s apart, doubling).
func (p *KYCProvider) callBack(url string, d KYCDecision) {
	select {
	case <-time.After(p.Delay):
	case <-p.stopping:
		return
	}
	body, _ := json.Marshal(kycResult{ID: d.CheckID, Reference: d.Reference, Status: d.Status, Reason: d.Reason})
	wait := time.Second
	for attempt := 1; attempt <= 5; attempt++ {
		status, err := p.post(url, body)
		if err == nil && (status/100 == 2 || status == http.StatusConflict) {
			p.log().Info("kyc provider: called back", "check", d.CheckID, "status", d.Status, "answer", status)
			if status/100 == 2 {
				p.markDelivered(d.CheckID)
			}
			return
		}
		p.log().Warn("kyc provider: callback failed", "check", d.CheckID, "attempt", attempt, "status", status, "err", err)
		select {
		case <-time.After(wait):
		case <-p.stopping:
			return
		}
		wait *= 2
	}
}

func (p *KYCProvider) post(url string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.Header, signKYC(p.Secret, time.Now(), body))
	resp, err := p.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

func (p *KYCProvider) markDelivered(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.seen[id]
	d.Delivered = true
	p.seen[id] = d
}

// SetCallbackURL sets CallbackURL while the provider serves.
func (p *KYCProvider) SetCallbackURL(url string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.CallbackURL = url
}

// Decisions lists what the provider decided, by check id.
func (p *KYCProvider) Decisions() []KYCDecision {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]KYCDecision, 0, len(p.seen))
	for _, d := range p.seen {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b KYCDecision) int { return strings.Compare(a.CheckID, b.CheckID) })
	return out
}

// Close stops callbacks that wait and waits for those under way.
func (p *KYCProvider) Close() {
	p.init()
	select {
	case <-p.stopping:
	default:
		close(p.stopping)
	}
	p.wg.Wait()
}

// signKYC is the Antaca-Signature of body at t: "t=<unix>,v1=<hex
// HMAC-SHA256 of "<t>.<body>">", as the switch signs webhooks.
func signKYC(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// ServeKYCProvider serves p on addr until ctx ends.
func ServeKYCProvider(ctx context.Context, addr string, p *KYCProvider) error {
	srv := &http.Server{Addr: addr, Handler: p, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	p.Close()
	return nil
}
