ALTER TABLE webhook_endpoints DROP COLUMN disabled_at;
