-- The dispatcher claims a key's pending deliveries as a chain, read in
-- (endpoint_id, order_key, id) order from webhook_deliveries_order_idx;
-- nothing reads the pending deliveries by next_at any more, and every
-- delivery paid for that index on insert and on each change of state.
DROP INDEX IF EXISTS webhook_deliveries_due_idx;
