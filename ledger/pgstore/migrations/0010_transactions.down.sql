DROP TRIGGER IF EXISTS journal_refs_fill ON journal;
DROP FUNCTION IF EXISTS journal_refs_fill();
DROP FUNCTION IF EXISTS journal_refs_of(text, bigint, text, bigint, jsonb, jsonb);
DROP TABLE IF EXISTS journal_refs;
DROP INDEX IF EXISTS holds_balance_created_idx;
DROP INDEX IF EXISTS holds_card_created_idx;
CREATE INDEX IF NOT EXISTS holds_card_idx ON holds (card_id);
