DROP INDEX IF EXISTS webhook_events_created_idx;
DROP INDEX IF EXISTS webhook_deliveries_event_idx;
DROP INDEX IF EXISTS webhook_deliveries_done_idx;
DROP TABLE IF EXISTS notice_emails;
DROP TABLE IF EXISTS partner_notice_emails;
DROP TABLE IF EXISTS partner_balance_alerts;
