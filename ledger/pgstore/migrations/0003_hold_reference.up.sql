-- The second key a hold is found by (RRN + card id), kept so that a
-- rebuild of Redis restores the reversal fallback of docs/ledger.md.
ALTER TABLE holds ADD COLUMN reference text NOT NULL DEFAULT '';
