DROP INDEX IF EXISTS webhook_deliveries_pending_idx;
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_idx ON webhook_deliveries (next_at) WHERE state = 'PENDING';
CREATE INDEX IF NOT EXISTS webhook_deliveries_order_idx ON webhook_deliveries (endpoint_id, order_key, id) WHERE state = 'PENDING';
