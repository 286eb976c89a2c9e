package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz/issuing"
)

// createIdemTTL is how long a create's Idempotency-Key is remembered;
// createClaimTTL how long a claim of a create still running holds, so that
// a process that died mid-request does not block the key for a day.
const (
	createIdemTTL  = 24 * time.Hour
	createClaimTTL = time.Minute
)

var (
	errIdemInUse    = apiErr(http.StatusConflict, "IDEMPOTENCY_KEY_IN_USE", "a request with this Idempotency-Key is still being processed; retry later")
	errIdemReused   = apiErr(http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED", "the Idempotency-Key was used with a different request")
	errIdemRecorded = errors.New("idempotency record unreadable")
)

// idemRecord is what a finished create left under its key: the answer to
// replay. Answers carrying card data (a virtual card's full data) are not
// kept: only the card id, and the replay reads the data again.
type idemRecord struct {
	Fingerprint string          `json:"fp"`
	Status      int             `json:"status,omitempty"`
	Body        json.RawMessage `json:"body,omitempty"`
	FullDataOf  string          `json:"fullDataOf,omitempty"`
}

// idempotentCreate runs a create route (route.create) so that a retry with
// the same Idempotency-Key gets the first answer and creates nothing, as
// Stripe-style APIs do. The key is scoped to the caller (partner, customer
// or admin), the route and the path; the request body (decrypted) must be
// the same, or the answer is 422 IDEMPOTENCY_KEY_REUSED. A request still
// running under the key gets 409 IDEMPOTENCY_KEY_IN_USE. Failed creates
// are forgotten, so they can be retried with the same key. Replays carry
// the header Idempotent-Replayed: true.
func (s *Server) idempotentCreate(w http.ResponseWriter, c *call) (int, any, error) {
	key := c.r.Header.Get("Idempotency-Key")
	if key == "" {
		return c.rt.h(c)
	}
	if err := checkIdempotencyKey(key); err != nil {
		return 0, nil, err
	}
	principal := c.partnerID + "|" + c.customerID
	if c.admin != nil {
		principal = "admin|" + c.admin.Username
	}
	scope := sha256.Sum256([]byte(principal + "\n" + c.r.Method + " " + c.r.URL.Path + "\n" + key))
	rkey := s.keys.createIdem(hex.EncodeToString(scope[:]))
	fp := sha256.Sum256(c.body)
	fingerprint := hex.EncodeToString(fp[:])

	pending, _ := json.Marshal(idemRecord{Fingerprint: fingerprint})
	claimed, err := s.cfg.Redis.SetNX(c.ctx, rkey, pending, createClaimTTL).Result()
	if err != nil {
		return 0, nil, fmt.Errorf("claiming idempotency key: %w", err)
	}
	if !claimed {
		return s.replayCreate(w, c, rkey, fingerprint)
	}
	recorded := false
	defer func() {
		if !recorded { // failed, or panicked: nothing to replay, the key is free
			s.cfg.Redis.Del(context.WithoutCancel(c.ctx), rkey)
		}
	}()
	status, body, err := c.rt.h(c)
	if err != nil || status/100 != 2 {
		return status, body, err
	}
	rec := idemRecord{Fingerprint: fingerprint, Status: status}
	if full, ok := body.(issuing.FullData); ok {
		rec.FullDataOf = full.ID
	} else if rec.Body, err = json.Marshal(body); err != nil {
		return 0, nil, fmt.Errorf("recording idempotent answer: %w", err)
	}
	b, _ := json.Marshal(rec)
	recorded = true
	if err := s.cfg.Redis.Set(context.WithoutCancel(c.ctx), rkey, b, createIdemTTL).Err(); err != nil {
		// The resource exists; a retry would now make a second one, which
		// is what the caller risked without a key. Say so in the logs.
		s.log.ErrorContext(c.ctx, "create done but its idempotency record not stored", "route", c.rt.pattern, "err", err)
	}
	return status, body, nil
}

// replayCreate answers a repeated create from its record.
func (s *Server) replayCreate(w http.ResponseWriter, c *call, rkey, fingerprint string) (int, any, error) {
	raw, err := s.cfg.Redis.Get(c.ctx, rkey).Bytes()
	if errors.Is(err, redis.Nil) {
		return 0, nil, errIdemInUse // expired between the two calls: rare, retry
	}
	if err != nil {
		return 0, nil, fmt.Errorf("reading idempotency record: %w", err)
	}
	var rec idemRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", errIdemRecorded, err)
	}
	if rec.Fingerprint != fingerprint {
		return 0, nil, errIdemReused
	}
	if rec.Status == 0 {
		return 0, nil, errIdemInUse
	}
	w.Header().Set("Idempotent-Replayed", "true")
	if rec.FullDataOf != "" {
		full, err := s.cfg.Issuing.FullData(c.ctx, c.partnerID, rec.FullDataOf)
		if err != nil {
			return 0, nil, err
		}
		return rec.Status, full, nil
	}
	return rec.Status, rec.Body, nil
}

// checkIdempotencyKey enforces the Idempotency-Key format.
func checkIdempotencyKey(k string) error {
	if len(k) > 255 {
		return invalid("Idempotency-Key", "Idempotency-Key is at most 255 characters")
	}
	for _, r := range k {
		if r < 0x21 || r > 0x7e {
			return invalid("Idempotency-Key", "Idempotency-Key must be printable ASCII without spaces")
		}
	}
	return nil
}
