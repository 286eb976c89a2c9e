package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/redis/go-redis/v9"
)

// TokenFunc turns a PAN into its lookup token (cardcrypto.Keys.LookupToken).
type TokenFunc func(pan string) string

// Engine adapts the ledger to the decision engine's authz.Ledger interface.
type Engine struct {
	L     *Ledger
	Token TokenFunc
	// VelocityWindow is the window of the per-card frequency counter
	// (default one hour).
	VelocityWindow time.Duration
	// OnPartnerBelowThreshold, when set, is called (in its own goroutine,
	// off the authorization path) when an authorization, a stand-in
	// advice (forced post) or a completion above its hold took a partner
	// deposit below its low-balance threshold.
	OnPartnerBelowThreshold func(ctx context.Context, partnerID string, ch BalanceChange)
	// OnStateLost, when set, is called when an authorization found Redis
	// without the ledger's state (a restart without persistence), so the
	// owner can rebuild at once. It must not block.
	OnStateLost func()
	// Available, when set, says whether answers can be made durable now
	// (the journal commits to Postgres); while it is false, authorizations
	// answer issuer unavailable before touching Redis.
	Available func() bool

	// CardCacheTTL bounds how long a card read for an authorization is
	// reused without reading Redis again (default 30s; negative: no cache).
	// Reuse is always safe for approvals: the reservation checks the card's
	// version in the same script, and a decline decided on a cached card is
	// decided again on a fresh read (authz.Engine).
	CardCacheTTL time.Duration

	cards sync.Map // lookup token -> *cachedCard

	// bins caches BIN prefix -> partner id. A program's BIN never changes
	// and is never reused (CreatePartner claims it for good), so a found
	// route stays true; misses always ask Redis, so a new program routes
	// at once. It saves one round trip per authorization.
	bins sync.Map

	// routes is every program's BIN ranges, in process: a PAN routes with
	// no Redis round trip. A miss reads the ranges again (one round trip,
	// the same a miss cost before), so a new program routes at once.
	routes atomic.Pointer[authz.RouteTable]
	// programs caches programs by partner/program id for CardCacheTTL.
	programs sync.Map
}

var _ authz.Programs = (*Engine)(nil)

var _ authz.Ledger = (*Engine)(nil)
var _ authz.Velocity = (*Engine)(nil)

// storeErr classifies an error: connection failures and deadlines become
// authz.ErrUnavailable, sentinels their authz counterparts.
func storeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrCardNotFound):
		return fmt.Errorf("%w: %w", authz.ErrCardNotFound, err)
	case errors.Is(err, ErrHoldNotFound):
		return fmt.Errorf("%w: %w", authz.ErrHoldNotFound, err)
	case errors.Is(err, ErrHoldClosed):
		return fmt.Errorf("%w: %w", authz.ErrHoldClosed, err)
	case errors.Is(err, ErrBalanceLimit):
		return fmt.Errorf("%w: %w", authz.ErrBalanceLimit, err)
	case errors.Is(err, ErrCardChanged):
		return fmt.Errorf("%w: %w", authz.ErrCardChanged, err)
	case errors.Is(err, ErrIdempotencyMismatch):
		return fmt.Errorf("%w: %w", authz.ErrMismatch, err)
	case errors.Is(err, ErrPartnerNotFound):
		// A routed partner without state: Redis lost it and is being rebuilt.
		return fmt.Errorf("%w: %w", authz.ErrUnavailable, err)
	case errors.Is(err, ErrNotDurable):
		return fmt.Errorf("%w: %w", authz.ErrUnavailable, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %w", authz.ErrUnavailable, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) {
		return fmt.Errorf("%w: %w", authz.ErrUnavailable, err)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fmt.Errorf("%w: %w", authz.ErrUnavailable, err)
	}
	return err
}

