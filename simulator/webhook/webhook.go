// Package webhook receives Antaca's webhooks: Verify checks the
// Antaca-Signature header of a delivery, and Receiver is an http.Handler
// that verifies every delivery and hands its event to a function. It
// imports nothing of Antaca, so a partner can copy it as it is; the
// example program docs/webhook-receiver shows it at work, and
// api/README.md ("Webhooks") describes the events.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header is the signature header of every delivery.
const Header = "Antaca-Signature"

// DefaultTolerance is how far a signature's time may be from the
// receiver's clock: older deliveries are refused as replays.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify.
var (
	ErrMalformed = errors.New("webhook signature header malformed")
	ErrMismatch  = errors.New("webhook signature does not match the body")
	ErrTooOld    = errors.New("webhook signature timestamp outside the tolerance")
)

// Verify checks header ("t=<unix seconds>,v1=<hex>", several v1 allowed)
// against the raw body as received: one v1 must be the HMAC-SHA256, keyed
// with secret, of "<t>.<body>", and t must be within tolerance of now.
// Compare on the raw bytes: a body decoded and encoded again no longer
// matches.
func Verify(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil {
				return ErrMalformed
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed at %s", ErrTooOld, time.Unix(sec, 0).UTC().Format(time.RFC3339))
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrMismatch
}

// Event is the envelope of every delivery.
type Event struct {
	ID        string          `json:"id"` // the same in every delivery of the event: deduplicate on it
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	PartnerID string          `json:"partner_id"`
	Data      json.RawMessage `json:"data"`
}

// Receiver verifies each delivery with Secret and passes the event to
// Handle: 2xx when Handle returns nil (Antaca then considers it
// delivered), 400 for a bad signature or body, 500 when Handle fails
// (Antaca retries).
type Receiver struct {
	Secret    func() string // the endpoint's secret (a func, so it can be rotated)
	Tolerance time.Duration // DefaultTolerance when 0
	Handle    func(ev Event, raw []byte) error
	Now       func() time.Time // time.Now when nil
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "reading body", http.StatusBadRequest)
		return
	}
	now := time.Now
	if rc.Now != nil {
		now = rc.Now
	}
	tol := rc.Tolerance
	if tol == 0 {
		tol = DefaultTolerance
	}
	if err := Verify(rc.Secret(), r.Header.Get(Header), body, tol, now()); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" {
		http.Error(w, "not an event", http.StatusBadRequest)
		return
	}
	if err := rc.Handle(ev, body); err != nil {
		http.Error(w, "not handled", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
