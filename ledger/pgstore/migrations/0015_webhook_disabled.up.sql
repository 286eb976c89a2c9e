-- A webhook endpoint can be disabled (api/README.md, "Webhooks"): while
-- disabled_at is set no delivery is made for it and its pending
-- deliveries wait; enabling clears it.
ALTER TABLE webhook_endpoints ADD COLUMN disabled_at timestamptz;