// FindCard routes a PAN by BIN to its partner, then by lookup token to the card.
func (e *Engine) FindCard(ctx context.Context, pan string) (authz.CardInfo, error) {
	if e.Available != nil && !e.Available() {
		return authz.CardInfo{}, fmt.Errorf("journal store unavailable: %w", authz.ErrUnavailable)
	}
	partnerID, err := e.route(ctx, pan)
	if errors.Is(err, ErrNotFound) {
		// An unknown BIN is a hard decline, unless Redis lost the routes:
		// then the card may well exist, and the answer is "unavailable".
		ready, rerr := e.L.Ready(ctx)
		if rerr != nil {
			return authz.CardInfo{}, storeErr(rerr)
		}
		if !ready {
			e.stateLost()
			return authz.CardInfo{}, fmt.Errorf("routing card: redis holds no ledger state: %w", authz.ErrUnavailable)
		}
		return authz.CardInfo{}, fmt.Errorf("routing card: %w", authz.ErrCardNotFound)
	}
	if err != nil {
		return authz.CardInfo{}, storeErr(err)
	}
	token := e.Token(pan)
	ttl := e.cardTTL()
	if ttl > 0 {
		if v, ok := e.cards.Load(token); ok {
			cc := v.(*cachedCard)
			if cc.info.PartnerID == partnerID && time.Since(cc.at) < ttl {
				info := cc.info
				info.Cached = true
				return info, nil
			}
		}
	}
	c, err := e.L.CardByPANHash(ctx, partnerID, token)
	if errors.Is(err, ErrPartnerNotFound) {
		e.stateLost()
	}
	if err != nil {
		return authz.CardInfo{}, storeErr(err)
	}
	info := authz.CardInfo{
		ID: c.ID, PartnerID: partnerID, BalanceID: c.BalanceID, Type: authz.CardType(c.Type),
		Status: authz.CardStatus(c.Status), Lock: authz.LockReason(c.LockReason), Expiry: c.Expiry,
		PINVerifier: c.PINVerifier, PINTries: c.PINTries, Currency: c.BalanceCurrency, CVVEnc: c.CVVEnc,
		Version: c.Version, ProgramID: ProgramOfCard(partnerID, c.ProgramID), Controls: c.Controls, CustomerID: c.CustomerID,
	}
	if ttl > 0 && c.Version > 0 {
		e.cards.Store(token, &cachedCard{info: info, at: time.Now()})
	}
	return info, nil
}

// cachedCard is a card as an authorization read it.
type cachedCard struct {
	info authz.CardInfo
	at   time.Time
}

func (e *Engine) cardTTL() time.Duration {
	if e.CardCacheTTL == 0 {
		return 30 * time.Second
	}
	return e.CardCacheTTL
}

// ForgetCard drops the cached card of a PAN.
func (e *Engine) ForgetCard(pan string) { e.cards.Delete(e.Token(pan)) }

func (e *Engine) stateLost() {
	e.cards.Clear() // what was read before the loss is not to be reused
	if e.OnStateLost != nil {
		e.OnStateLost()
	}
}

// checkState reports a lost Redis state (a script found no partner) to the
// owner, and passes err on classified.
func (e *Engine) checkState(err error) error {
	if errors.Is(err, ErrPartnerNotFound) {
		e.stateLost()
	}
	return storeErr(err)
}

// route finds the partner of a PAN: by the longest matching range of the
// in-process routing table, reloaded on a miss; a partner whose BIN
// predates programs and has no range yet routes by its BIN.
func (e *Engine) route(ctx context.Context, pan string) (string, error) {
	if r, ok := e.routes.Load().Lookup(pan); ok {
		return r.PartnerID, nil
	}
	routes, err := e.L.Routes(ctx)
	if err != nil {
		return "", err
	}
	t := authz.NewRouteTable(routes)
	e.routes.Store(t)
	if r, ok := t.Lookup(pan); ok {
		return r.PartnerID, nil
	}
	for _, n := range []int{8, 7, 6} {
		if len(pan) >= n {
			if p, ok := e.bins.Load(pan[:n]); ok {
				return p.(string), nil
			}
		}
	}
	partnerID, bin, err := e.L.RouteBIN(ctx, pan)
	if err != nil {
		return "", err
	}
	e.bins.Store(bin, partnerID)
	return partnerID, nil
}

