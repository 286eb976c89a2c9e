package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// KYCChecks keeps the checks sent to the KYC provider (migration 0031):
// what was sent, every attempt's outcome, the provider's answer and its
// callback. A customer has at most one open check (SENDING or SENT).
type KYCChecks struct {
	pool *pgxpool.Pool
}

// NewKYCChecks keeps the checks in pool.
func NewKYCChecks(pool *pgxpool.Pool) *KYCChecks { return &KYCChecks{pool: pool} }

// Sentinel errors of the KYC checks.
var (
	ErrKYCCheckNotFound = errors.New("KYC check not found")
	ErrKYCCheckClosed   = errors.New("KYC check already closed")
)

// KYC check states.
const (
	KYCSending   = "SENDING"   // to be sent (again) to the provider
	KYCSent      = "SENT"      // the provider took it; its result is awaited
	KYCFailed    = "FAILED"    // the provider refused it, or could not be reached in time
	KYCVerified  = "VERIFIED"  // the provider verified the customer
	KYCRejected  = "REJECTED"  // the provider rejected the customer
	KYCCancelled = "CANCELLED" // the KYC status was set otherwise while it was open
)

// KYCCheck is one check.
type KYCCheck struct {
	ID, PartnerID, CustomerID string
	State                     string
	Request                   []byte
	Attempts                  int
	LastStatus                int
	LastError                 string
	Reference                 string
	Response                  string
	Callback                  string
	CallbackAt                *time.Time
	CreatedAt                 time.Time
	NextAt                    time.Time
	SentAt                    *time.Time
	CompletedAt               *time.Time
}

const kycColumns = `id, partner_id, customer_id, state, request, attempts, last_status, last_error, reference, response, callback,
	callback_at, created_at, next_at, sent_at, completed_at`

func scanKYC(r pgx.Row) (KYCCheck, error) {
	var k KYCCheck
	var req string
	err := r.Scan(&k.ID, &k.PartnerID, &k.CustomerID, &k.State, &req, &k.Attempts, &k.LastStatus, &k.LastError, &k.Reference,
		&k.Response, &k.Callback, &k.CallbackAt, &k.CreatedAt, &k.NextAt, &k.SentAt, &k.CompletedAt)
	k.Request = []byte(req)
	return k, err
}

// Open returns the customer's open check, or stores a new one (id,
// request) to be sent, tried until retryFor has passed. created says
// which. A new check is left to its creator for grace (which attempts it
// at once) before the background sender may take it.
func (s *KYCChecks) Open(ctx context.Context, partnerID, customerID, id string, request []byte, retryFor, grace time.Duration) (k KYCCheck, created bool, err error) {
	for range 3 {
		k, err = scanKYC(s.pool.QueryRow(ctx, `SELECT `+kycColumns+` FROM kyc_checks
			WHERE partner_id = $1 AND customer_id = $2 AND state IN ('SENDING', 'SENT')`, partnerID, customerID))
		if err == nil {
			return k, false, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return KYCCheck{}, false, fmt.Errorf("reading the open KYC check: %w", err)
		}
		k, err = scanKYC(s.pool.QueryRow(ctx, `INSERT INTO kyc_checks (id, partner_id, customer_id, request, retry_until, next_at)
			VALUES ($1, $2, $3, $4, now() + $5 * interval '1 microsecond', now() + $6 * interval '1 microsecond') RETURNING `+kycColumns,
			id, partnerID, customerID, safeText(string(request)), retryFor.Microseconds(), grace.Microseconds()))
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			continue // another start made one at the same moment: read it
		}
		if err != nil {
			return KYCCheck{}, false, fmt.Errorf("storing KYC check: %w", err)
		}
		return k, true, nil
	}
	return KYCCheck{}, false, fmt.Errorf("storing KYC check: %w", err)
}

