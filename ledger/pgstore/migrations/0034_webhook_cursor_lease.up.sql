-- A dispatcher leases a partner's cursor while it turns the journal
-- entries after it into events and makes their first attempts (Outbox.Advance):
-- another dispatcher does not take the same entries until the lease runs
-- out. The deliveries and the cursor's move are stored after, together.
ALTER TABLE webhook_cursors ADD COLUMN lease_until timestamptz;

-- A delivery's foreign keys cost a lookup of its endpoint and of its
-- event on every insert (each half of the insert's time, measured), while
-- nothing but the outbox writes these rows: the event is inserted in the
-- same statement as its deliveries, an insert locks the endpoints it
-- writes to (FOR KEY SHARE), and deleting an endpoint deletes its
-- deliveries in the same transaction (Outbox.DeleteEndpoint).
ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_endpoint_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_event_id_fkey;