func reservation(f authz.Funds) Reservation {
	return Reservation{
		PartnerID: f.PartnerID, BalanceID: f.BalanceID, CardID: f.CardID, Amount: f.Amount,
		IdempotencyKey: f.IdempotencyKey, ApprovalCode: f.ApprovalCode, TxnType: f.TxnType,
		Capture: f.Capture, AllowPartial: f.AllowPartial, Reference: f.Reference, Meta: f.Meta,
		CardVersion: f.CardVersion, ProgramID: f.ProgramID, MCC: f.Facts.MCC, Country: f.Facts.Country,
		Channel: f.Facts.Channel, Fund: f.Fund, Cap: f.Cap,
	}
}

type cachedProgram struct {
	p   authz.Program
	loc *time.Location
	at  time.Time
}

// Program returns a program, from the cache while it is younger than the
// card cache's TTL: a change of time zone or remote URL takes that long to
// reach every switch. Controls never come from here: the reservation
// reads them in Redis.
func (e *Engine) Program(ctx context.Context, partnerID, programID string) (authz.Program, error) {
	c, err := e.program(ctx, partnerID, programID)
	if err != nil {
		return authz.Program{}, err
	}
	return c.p, nil
}

func (e *Engine) program(ctx context.Context, partnerID, programID string) (*cachedProgram, error) {
	programID = ProgramOfCard(partnerID, programID)
	k := partnerID + "/" + programID
	ttl := e.cardTTL()
	if v, ok := e.programs.Load(k); ok && ttl > 0 && time.Since(v.(*cachedProgram).at) < ttl {
		return v.(*cachedProgram), nil
	}
	p, err := e.L.Program(ctx, partnerID, programID)
	if errors.Is(err, ErrProgramNotFound) {
		// A partner without programs (no BIN): UTC windows, no remote.
		p = authz.Program{ID: programID, PartnerID: partnerID, StandIn: authz.StandIn{Policy: authz.StandInDecline}}
		err = nil
	}
	if err != nil {
		return nil, storeErr(err)
	}
	c := &cachedProgram{p: p, loc: p.Location(), at: time.Now()}
	if ttl > 0 {
		e.programs.Store(k, c)
	}
	return c, nil
}

// ForgetProgram drops a cached program (after a change made here).
func (e *Engine) ForgetProgram(partnerID, programID string) {
	e.programs.Delete(partnerID + "/" + ProgramOfCard(partnerID, programID))
}

func fundsResult(r ReservationResult) authz.FundsResult {
	return authz.FundsResult{Reason: authz.Reason(r.Reason), HoldID: r.HoldID, Approved: r.Approved, Available: r.Available, ApprovalCode: r.ApprovalCode}
}

// Reserve places the hold.
func (e *Engine) Reserve(ctx context.Context, f authz.Funds) (authz.FundsResult, error) {
	res := reservation(f)
	if f.CardID != "" {
		p, err := e.program(ctx, f.PartnerID, f.ProgramID)
		if err != nil {
			return authz.FundsResult{}, err
		}
		res.Location = p.loc
	}
	r, err := e.L.Reserve(ctx, res)
	if errors.Is(err, ErrNotDurable) {
		e.undoNotDurable(ctx, f)
	}
	if err == nil {
		e.crossed(ctx, f.PartnerID, r.Partner)
	}
	return fundsResult(r), e.checkState(err)
}

// crossed reports a partner deposit that fell below its threshold.
func (e *Engine) crossed(ctx context.Context, partnerID string, ch BalanceChange) {
	if e.OnPartnerBelowThreshold != nil && ch.CrossedBelow() {
		go e.OnPartnerBelowThreshold(context.WithoutCancel(ctx), partnerID, ch)
	}
}