// Get reads a check.
func (s *KYCChecks) Get(ctx context.Context, id string) (KYCCheck, error) {
	k, err := scanKYC(s.pool.QueryRow(ctx, `SELECT `+kycColumns+` FROM kyc_checks WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return KYCCheck{}, ErrKYCCheckNotFound
	}
	if err != nil {
		return KYCCheck{}, fmt.Errorf("reading KYC check: %w", err)
	}
	return k, nil
}

// List lists a customer's checks, newest first.
func (s *KYCChecks) List(ctx context.Context, partnerID, customerID string, limit int) ([]KYCCheck, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+kycColumns+` FROM kyc_checks WHERE partner_id = $1 AND customer_id = $2
		ORDER BY created_at DESC, id DESC LIMIT $3`, partnerID, customerID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing KYC checks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (KYCCheck, error) { return scanKYC(r) })
	if err != nil {
		return nil, fmt.Errorf("listing KYC checks: %w", err)
	}
	return out, nil
}

// Claim takes, for lease, the check id when it is to be sent (id != "")
// or up to max due checks; each claim counts as an attempt.
func (s *KYCChecks) Claim(ctx context.Context, id string, max int, lease time.Duration) ([]KYCCheck, error) {
	rows, err := s.pool.Query(ctx, `WITH due AS (
			SELECT id FROM kyc_checks
			WHERE state = 'SENDING' AND ($1 = '' OR id = $1) AND ($1 <> '' OR next_at <= now())
			  AND (lease_until IS NULL OR lease_until < now())
			ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED
		)
		UPDATE kyc_checks k SET lease_until = now() + $3 * interval '1 microsecond', attempts = k.attempts + 1
		FROM due WHERE k.id = due.id
		RETURNING k.id, k.partner_id, k.customer_id, k.state, k.request, k.attempts, k.last_status, k.last_error, k.reference,
		          k.response, k.callback, k.callback_at, k.created_at, k.next_at, k.sent_at, k.completed_at`, id, max, lease.Microseconds())
	if err != nil {
		return nil, fmt.Errorf("claiming KYC checks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (KYCCheck, error) { return scanKYC(r) })
	if err != nil {
		return nil, fmt.Errorf("claiming KYC checks: %w", err)
	}
	return out, nil
}

// Sent records that the provider took the check (status, its answer and
// reference). A check closed meanwhile (its callback came first) keeps
// its state.
func (s *KYCChecks) Sent(ctx context.Context, id string, status int, reference, response string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE kyc_checks SET state = CASE WHEN state = 'SENDING' THEN 'SENT' ELSE state END,
			last_status = $2, last_error = '', reference = CASE WHEN $3 <> '' THEN $3 ELSE reference END, response = $4,
			sent_at = coalesce(sent_at, now()), lease_until = NULL
		WHERE id = $1`, id, status, safeText(reference), safeText(response)); err != nil {
		return fmt.Errorf("recording KYC check sent: %w", err)
	}
	return nil
}

// SendFailed records a failed attempt: sent again after wait, or, when
// permanent or past its retry time, given up (FAILED). gaveUp tells which.
func (s *KYCChecks) SendFailed(ctx context.Context, id string, status int, msg, response string, wait time.Duration, permanent bool) (gaveUp bool, err error) {
	err = s.pool.QueryRow(ctx, `UPDATE kyc_checks SET last_status = $2, last_error = $3, response = $4, lease_until = NULL,
			next_at = now() + $5 * interval '1 microsecond',
			state = CASE WHEN state <> 'SENDING' THEN state
			             WHEN $6 OR now() + $5 * interval '1 microsecond' > retry_until THEN 'FAILED' ELSE 'SENDING' END,
			completed_at = CASE WHEN state = 'SENDING' AND ($6 OR now() + $5 * interval '1 microsecond' > retry_until) THEN now() ELSE completed_at END
		WHERE id = $1 RETURNING state = 'FAILED'`, id, status, safeText(msg), safeText(response), wait.Microseconds(), permanent).Scan(&gaveUp)
	if err != nil {
		return false, fmt.Errorf("recording KYC check attempt: %w", err)
	}
	return gaveUp, nil
}

// Complete records the provider's result (VERIFIED or REJECTED) and the
// callback as received. It returns the check as it was before: applied
// is false when the check already had this result (a repeated callback);
// ErrKYCCheckClosed when it was closed otherwise (the callback is still
// recorded).
func (s *KYCChecks) Complete(ctx context.Context, id, result, reference string, callback []byte) (before KYCCheck, applied bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return KYCCheck{}, false, fmt.Errorf("recording KYC result: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	before, err = scanKYC(tx.QueryRow(ctx, `SELECT `+kycColumns+` FROM kyc_checks WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return KYCCheck{}, false, ErrKYCCheckNotFound
	}
	if err != nil {
		return KYCCheck{}, false, fmt.Errorf("recording KYC result: %w", err)
	}
	open := before.State == KYCSending || before.State == KYCSent
	if _, err := tx.Exec(ctx, `UPDATE kyc_checks SET callback = $2, callback_at = now(),
			reference = CASE WHEN $5 AND $4 <> '' THEN $4 ELSE reference END,
			state = CASE WHEN $5 THEN $3 ELSE state END,
			completed_at = CASE WHEN $5 THEN now() ELSE completed_at END, lease_until = CASE WHEN $5 THEN NULL ELSE lease_until END
		WHERE id = $1`, id, safeText(string(callback)), result, safeText(reference), open); err != nil {
		return KYCCheck{}, false, fmt.Errorf("recording KYC result: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return KYCCheck{}, false, fmt.Errorf("recording KYC result: %w", err)
	}
	switch {
	case open:
		return before, true, nil
	case before.State == result:
		return before, false, nil
	}
	return before, false, ErrKYCCheckClosed
}

// CancelOpen closes the customer's open check (its status was set by the
// partner or an admin): a later result of the provider is refused.
func (s *KYCChecks) CancelOpen(ctx context.Context, partnerID, customerID string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE kyc_checks SET state = 'CANCELLED', completed_at = now(), lease_until = NULL
		WHERE partner_id = $1 AND customer_id = $2 AND state IN ('SENDING', 'SENT')`, partnerID, customerID); err != nil {
		return fmt.Errorf("cancelling open KYC check: %w", err)
	}
	return nil
}
