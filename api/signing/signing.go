// Package signing signs what Antaca sends to a partner's own servers
// (webhooks, real-time decision requests) so that the partner can tell the
// request came from Antaca and was not replayed long after.
package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
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