// undoNotDurable undoes a change whose journal entry could not be committed
// before the deadline: the answer is issuer unavailable, so the hold must
// not stay (a decline with a live hold would keep the cardholder's money).
// The stored answer becomes ISSUER_UNAVAILABLE, so a retransmission gets
// what the network was told. Both entries reach Postgres in order once it
// commits again.
func (e *Engine) undoNotDurable(ctx context.Context, f authz.Funds) {
	if f.IdempotencyKey == "" {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if _, err := e.CancelLate(cctx, f.PartnerID, f.IdempotencyKey, authz.ReasonIssuerUnavailable, f.Meta); err != nil {
		slog.Default().Error("undoing a change that was not durable in time failed; the hold waits for expiry",
			"partner", f.PartnerID, "err", err)
	}
}

// ForcePost posts a stand-in advice.
func (e *Engine) ForcePost(ctx context.Context, f authz.Funds) (authz.FundsResult, error) {
	r, err := e.L.ForcePost(ctx, reservation(f))
	if err == nil {
		e.crossed(ctx, f.PartnerID, r.Partner)
	}
	return fundsResult(r), e.checkState(err)
}

// Refund credits the user balance.
func (e *Engine) Refund(ctx context.Context, f authz.Funds) (authz.FundsResult, error) {
	r, err := e.L.Refund(ctx, reservation(f))
	if errors.Is(err, ErrNotDurable) {
		e.undoNotDurable(ctx, f)
	}
	return fundsResult(r), e.checkState(err)
}

// Capture completes a hold, allowing more than it holds (an advice).
func (e *Engine) Capture(ctx context.Context, partnerID, holdID string, amount int64, idemKey, meta string) (authz.Release, error) {
	s, err := e.L.Capture(ctx, partnerID, holdID, amount, true, idemKey, meta)
	if err == nil {
		e.crossed(ctx, partnerID, s.Partner)
	}
	return authz.Release{Amount: s.Captured, Available: s.Available}, e.checkState(err)
}

// Void releases a hold or gives back what it posted.
func (e *Engine) Void(ctx context.Context, partnerID, holdID string, amount int64, idemKey, meta string) (authz.Release, error) {
	s, err := e.L.Void(ctx, partnerID, holdID, amount, true, idemKey, meta)
	return authz.Release{Amount: s.Released, Available: s.Available}, e.checkState(err)
}

// HoldAmount is what a hold stands for now: held (open) or posted (captured).
func (e *Engine) HoldAmount(ctx context.Context, partnerID, holdID string) (int64, error) {
	h, err := e.L.Hold(ctx, partnerID, holdID)
	if err != nil {
		return 0, storeErr(err)
	}
	switch h.State {
	case "OPEN":
		return h.Amount - h.Captured - h.Released, nil
	case "CAPTURED":
		return h.Captured, nil
	case "REFUNDED":
		return h.Amount - h.Released, nil
	}
	return 0, fmt.Errorf("reading hold: %w", authz.ErrHoldClosed)
}

// Prior returns the answer stored under an idempotency key.
func (e *Engine) Prior(ctx context.Context, partnerID, key string) (authz.PriorAnswer, bool, error) {
	a, ok, err := e.L.Answer(ctx, partnerID, key)
	if err != nil || !ok {
		return authz.PriorAnswer{}, ok, storeErr(err)
	}
	return authz.PriorAnswer{Reason: authz.Reason(a.Reason), HoldID: a.HoldID, ApprovalCode: a.ApprovalCode, Approved: a.Approved, Available: a.Available}, true, nil
}

// FindHold finds the hold of the original transaction: its idempotency
// key first, the RRN reference second.
func (e *Engine) FindHold(ctx context.Context, partnerID, originalKey, reference string) (string, error) {
	if originalKey != "" {
		a, ok, err := e.L.Answer(ctx, partnerID, originalKey)
		if err != nil {
			return "", storeErr(err)
		}
		if ok && a.HoldID != "" {
			return a.HoldID, nil
		}
	}
	if reference != "" {
		id, err := e.L.HoldByReference(ctx, partnerID, reference)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, ErrHoldNotFound) {
			return "", storeErr(err)
		}
	}
	return "", fmt.Errorf("finding original: %w", authz.ErrHoldNotFound)
}

