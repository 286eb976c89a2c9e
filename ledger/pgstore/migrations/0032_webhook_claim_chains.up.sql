-- The dispatcher claims a key's pending deliveries as a chain, from the
-- oldest pending deliveries of each endpoint: an index of those by
-- (endpoint_id, id) replaces the ones by next_at and by order key, which
-- nothing reads any more and every delivery paid for on insert and on
-- each change of state.
DROP INDEX IF EXISTS webhook_deliveries_due_idx;
DROP INDEX IF EXISTS webhook_deliveries_order_idx;
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending_idx ON webhook_deliveries (endpoint_id, id) WHERE state = 'PENDING';
