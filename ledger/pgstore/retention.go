package pgstore

import (
	"context"
	"fmt"
	"time"
)

// PruneResult counts the rows a prune removed, per table.
type PruneResult struct {
	Deliveries, Events, Emails int64
}

// Prune removes what is finished and older than before: webhook
// deliveries delivered or given up whose last attempt is older, events
// made before it that no delivery refers to any more (also those no
// endpoint was subscribed to), and notice e-mails sent or given up. A
// pending delivery or e-mail is never removed: its retry period bounds
// it. It deletes batch rows per statement, so no statement holds many
// locks, and several switches may prune at once. The embedded store of
// `antaca demo` (SQLite) is not pruned: a demo's outbox stays small.
func (o *Outbox) Prune(ctx context.Context, before time.Time, batch int) (PruneResult, error) {
	var res PruneResult
	pool := o.db.Pool()
	if pool == nil {
		return res, nil
	}
	steps := []struct {
		n   *int64
		sql string
	}{
		{&res.Deliveries, `DELETE FROM webhook_deliveries WHERE id IN (
			SELECT id FROM webhook_deliveries WHERE state <> 'PENDING' AND coalesce(last_attempt_at, created_at) < $1
			LIMIT $2 FOR UPDATE SKIP LOCKED)`},
		{&res.Events, `DELETE FROM webhook_events WHERE id IN (
			SELECT e.id FROM webhook_events e WHERE e.created_at < $1
			AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)
			LIMIT $2 FOR UPDATE SKIP LOCKED)`},
		{&res.Emails, `DELETE FROM notice_emails WHERE id IN (
			SELECT id FROM notice_emails WHERE state <> 'PENDING' AND created_at < $1
			LIMIT $2 FOR UPDATE SKIP LOCKED)`},
	}
	for _, st := range steps {
		for {
			tag, err := pool.Exec(ctx, st.sql, before, batch)
			if err != nil {
				return res, fmt.Errorf("pruning the webhook outbox: %w", err)
			}
			*st.n += tag.RowsAffected()
			if tag.RowsAffected() < int64(batch) {
				break
			}
		}
	}
	return res, nil
}