// RecordDecline stores and journals a decline, or returns the answer the
// key already holds.
func (e *Engine) RecordDecline(ctx context.Context, partnerID, key string, amount int64, reason authz.Reason, meta string) (authz.PriorAnswer, error) {
	v, err := e.L.run(ctx, "record_decline", partnerID, key, amount, string(reason), e.L.ttlMS(), meta).Result()
	if err != nil {
		return authz.PriorAnswer{}, storeErr(mapScriptError("recording decline", err))
	}
	s := toStrings(v)
	f := fields{what: "record_decline reply"}
	a := authz.PriorAnswer{Reason: authz.Reason(s[0]), HoldID: s[1], Approved: f.int("approved", s[2]), Available: f.int("available", s[3]), ApprovalCode: s[4]}
	return a, storeErr(f.err)
}

// RecordPIN counts a PIN check on the card as read at version.
func (e *Engine) RecordPIN(ctx context.Context, partnerID, cardID string, correct bool, version int64, meta string) (authz.LockReason, int64, error) {
	_, lock, after, err := e.L.RecordPINAt(ctx, partnerID, cardID, correct, authz.MaxPINTries, version, meta)
	return authz.LockReason(lock), after, storeErr(err)
}

// Balance returns a user balance's available amount.
func (e *Engine) Balance(ctx context.Context, partnerID, balanceID string) (int64, error) {
	b, err := e.L.UserBalance(ctx, partnerID, balanceID)
	return b.Available, storeErr(err)
}

// Count increments and returns the card's authorizations in the window.
func (e *Engine) Count(ctx context.Context, partnerID, cardID string) (int64, error) {
	w := e.VelocityWindow
	if w <= 0 {
		w = time.Hour
	}
	n, err := e.L.runWith(ctx, readOnly, "velocity", partnerID, cardID, w.Milliseconds()).Int64()
	return n, storeErr(err)
}

// CancelLate undoes a late approval (see authz.Engine.Abandon).
func (e *Engine) CancelLate(ctx context.Context, partnerID, key string, reason authz.Reason, meta string) (int64, error) {
	n, err := e.L.runWith(ctx, noWait, "cancel_late", partnerID, key, string(reason), meta, e.L.ttlMS()).Int64()
	if err != nil {
		return 0, storeErr(mapScriptError("cancelling late approval", err))
	}
	return n, nil
}

var _ authz.CardLocks = (*Engine)(nil)

// LockCard locks a card for a file update (authz.CardLocks).
func (e *Engine) LockCard(ctx context.Context, partnerID, cardID string, reason authz.LockReason, source, reference string) (authz.LockReason, error) {
	n, err := e.L.LockCardFrom(ctx, partnerID, cardID, int(reason), source, reference)
	if err != nil {
		return 0, lockErr(e.checkState(err))
	}
	return authz.LockReason(n), nil
}

// UnlockCard removes a reversible lock for a file update (authz.CardLocks);
// a card that is not locked is not an error.
func (e *Engine) UnlockCard(ctx context.Context, partnerID, cardID string) (authz.LockReason, error) {
	_, err := e.L.UnlockCard(ctx, partnerID, cardID)
	if err != nil && !errors.Is(err, ErrCardNotLocked) {
		return 0, lockErr(e.checkState(err))
	}
	return authz.LockNone, nil
}

// lockErr gives the lock scripts' refusals their authz meaning.
func lockErr(err error) error {
	switch {
	case errors.Is(err, ErrLockIrreversible):
		return fmt.Errorf("%w: %w", authz.ErrLockIrreversible, err)
	case errors.Is(err, ErrCardRemoved):
		return fmt.Errorf("%w: %w", authz.ErrCardNotFound, err)
	}
	return err
}
