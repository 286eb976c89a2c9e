-- Antaca ledger schema: one table per row table of docs/ledger.md (the same
-- columns as ledger.Columns; TestMigrationsMatchLedgerColumns keeps them in
-- step) plus the append-only journal the write-behind fills.

CREATE TABLE partners (
    id            text PRIMARY KEY,
    partner_id    text   NOT NULL,
    v             bigint NOT NULL DEFAULT 0,
    name          text   NOT NULL DEFAULT '',
    bin           text   NOT NULL DEFAULT '',
    currency      text   NOT NULL DEFAULT '',
    funding_model text   NOT NULL DEFAULT '',
    created_at    text   NOT NULL DEFAULT ''
);
CREATE INDEX partners_bin_idx ON partners (bin);

CREATE TABLE partner_balances (
    id            text PRIMARY KEY,
    partner_id    text   NOT NULL,
    v             bigint NOT NULL DEFAULT 0,
    type          text   NOT NULL DEFAULT '',
    currency      text   NOT NULL DEFAULT '',
    available     bigint NOT NULL DEFAULT 0,
    reserved      bigint NOT NULL DEFAULT 0,
    settled       bigint NOT NULL DEFAULT 0,
    low_threshold bigint NOT NULL DEFAULT 0,
    state         text   NOT NULL DEFAULT '',
    created_at    text   NOT NULL DEFAULT ''
);
CREATE INDEX partner_balances_partner_idx ON partner_balances (partner_id, type, currency);

CREATE TABLE customers (
    id          text PRIMARY KEY,
    partner_id  text   NOT NULL,
    v           bigint NOT NULL DEFAULT 0,
    external_id text   NOT NULL DEFAULT '',
    first_name  text   NOT NULL DEFAULT '',
    last_name   text   NOT NULL DEFAULT '',
    email       text   NOT NULL DEFAULT '',
    phone       text   NOT NULL DEFAULT '',
    kyc_status  text   NOT NULL DEFAULT '',
    created_at  text   NOT NULL DEFAULT ''
);
CREATE INDEX customers_partner_external_idx ON customers (partner_id, external_id);

CREATE TABLE user_balances (
    id          text PRIMARY KEY,
    partner_id  text   NOT NULL,
    v           bigint NOT NULL DEFAULT 0,
    customer_id text   NOT NULL DEFAULT '',
    currency    text   NOT NULL DEFAULT '',
    available   bigint NOT NULL DEFAULT 0,
    held        bigint NOT NULL DEFAULT 0,
    posted      bigint NOT NULL DEFAULT 0,
    state       text   NOT NULL DEFAULT '',
    created_at  text   NOT NULL DEFAULT ''
);
CREATE INDEX user_balances_customer_idx ON user_balances (customer_id);
CREATE INDEX user_balances_partner_idx ON user_balances (partner_id, currency);

CREATE TABLE cards (
    id           text PRIMARY KEY,
    partner_id   text   NOT NULL,
    v            bigint NOT NULL DEFAULT 0,
    customer_id  text   NOT NULL DEFAULT '',
    balance_id   text   NOT NULL DEFAULT '',
    type         text   NOT NULL DEFAULT '',
    status       text   NOT NULL DEFAULT '',
    lock_reason  bigint NOT NULL DEFAULT 0,
    lock_source  text   NOT NULL DEFAULT '',
    pan_enc      text   NOT NULL DEFAULT '',
    pan_hash     text   NOT NULL DEFAULT '',
    bin          text   NOT NULL DEFAULT '',
    last4        text   NOT NULL DEFAULT '',
    expiry       text   NOT NULL DEFAULT '',
    cvv_enc      text   NOT NULL DEFAULT '',
    pin_verifier text   NOT NULL DEFAULT '',
    pin_tries    bigint NOT NULL DEFAULT 0,
    copy_of      text   NOT NULL DEFAULT '',
    delivery     text   NOT NULL DEFAULT '',
    created_at   text   NOT NULL DEFAULT ''
);
CREATE INDEX cards_pan_hash_idx ON cards (pan_hash);
CREATE INDEX cards_customer_idx ON cards (customer_id);

CREATE TABLE holds (
    id                 text PRIMARY KEY,
    partner_id         text   NOT NULL,
    v                  bigint NOT NULL DEFAULT 0,
    balance_id         text   NOT NULL DEFAULT '',
    card_id            text   NOT NULL DEFAULT '',
    partner_balance_id text   NOT NULL DEFAULT '',
    currency           text   NOT NULL DEFAULT '',
    amount             bigint NOT NULL DEFAULT 0,
    captured           bigint NOT NULL DEFAULT 0,
    released           bigint NOT NULL DEFAULT 0,
    state              text   NOT NULL DEFAULT '',
    idem_key           text   NOT NULL DEFAULT '',
    approval_code      text   NOT NULL DEFAULT '',
    txn_type           text   NOT NULL DEFAULT '',
    created_ms         bigint NOT NULL DEFAULT 0,
    closed_ms          bigint NOT NULL DEFAULT 0
);
CREATE INDEX holds_partner_state_idx ON holds (partner_id, state);
CREATE INDEX holds_card_idx ON holds (card_id);

CREATE TABLE funding (
    id         text PRIMARY KEY,
    partner_id text   NOT NULL,
    v          bigint NOT NULL DEFAULT 0,
    currency   text   NOT NULL DEFAULT '',
    total_in   bigint NOT NULL DEFAULT 0
);
CREATE INDEX funding_partner_idx ON funding (partner_id);

-- The journal: one row per event, keyed by the event id (partner_id, seq).
-- The write-behind's idempotency rests on this key, so rows are never
-- updated or deleted; the trigger makes that a rule rather than a habit.
-- (Retention, when it comes, detaches partitions instead of deleting rows.)
CREATE TABLE journal (
    partner_id text        NOT NULL,
    seq        bigint      NOT NULL,
    type       text        NOT NULL DEFAULT '',
    reason     text        NOT NULL DEFAULT '',
    ts_ms      bigint      NOT NULL DEFAULT 0,
    changes    jsonb       NOT NULL DEFAULT '[]',
    meta       jsonb,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, seq)
);

CREATE FUNCTION journal_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal is append-only: % refused', TG_OP;
END;
$$;

CREATE TRIGGER journal_append_only
    BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION journal_append_only();
