package iso

import (
	"fmt"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/antaca/antaca/authz"
)

// Network management information codes (DE70) the switch answers.
const (
	NetworkSignOn  = "001"
	NetworkSignOff = "002"
	NetworkEcho    = "301"
)

// networkCodes names the DE70 codes for logs.
var networkCodes = map[string]string{
	NetworkSignOn:  "sign-on",
	NetworkSignOff: "sign-off",
	NetworkEcho:    "echo",
}

// NetworkReason decides an 0800 without the Authorizer: link management
// must keep working when the decision engine or its stores are down, or the
// processor would take the link out of service exactly when it is needed
// back. Known codes are accepted; anything else is a format error.
func NetworkReason(msg *iso8583.Message) (authz.Reason, error) {
	f := fields{msg}
	if missing := f.missing(networkMandatory); len(missing) > 0 {
		return authz.ReasonFormatError, fieldErr("missing", missing...)
	}
	if _, err := f.digits(11, 6, 6); err != nil {
		return authz.ReasonFormatError, err
	}
	if f.has(7) {
		if _, err := f.transmissionTime(); err != nil {
			return authz.ReasonFormatError, err
		}
	}
	code := f.str(70)
	if _, ok := networkCodes[code]; !ok {
		return authz.ReasonFormatError, fieldErr(fmt.Sprintf("network management code %q is not 001, 002 or 301", code), 70)
	}
	return authz.ReasonNetworkAccepted, nil
}

// AnswerNetworkManagement builds the 0810 for an 0800: DE39 "network
// management accepted" for sign-on, sign-off and echo, format error for
// anything else. The returned error explains a format error; the message
// is built either way.
func AnswerNetworkManagement(p *Profile, req *iso8583.Message) (*iso8583.Message, error) {
	reason, cause := NetworkReason(req)
	resp, err := BuildResponse(p, req, authz.Decision{Reason: reason})
	if err != nil {
		return nil, err
	}
	return resp, cause
}

// NewNetworkRequest builds an 0800 with DE7 (now, UTC), DE11 stan and DE70
// code: the server's idle echo and the client's sign-on, sign-off and echo.
func NewNetworkRequest(p *Profile, code, stan string, now time.Time) (*iso8583.Message, error) {
	msg := iso8583.NewMessage(p.Spec)
	msg.MTI(mtiNetworkRequest)
	for id, v := range map[int]string{7: TransmissionTime(now), 11: stan, 70: code} {
		if err := msg.Field(id, v); err != nil {
			return nil, fmt.Errorf("building 0800: setting DE%d: %w", id, err)
		}
	}
	return msg, nil
}

// TransmissionTime formats t as DE7 (MMDDhhmmss, UTC).
func TransmissionTime(t time.Time) string { return t.UTC().Format("0102150405") }
