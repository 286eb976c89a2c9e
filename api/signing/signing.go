// Package signing signs what Antaca sends to a partner's own servers
// (webhooks, real-time decision requests) so that the partner can tell the
// request came from Antaca and was not replayed long after.
package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Header carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">".
const Header = "Antaca-Signature"

// Sign returns the Antaca-Signature value of body sent at t with secret.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// ErrInvalid is what Verify returns for a header that is missing,
// malformed, outside the tolerance or not matching the body.
var ErrInvalid = errors.New("invalid Antaca-Signature")

// Verify checks a header Sign made ("t=<unix>,v1=<hex>", several v1
// allowed) against the raw body: one v1 must be the HMAC-SHA256 of
// "<t>.<body>" with secret, and t within tolerance of now. Used where
// Antaca receives what a partner's server signed (KYC callbacks).
// simulator/webhook keeps a copy on purpose: partners copy that package
// as it is, so it imports nothing of Antaca.
func Verify(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	if secret == "" || header == "" {
		return ErrInvalid
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrInvalid
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil {
				return ErrInvalid
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrInvalid
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrInvalid
	}
	// The same MAC as Sign, for the header's own time.
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return ErrInvalid
}
