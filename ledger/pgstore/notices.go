package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Notices keeps the partner notices in Postgres (migration 0030): the
// low-balance state of every partner balance, the partners' notice e-mail
// addresses and the e-mails on their way. The state is what makes a
// notice go out once per crossing: it lives here, not in a process, so a
// restart neither repeats a notice nor forgets one.
type Notices struct {
	pool *pgxpool.Pool
}

// NewNotices keeps the state in pool.
func NewNotices(pool *pgxpool.Pool) *Notices { return &Notices{pool: pool} }

// BalanceObservation is a partner balance as read at one moment.
type BalanceObservation struct {
	PartnerID, BalanceID string
	Available, Threshold int64
	// Version is the balance row's version when it was read: of two
	// observations, the one with the higher version is the later state.
	Version int64
	// Crossing says the reader knows the balance was at or above its
	// threshold just before this state (a ledger script reported the
	// crossing): the first observation of a balance then notifies too.
	Crossing bool
}

// Below reports a balance under a (set) threshold.
func (o BalanceObservation) Below() bool { return o.Threshold > 0 && o.Available < o.Threshold }

// LowNotice is what goes out when a balance turns low: an event for the
// webhook endpoints subscribed to its type (partner and operator ones), and
// an e-mail to the partner's notice addresses when it has any.
type LowNotice struct {
	Event         NewEvent
	Subject, Body string
	// Retry bounds how long the webhook deliveries and the e-mail are tried.
	WebhookRetryFor, EmailRetryFor time.Duration
}

// LowResult tells what an observation did.
type LowResult struct {
	Notified   bool     // the balance turned low: the notice was recorded
	Recovered  bool     // the balance went back to or above its threshold
	Recipients []string // the e-mail's addresses, when one was made
}

// ObserveBalance records obs and, when it is the first state below the
// threshold after one at or above it, records the notice notice() makes
// in the same transaction: the state change and the notice are one. An
// observation older than the last one applied (a lower version) changes
// nothing. The first observation of a balance sets its state without a
// notice, unless obs.Crossing.
func (n *Notices) ObserveBalance(ctx context.Context, obs BalanceObservation, notice func() (LowNotice, error)) (LowResult, error) {
	tx, err := n.pool.Begin(ctx)
	if err != nil {
		return LowResult{}, fmt.Errorf("observing partner balance: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	below := obs.Below()
	// A first observation: below and crossing starts "not low" at no
	// version, so that it is applied as a crossing just below; any other
	// is the state as found.
	initLow, initV := below, obs.Version
	if below && obs.Crossing {
		initLow, initV = false, -1
	}
	if _, err := tx.Exec(ctx, `INSERT INTO partner_balance_alerts (balance_id, partner_id, low, v, available, threshold)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (balance_id) DO NOTHING`,
		obs.BalanceID, obs.PartnerID, initLow, initV, obs.Available, obs.Threshold); err != nil {
		return LowResult{}, fmt.Errorf("observing partner balance: %w", err)
	}
	var low bool
	var v int64
	if err := tx.QueryRow(ctx, `SELECT low, v FROM partner_balance_alerts WHERE balance_id = $1 FOR UPDATE`, obs.BalanceID).Scan(&low, &v); err != nil {
		return LowResult{}, fmt.Errorf("observing partner balance: %w", err)
	}
	if obs.Version <= v {
		return LowResult{}, tx.Commit(ctx)
	}
	res := LowResult{Notified: below && !low, Recovered: !below && low}
	if _, err := tx.Exec(ctx, `UPDATE partner_balance_alerts SET low = $2, v = $3, available = $4, threshold = $5,
			crossings = crossings + CASE WHEN $6 THEN 1 ELSE 0 END,
			changed_at = CASE WHEN low <> $2 THEN now() ELSE changed_at END
		WHERE balance_id = $1`, obs.BalanceID, below, obs.Version, obs.Available, obs.Threshold, res.Notified); err != nil {
		return LowResult{}, fmt.Errorf("observing partner balance: %w", err)
	}
	if res.Notified {
		ln, err := notice()
		if err != nil {
			return LowResult{}, err
		}
		evs := []NewEvent{ln.Event}
		ds, err := planDeliveries(ctx, pgTx{tx}, obs.PartnerID, evs, false)
		if err != nil {
			return LowResult{}, err
		}
		if _, err := storeDeliveries(ctx, pgTx{tx}, postgresDialect, obs.PartnerID, evs, ds, ln.WebhookRetryFor); err != nil {
			return LowResult{}, err
		}
		var addrs []string
		err = tx.QueryRow(ctx, `SELECT addresses FROM partner_notice_emails WHERE partner_id = $1`, obs.PartnerID).Scan(&addrs)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return LowResult{}, fmt.Errorf("reading notice addresses: %w", err)
		}
		if len(addrs) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO notice_emails (partner_id, event_id, recipients, subject, body, retry_until)
				VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 microsecond') ON CONFLICT (event_id) DO NOTHING`,
				obs.PartnerID, ln.Event.ID, addrs, safeText(ln.Subject), safeText(ln.Body), ln.EmailRetryFor.Microseconds()); err != nil {
				return LowResult{}, fmt.Errorf("storing notice e-mail: %w", err)
			}
			res.Recipients = addrs
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return LowResult{}, fmt.Errorf("observing partner balance: %w", err)
	}
	return res, nil
}

