package iso

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/antaca/antaca/authz"
)

// FileUpdater is implemented by Authorizers that apply a card network's
// file updates (0302): adding a card to the issuer's negative file locks
// it, deleting it unlocks it. Without it the server answers 0302 like any
// message type it does not process (format error).
type FileUpdater interface {
	UpdateFile(ctx context.Context, u *authz.FileUpdate) authz.FileUpdateResult
}

// NegativeFile is the one file a file update may name in DE101: the
// issuer's negative card file, the cards locked from outside.
const NegativeFile = "NEGATIVE"

// File update codes (DE91) the switch applies, as ISO 8583:1987 numbers
// them: 1 add a record, 3 delete it. 2 (replace), 4 (reply with the
// record) and 5 (inquiry) are not supported.
const (
	FileUpdateAdd    = "1"
	FileUpdateDelete = "3"
)

// ErrUnsupportedFileUpdate: a file update code or file name the switch
// does not apply. Answered as INVALID_TRANSACTION (9102 / 12).
var ErrUnsupportedFileUpdate = errors.New("unsupported file update")

// fileUpdateMandatory: the card, the identity of the request, what to do
// to which file.
var fileUpdateMandatory = []int{2, 7, 11, 91, 101}

// echoedFileFields are copied from an 0302 into its 0312.
var echoedFileFields = []int{2, 7, 11, 32, 37, 91, 101}

// isFileUpdateRequest reports whether mti is an 0302 or its repeat 0303.
func isFileUpdateRequest(mti string) bool { return mti == "0302" || mti == "0303" }

// ParseFileUpdate maps an 0302 (or its repeat 0303) to a file update.
// DE120 of an add is the lock reason, one digit 1-8. The reference
// recorded with a lock is DE37 when present, else DE7 and DE11 (16
// digits). Errors wrap ErrFormat or ErrUnsupportedFileUpdate; see
// ReasonForError.
func ParseFileUpdate(msg *iso8583.Message) (*authz.FileUpdate, error) {
	mti, err := msg.GetMTI()
	if err != nil {
		return nil, fmt.Errorf("%w: reading MTI: %w", ErrFormat, err)
	}
	if !isFileUpdateRequest(mti) {
		return nil, fmt.Errorf("%w: MTI %s: %w", ErrFormat, mti, ErrUnsupportedMTI)
	}
	f := fields{msg}
	if missing := f.missing(fileUpdateMandatory); len(missing) > 0 {
		return nil, fieldErr("missing", missing...)
	}
	u := &authz.FileUpdate{MTI: mti, Source: "NETWORK"}
	if u.PAN, err = f.digits(2, 12, 19); err != nil {
		return nil, err
	}
	ts, err := f.transmissionTime()
	if err != nil {
		return nil, err
	}
	if u.STAN, err = f.digits(11, 6, 6); err != nil {
		return nil, err
	}
	if _, err := f.optionalDigits(32, 1, 11); err != nil {
		return nil, err
	}
	if name := strings.TrimRight(f.str(101), " "); name != NegativeFile {
		return nil, fmt.Errorf("DE101 file %q: %w", name, ErrUnsupportedFileUpdate)
	}
	switch code := f.str(91); code {
	case FileUpdateAdd:
		u.Action = authz.FileAdd
		if !f.has(120) {
			return nil, fieldErr("missing (the lock reason of an add)", 120)
		}
		r := f.str(120)
		if len(r) != 1 || r[0] < '1' || r[0] > '8' {
			return nil, fieldErr("is not a lock reason, one digit 1-8", 120)
		}
		u.Lock = authz.LockReason(r[0] - '0')
	case FileUpdateDelete:
		u.Action = authz.FileDelete
	default:
		return nil, fmt.Errorf("DE91 file update code %q: %w", code, ErrUnsupportedFileUpdate)
	}
	u.Reference = ts + u.STAN
	if rrn := strings.TrimSpace(f.str(37)); rrn != "" {
		u.Reference = rrn
	}
	return u, nil
}

// fileUpdateRecord writes DE120 of an 0312: the card's lock reason in
// force after the update, one digit (0 when not locked). Only answers
// that reached the card carry it.
func fileUpdateRecord(res authz.FileUpdateResult) func(*iso8583.Message) error {
	return func(resp *iso8583.Message) error {
		if res.CardID == "" || res.Reason == authz.ReasonUnknownCard || res.Reason == authz.ReasonCardRemoved ||
			!(res.Reason.Approved() || res.Reason == authz.ReasonNotPermitted) {
			return nil
		}
		if err := resp.Field(120, strconv.Itoa(int(res.Lock))); err != nil {
			return fmt.Errorf("building response: setting DE120: %w", err)
		}
		return nil
	}
}

// handleFileUpdate answers an 0302 under the request deadline.
func (c *serverConn) handleFileUpdate(mti string, msg *iso8583.Message, received time.Time, fu FileUpdater) {
	u, err := ParseFileUpdate(msg)
	if err != nil {
		c.reject("file update rejected", mti, msg, received, err)
		return
	}
	ctx, cancel := context.WithDeadline(c.srv.baseCtx, received.Add(c.srv.cfg.RequestTimeout))
	defer cancel()
	type result struct {
		res      authz.FileUpdateResult
		panicked any
		stack    []byte
	}
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				ch <- result{panicked: r, stack: debug.Stack()}
			}
		}()
		ch <- result{res: fu.UpdateFile(ctx, u)}
	}()
	var res authz.FileUpdateResult
	select {
	case r := <-ch:
		res = r.res
		if r.panicked != nil {
			c.log.Error("panic in file update", "mti", mti, "stan", u.STAN, "panic", r.panicked, "stack", string(r.stack))
			res = authz.FileUpdateResult{Reason: authz.ReasonSystemError}
		}
	case <-ctx.Done():
		// A lock that lands after the answer is still what was asked;
		// the network repeats the update until it has an answer.
		c.srv.m.timeouts.Inc()
		res = authz.FileUpdateResult{Reason: authz.ReasonIssuerUnavailable}
	}
	c.log.Info("file update", "mti", mti, "action", string(u.Action), "lock", int(u.Lock), "reason", res.Reason,
		"card", res.CardID, "lock_after", int(res.Lock), "pan", MaskPAN(u.PAN), "stan", u.STAN)
	c.answer(mti, msg, authz.Decision{Reason: res.Reason, CardID: res.CardID, PartnerID: res.PartnerID}, received, nil, -1, fileUpdateRecord(res))
}
