package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
)

// createIdemTTL is how long a create's Idempotency-Key is remembered;
// createClaimTTL how long a claim of a create still running holds, so that
// a process that died mid-request does not block the key for a day.
const (
	createIdemTTL  = 24 * time.Hour
	createClaimTTL = time.Minute
)

var (
	errIdemInUse  = apiErr(http.StatusConflict, "IDEMPOTENCY_KEY_IN_USE", "a request with this Idempotency-Key is still being processed; retry later")
	errIdemReused = apiErr(http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED", "the Idempotency-Key was used with a different request")
)

// idemRecord is what a finished create left under its key: the answer to
// replay. Answers carrying card data (a virtual card's full data) are not
// kept: only the card id, and the replay reads the data again.
type idemRecord struct {
	Fingerprint string          `json:"fp"`
	Claim       string          `json:"claim,omitempty"` // the running request's token
	Status      int             `json:"status,omitempty"`
	Body        json.RawMessage `json:"body,omitempty"`
	FullDataOf  string          `json:"fullDataOf,omitempty"`
	// CardDataOf: a replacement answer kept without its new card's data
	// (cardData), read again for the replay.
	CardDataOf string `json:"cardDataOf,omitempty"`
	AsyncCard  string `json:"asyncCard,omitempty"` // a 202 of an async virtual card
}

// idempotentCreate runs a create route (route.create) so that a retry with
// the same Idempotency-Key gets the first answer and creates nothing, as
// Stripe-style APIs do. The key is scoped to the caller (partner, customer
// or admin), the route and the path; the request body (decrypted) must be
// the same, or the answer is 422 IDEMPOTENCY_KEY_REUSED. A request still
// running under the key gets 409 IDEMPOTENCY_KEY_IN_USE. A create refused
// with a 4xx changed nothing and is forgotten, so it can be retried with
// the same key; after a 5xx the claim is left to expire (createClaimTTL),
// since the resource may exist. Replays carry Idempotent-Replayed: true.
//
// The handler runs on a context the client's going away does not cancel:
// a client that timed out is the one that retries, and a create cut off
// between its script and its answer would otherwise look failed.
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
	token := make([]byte, 12)
	_, _ = rand.Read(token)

	pending, _ := json.Marshal(idemRecord{Fingerprint: fingerprint, Claim: hex.EncodeToString(token)})
	claimed, err := s.cfg.Redis.SetNX(c.ctx, rkey, pending, createClaimTTL).Result()
	if err != nil {
		return 0, nil, fmt.Errorf("claiming idempotency key: %w", err)
	}
	if !claimed {
		return s.replayCreate(w, c, rkey, fingerprint)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), createClaimTTL/2)
	defer cancel()
	c.ctx = ctx
	release := true // unless the create is recorded or may have happened
	defer func() {
		if release { // a 4xx, or a panic before anything was written
			if err := releaseClaim.Run(ctx, s.cfg.Redis, []string{rkey}, pending).Err(); err != nil {
				s.log.WarnContext(ctx, "releasing an idempotency claim", "err", err)
			}
		}
	}()
	status, body, err := c.rt.h(c)
	if err != nil {
		if _, internal := toAPIError(err); internal {
			release = false // the resource may exist: let the claim expire
		}
		return status, body, err
	}
	if status/100 != 2 {
		return status, body, nil
	}
	release = false
	rec := idemRecord{Fingerprint: fingerprint, Status: status}
	switch v := body.(type) {
	case issuing.FullData:
		rec.FullDataOf = v.ID
	case asyncCard:
		rec.AsyncCard = v.ID
		rec.Body, err = json.Marshal(body)
	case replacement:
		if v.CardData != nil {
			rec.CardDataOf = v.Card.ID
			v.CardData = nil
		}
		rec.Body, err = json.Marshal(v)
	default:
		rec.Body, err = json.Marshal(body)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("recording idempotent answer: %w", err)
	}
	b, _ := json.Marshal(rec)
	if err := recordClaim.Run(ctx, s.cfg.Redis, []string{rkey}, pending, b, createIdemTTL.Milliseconds()).Err(); err != nil {
		// The resource exists; once the claim expires a retry would make
		// a second one, which is what the caller risked without a key.
		s.log.ErrorContext(ctx, "create done but its idempotency record not stored", "route", c.rt.pattern, "err", err)
	}
	return status, body, nil
}

// releaseClaim and recordClaim change a key only while it still holds this
// request's claim: after createClaimTTL another request may own it.
var (
	releaseClaim = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
	recordClaim = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return redis.error_reply('CLAIM_LOST')`)
)

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
		return 0, nil, fmt.Errorf("reading idempotency record: %w", err)
	}
	if rec.Fingerprint != fingerprint {
		return 0, nil, errIdemReused
	}
	if rec.Status == 0 {
		return 0, nil, errIdemInUse
	}
	if rec.AsyncCard != "" && s.asyncCardFailed(c, rec.AsyncCard) {
		// The 202 promised a card that was never made: the key is free
		// again, and this request creates it anew.
		if err := releaseClaim.Run(c.ctx, s.cfg.Redis, []string{rkey}, string(raw)).Err(); err != nil {
			return 0, nil, fmt.Errorf("releasing a failed async create: %w", err)
		}
		return s.idempotentCreate(w, c)
	}
	var body any = rec.Body
	if rec.CardDataOf != "" {
		var r replacement
		if err := json.Unmarshal(rec.Body, &r); err != nil {
			return 0, nil, fmt.Errorf("reading idempotency record: %w", err)
		}
		full, err := s.cfg.Issuing.FullData(c.ctx, c.partnerID, rec.CardDataOf)
		if err != nil {
			return 0, nil, err
		}
		r.CardData = &full
		body = r
	}
	if rec.FullDataOf != "" {
		full, err := s.cfg.Issuing.FullData(c.ctx, c.partnerID, rec.FullDataOf)
		if err != nil {
			return 0, nil, err
		}
		body = full
	}
	w.Header().Set("Idempotent-Replayed", "true")
	return rec.Status, body, nil
}

// asyncCardFailed reports whether an async virtual card creation ended
// without a card: its marker says FAILED, or it is gone and no card has
// the id.
func (s *Server) asyncCardFailed(c *call, id string) bool {
	status, err := s.cfg.Redis.HGet(c.ctx, s.keys.pendingCard(id), "status").Result()
	switch {
	case err == nil:
		return status == "FAILED"
	case !errors.Is(err, redis.Nil):
		return false // cannot tell: replay what was answered
	}
	_, err = s.cfg.Ledger.PartnerOf(c.ctx, id)
	return errors.Is(err, ledger.ErrNotFound)
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
