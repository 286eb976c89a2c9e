-- Webhooks (api/README.md, "Webhooks"): partners' endpoints, the events
-- made from the journal, and one delivery per event and endpoint.

-- An endpoint receives the event types it lists. Its secret signs every
-- delivery (HMAC-SHA256), so it is kept as it was issued: anyone who can
-- read this table can sign as Antaca; the API shows it only when it is
-- created or rotated.
CREATE TABLE webhook_endpoints (
    id            text PRIMARY KEY,
    partner_id    text        NOT NULL,
    url           text        NOT NULL,
    events        text[]      NOT NULL,
    secret        text        NOT NULL,
    failing_since timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_partner_idx ON webhook_endpoints (partner_id);

-- How far the dispatcher has turned a partner's journal into events: every
-- entry up to seq is done. A row exists for partners with an endpoint.
-- gap_since is when the dispatcher first found seq + 1 missing while later
-- entries were there (an entry still on its way to Postgres).
CREATE TABLE webhook_cursors (
    partner_id text PRIMARY KEY,
    seq        bigint NOT NULL,
    gap_since  timestamptz
);

-- An event as delivered: body is the exact JSON sent (and signed), the
-- same in every delivery and redelivery.
CREATE TABLE webhook_events (
    id         text PRIMARY KEY,
    partner_id text        NOT NULL,
    type       text        NOT NULL,
    body       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One event for one endpoint. Deliveries of the same endpoint and
-- order_key (a card, a balance, a customer) go out one at a time in id
-- order, so a receiver sees a card's events in the order they happened.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    endpoint_id     text        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        text        NOT NULL REFERENCES webhook_events (id),
    order_key       text        NOT NULL,
    state           text        NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_at         timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    retry_until     timestamptz NOT NULL,
    last_status     integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    last_attempt_at timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_at) WHERE state = 'PENDING';
CREATE INDEX webhook_deliveries_order_idx ON webhook_deliveries (endpoint_id, order_key, id) WHERE state = 'PENDING';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, id DESC);
