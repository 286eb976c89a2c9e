-- The SQLite schema of `antaca demo`: what migrations/ build in Postgres,
-- in SQLite's words. The row tables (partners ... funding) are created from
-- ledger.Columns by OpenSQLite, so they follow the ledger without a
-- migration. Timestamps are UTC text in one fixed-width form
-- (2006-01-02T15:04:05.000Z), so text order is time order; lists (text[]
-- in Postgres) and the journal's jsonb are JSON text.

-- The journal: one row per event, keyed by the event id (partner_id, seq),
-- never updated or deleted.
CREATE TABLE IF NOT EXISTS journal (
    partner_id text    NOT NULL,
    seq        integer NOT NULL,
    type       text    NOT NULL DEFAULT '',
    reason     text    NOT NULL DEFAULT '',
    ts_ms      integer NOT NULL DEFAULT 0,
    changes    text    NOT NULL DEFAULT '[]',
    meta       text,
    applied_at text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (partner_id, seq)
);

CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'journal is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'journal is append-only: DELETE refused'); END;

CREATE TABLE IF NOT EXISTS journal_quarantine (
    partner_id     text    NOT NULL,
    stream_id      text    NOT NULL,
    seq            integer NOT NULL,
    fields         text    NOT NULL,
    error          text    NOT NULL,
    quarantined_at text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (partner_id, stream_id)
);

-- journal_refs finds journal entries by the row they concern (migration
-- 0010 in Postgres, where a statement trigger fills it): every entry that
-- changed a hold, declines by card, user balance reloads by balance, and a
-- card's life cycle by card.
CREATE TABLE IF NOT EXISTS journal_refs (
    ref_id     text    NOT NULL,
    partner_id text    NOT NULL,
    seq        integer NOT NULL,
    type       text    NOT NULL,
    ts_ms      integer NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_refs_ref_idx ON journal_refs (ref_id, type, ts_ms DESC, seq DESC);

CREATE TRIGGER IF NOT EXISTS journal_refs_fill AFTER INSERT ON journal
BEGIN
    INSERT INTO journal_refs (ref_id, partner_id, seq, type, ts_ms)
    SELECT c.value ->> 'id', NEW.partner_id, NEW.seq, NEW.type, NEW.ts_ms
    FROM json_each(CASE WHEN json_type(NEW.changes) = 'array' THEN NEW.changes ELSE '[]' END) AS c
    WHERE NEW.type IN ('reserve', 'financial', 'force_post', 'refund', 'capture', 'void', 'expire', 'late_cancel')
      AND c.type = 'object' AND c.value ->> 't' = 'holds' AND coalesce(c.value ->> 'id', '') <> '';
    INSERT INTO journal_refs (ref_id, partner_id, seq, type, ts_ms)
    SELECT NEW.meta ->> 'card', NEW.partner_id, NEW.seq, NEW.type, NEW.ts_ms
    WHERE NEW.type = 'decline' AND json_type(NEW.meta) = 'object' AND coalesce(NEW.meta ->> 'card', '') <> '';
    INSERT INTO journal_refs (ref_id, partner_id, seq, type, ts_ms)
    SELECT c.value ->> 'id', NEW.partner_id, NEW.seq, NEW.type, NEW.ts_ms
    FROM json_each(CASE WHEN json_type(NEW.changes) = 'array' THEN NEW.changes ELSE '[]' END) AS c
    WHERE NEW.type = 'user_balance_reload'
      AND c.type = 'object' AND c.value ->> 't' = 'user_balances' AND coalesce(c.value ->> 'id', '') <> '';
    INSERT INTO journal_refs (ref_id, partner_id, seq, type, ts_ms)
    SELECT c.value ->> 'id', NEW.partner_id, NEW.seq, NEW.type, NEW.ts_ms
    FROM json_each(CASE WHEN json_type(NEW.changes) = 'array' THEN NEW.changes ELSE '[]' END) AS c
    WHERE NEW.type IN ('card_create', 'card_activate', 'card_lock', 'card_unlock', 'card_remove', 'card_personalise', 'card_link')
      AND c.type = 'object' AND c.value ->> 't' = 'cards' AND coalesce(c.value ->> 'id', '') <> '';
END;

CREATE TABLE IF NOT EXISTS admins (
    username      text PRIMARY KEY,
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('Admin', 'Manager', 'Employee', 'Bureau')),
    created_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    created_by    text NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id            text PRIMARY KEY,
    partner_id    text NOT NULL,
    url           text NOT NULL,
    events        text NOT NULL,
    secret        text NOT NULL,
    failing_since text,
    created_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    disabled_at   text
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_partner_idx ON webhook_endpoints (partner_id);

CREATE TABLE IF NOT EXISTS webhook_cursors (
    partner_id  text PRIMARY KEY,
    seq         integer NOT NULL,
    gap_since   text,
    lease_until text
);

CREATE TABLE IF NOT EXISTS webhook_events (
    id         text PRIMARY KEY,
    partner_id text NOT NULL,
    type       text NOT NULL,
    body       text NOT NULL,
    created_at text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              integer PRIMARY KEY AUTOINCREMENT,
    endpoint_id     text    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        text    NOT NULL REFERENCES webhook_events (id),
    order_key       text    NOT NULL,
    state           text    NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts        integer NOT NULL DEFAULT 0,
    next_at         text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    lease_until     text,
    retry_until     text    NOT NULL,
    last_status     integer NOT NULL DEFAULT 0,
    last_error      text    NOT NULL DEFAULT '',
    last_attempt_at text,
    delivered_at    text,
    created_at      text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (endpoint_id, event_id)
);
-- (No index by next_at or by order key: the dispatcher reads the pending
-- deliveries by endpoint.)
DROP INDEX IF EXISTS webhook_deliveries_due_idx;
DROP INDEX IF EXISTS webhook_deliveries_order_idx;
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending_idx ON webhook_deliveries (endpoint_id, id) WHERE state = 'PENDING';