// BalanceAlert is a partner balance's low-balance state.
type BalanceAlert struct {
	PartnerID, BalanceID string
	Low                  bool
	Version              int64
	Available, Threshold int64
	Crossings            int64
	ChangedAt            time.Time
}

// Alert reads a balance's state; false when it was never observed.
func (n *Notices) Alert(ctx context.Context, balanceID string) (BalanceAlert, bool, error) {
	var a BalanceAlert
	err := n.pool.QueryRow(ctx, `SELECT partner_id, balance_id, low, v, available, threshold, crossings, changed_at
		FROM partner_balance_alerts WHERE balance_id = $1`, balanceID).
		Scan(&a.PartnerID, &a.BalanceID, &a.Low, &a.Version, &a.Available, &a.Threshold, &a.Crossings, &a.ChangedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return BalanceAlert{}, false, nil
	}
	if err != nil {
		return BalanceAlert{}, false, fmt.Errorf("reading low-balance state: %w", err)
	}
	return a, true, nil
}

// PartnerBalanceRef names a partner balance.
type PartnerBalanceRef struct{ PartnerID, BalanceID string }

// PartnerBalances lists every partner balance Postgres knows, for the
// periodic look at all of them.
func (n *Notices) PartnerBalances(ctx context.Context) ([]PartnerBalanceRef, error) {
	rows, err := n.pool.Query(ctx, `SELECT partner_id, id FROM partner_balances ORDER BY partner_id, id`)
	if err != nil {
		return nil, fmt.Errorf("listing partner balances: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PartnerBalanceRef, error) {
		var p PartnerBalanceRef
		return p, r.Scan(&p.PartnerID, &p.BalanceID)
	})
	if err != nil {
		return nil, fmt.Errorf("listing partner balances: %w", err)
	}
	return out, nil
}

// SetAddresses replaces a partner's notice e-mail addresses; none removes them.
func (n *Notices) SetAddresses(ctx context.Context, partnerID string, addrs []string) error {
	var err error
	if len(addrs) == 0 {
		_, err = n.pool.Exec(ctx, `DELETE FROM partner_notice_emails WHERE partner_id = $1`, partnerID)
	} else {
		_, err = n.pool.Exec(ctx, `INSERT INTO partner_notice_emails (partner_id, addresses) VALUES ($1, $2)
			ON CONFLICT (partner_id) DO UPDATE SET addresses = EXCLUDED.addresses, updated_at = now()`, partnerID, addrs)
	}
	if err != nil {
		return fmt.Errorf("setting notice addresses: %w", err)
	}
	return nil
}

// Addresses reads a partner's notice e-mail addresses (none when unset).
func (n *Notices) Addresses(ctx context.Context, partnerID string) ([]string, error) {
	var addrs []string
	err := n.pool.QueryRow(ctx, `SELECT addresses FROM partner_notice_emails WHERE partner_id = $1`, partnerID).Scan(&addrs)
	if errors.Is(err, pgx.ErrNoRows) {
		return []string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading notice addresses: %w", err)
	}
	return addrs, nil
}

