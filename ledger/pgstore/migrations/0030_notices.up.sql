-- Partner notices (docs/notifications.md): the low-balance state of every
-- partner balance, the partners' notice e-mail addresses and the e-mails
-- on their way; and what the retention of the webhook tables needs.

-- Whether a partner balance is below its low-balance threshold, as last
-- observed. v is the balance's row version at that observation: an older
-- observation arriving late changes nothing. A notice goes out only when
-- low turns true, so a balance that stays below is notified once.
CREATE TABLE partner_balance_alerts (
    balance_id text PRIMARY KEY,
    partner_id text        NOT NULL,
    low        boolean     NOT NULL,
    v          bigint      NOT NULL,
    available  bigint      NOT NULL,
    threshold  bigint      NOT NULL,
    crossings  bigint      NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partner_balance_alerts_partner_idx ON partner_balance_alerts (partner_id);

-- Where a partner's notices go by e-mail.
CREATE TABLE partner_notice_emails (
    partner_id text PRIMARY KEY,
    addresses  text[]      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One e-mail to send: made in the transaction that raised the notice, sent
-- at least once by whichever switch claims it, retried until retry_until.
CREATE TABLE notice_emails (
    id          bigserial PRIMARY KEY,
    partner_id  text        NOT NULL,
    event_id    text        NOT NULL,
    recipients  text[]      NOT NULL,
    subject     text        NOT NULL,
    body        text        NOT NULL,
    state       text        NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'SENT', 'FAILED')),
    attempts    integer     NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    retry_until timestamptz NOT NULL,
    last_error  text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    UNIQUE (event_id)
);
CREATE INDEX notice_emails_due_idx ON notice_emails (next_at) WHERE state = 'PENDING';
CREATE INDEX notice_emails_done_idx ON notice_emails (created_at) WHERE state <> 'PENDING';

-- Retention: finished deliveries by their last attempt, and events by age
-- with a look-up of their deliveries (which the foreign key needs too).
CREATE INDEX webhook_deliveries_done_idx ON webhook_deliveries ((coalesce(last_attempt_at, created_at))) WHERE state <> 'PENDING';
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);
CREATE INDEX webhook_events_created_idx ON webhook_events (created_at);
