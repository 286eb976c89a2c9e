-- KYC checks at the configured provider (docs/kyc.md): one row per start,
-- with what was sent and what came back. The request holds the
-- customer's name, e-mail and phone as sent (never card data).
CREATE TABLE kyc_checks (
    id           text PRIMARY KEY,
    partner_id   text        NOT NULL,
    customer_id  text        NOT NULL,
    state        text        NOT NULL DEFAULT 'SENDING'
                 CHECK (state IN ('SENDING', 'SENT', 'FAILED', 'VERIFIED', 'REJECTED', 'CANCELLED')),
    request      text        NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz,
    retry_until  timestamptz NOT NULL,
    last_status  integer     NOT NULL DEFAULT 0,
    last_error   text        NOT NULL DEFAULT '',
    reference    text        NOT NULL DEFAULT '',
    response     text        NOT NULL DEFAULT '',
    callback     text        NOT NULL DEFAULT '',
    callback_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    completed_at timestamptz
);
CREATE INDEX kyc_checks_customer_idx ON kyc_checks (partner_id, customer_id, created_at DESC);
CREATE INDEX kyc_checks_due_idx ON kyc_checks (next_at) WHERE state = 'SENDING';
-- At most one open check per customer.
CREATE UNIQUE INDEX kyc_checks_open_idx ON kyc_checks (partner_id, customer_id) WHERE state IN ('SENDING', 'SENT');