// Email is one notice e-mail.
type Email struct {
	ID         int64
	PartnerID  string
	EventID    string
	Recipients []string
	Subject    string
	Body       string
	State      string // PENDING, SENT, FAILED
	Attempts   int
	LastError  string
	CreatedAt  time.Time
	NextAt     time.Time
	SentAt     *time.Time
}

const emailColumns = `id, partner_id, event_id, recipients, subject, body, state, attempts, last_error, created_at, next_at, sent_at`

func scanEmail(r pgx.CollectableRow) (Email, error) {
	var e Email
	err := r.Scan(&e.ID, &e.PartnerID, &e.EventID, &e.Recipients, &e.Subject, &e.Body, &e.State, &e.Attempts, &e.LastError,
		&e.CreatedAt, &e.NextAt, &e.SentAt)
	return e, err
}

// ClaimEmails takes up to n e-mails that are due, for lease; each claim
// counts as an attempt. Several switches may send: a claimed e-mail is
// skipped by the others until its lease ends.
func (n *Notices) ClaimEmails(ctx context.Context, max int, lease time.Duration) ([]Email, error) {
	rows, err := n.pool.Query(ctx, `WITH due AS (
			SELECT id FROM notice_emails
			WHERE state = 'PENDING' AND next_at <= now() AND (lease_until IS NULL OR lease_until < now())
			ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
		)
		UPDATE notice_emails m SET lease_until = now() + $2 * interval '1 microsecond', attempts = m.attempts + 1
		FROM due WHERE m.id = due.id
		RETURNING m.id, m.partner_id, m.event_id, m.recipients, m.subject, m.body, m.state, m.attempts, m.last_error,
		          m.created_at, m.next_at, m.sent_at`, max, lease.Microseconds())
	if err != nil {
		return nil, fmt.Errorf("claiming notice e-mails: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanEmail)
	if err != nil {
		return nil, fmt.Errorf("claiming notice e-mails: %w", err)
	}
	slices.SortFunc(out, func(a, b Email) int { return int(a.ID - b.ID) })
	return out, nil
}

// EmailSent records an e-mail the server accepted.
func (n *Notices) EmailSent(ctx context.Context, id int64) error {
	if _, err := n.pool.Exec(ctx, `UPDATE notice_emails SET state = 'SENT', sent_at = now(), last_error = '', lease_until = NULL
		WHERE id = $1`, id); err != nil {
		return fmt.Errorf("recording notice e-mail: %w", err)
	}
	return nil
}

// EmailFailed records a failed attempt: tried again after wait, or, when
// permanent or past its retry time, given up (FAILED). gaveUp tells which.
func (n *Notices) EmailFailed(ctx context.Context, id int64, msg string, wait time.Duration, permanent bool) (gaveUp bool, err error) {
	err = n.pool.QueryRow(ctx, `UPDATE notice_emails SET last_error = $2, lease_until = NULL,
			next_at = now() + $3 * interval '1 microsecond',
			state = CASE WHEN $4 OR now() + $3 * interval '1 microsecond' > retry_until THEN 'FAILED' ELSE 'PENDING' END
		WHERE id = $1 RETURNING state = 'FAILED'`, id, safeText(msg), wait.Microseconds(), permanent).Scan(&gaveUp)
	if err != nil {
		return false, fmt.Errorf("recording notice e-mail attempt: %w", err)
	}
	return gaveUp, nil
}

// Emails lists a partner's notice e-mails, newest first.
func (n *Notices) Emails(ctx context.Context, partnerID string, limit int) ([]Email, error) {
	rows, err := n.pool.Query(ctx, `SELECT `+emailColumns+` FROM notice_emails WHERE partner_id = $1 ORDER BY id DESC LIMIT $2`, partnerID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing notice e-mails: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanEmail)
	if err != nil {
		return nil, fmt.Errorf("listing notice e-mails: %w", err)
	}
	return out, nil
}

// EmailBacklog counts the e-mails waiting and the age of the oldest.
func (n *Notices) EmailBacklog(ctx context.Context) (pending int64, oldest time.Duration, err error) {
	var age float64
	err = n.pool.QueryRow(ctx, `SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
		FROM notice_emails WHERE state = 'PENDING'`).Scan(&pending, &age)
	if err != nil {
		return 0, 0, fmt.Errorf("reading notice e-mail backlog: %w", err)
	}
	return pending, time.Duration(age * float64(time.Second)), nil
}
