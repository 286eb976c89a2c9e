-- Transaction history (api/README.md, "Transactions"): what the listing of
-- a card's or a balance's transactions needs to stay fast with millions of
-- rows, newest first.
--
-- Holds are listed by card or balance, newest first, with the hold id as
-- the tie-break of the cursor. The (card_id, ...) index replaces the plain
-- card index of 0001: it serves the same lookups.
DROP INDEX IF EXISTS holds_card_idx;
CREATE INDEX holds_card_created_idx ON holds (card_id, created_ms DESC, id DESC);
CREATE INDEX holds_balance_created_idx ON holds (balance_id, created_ms DESC, id DESC);

-- journal_refs finds journal entries by the row they concern, which the
-- journal's key (partner_id, seq) cannot:
--   - every entry that changed a hold, by hold id (the hold's history:
--     reserve, financial, force_post, refund, capture, void, expire,
--     late_cancel);
--   - declines, by the card they declined (meta->>'card');
--   - user balance reloads, by the balance;
--   - a card's life cycle (created, activated, locked ...), by the card,
--     so that a webhook event shows the card as it stood after it.
-- A trigger fills it from the rows each journal INSERT statement actually
-- inserted (a replayed event inserts none), one set-based insert per
-- write-behind batch. It never stops the journal: should it fail, the
-- batch is committed without its references and a warning is logged by
-- the server (the listing then misses them; see docs/transactions.md).
CREATE TABLE journal_refs (
    ref_id     text   NOT NULL,
    partner_id text   NOT NULL,
    seq        bigint NOT NULL,
    type       text   NOT NULL,
    ts_ms      bigint NOT NULL
);
CREATE INDEX journal_refs_ref_idx ON journal_refs (ref_id, type, ts_ms DESC, seq DESC);

CREATE FUNCTION journal_refs_of(p text, s bigint, t text, ts bigint, ch jsonb, m jsonb)
RETURNS TABLE (ref_id text, partner_id text, seq bigint, type text, ts_ms bigint)
LANGUAGE sql IMMUTABLE AS $$
    SELECT c->>'id', p, s, t, ts
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(ch) = 'array' THEN ch ELSE '[]'::jsonb END) AS c
    WHERE t IN ('reserve', 'financial', 'force_post', 'refund', 'capture', 'void', 'expire', 'late_cancel')
      AND jsonb_typeof(c) = 'object' AND c->>'t' = 'holds' AND coalesce(c->>'id', '') <> ''
    UNION ALL
    SELECT m->>'card', p, s, t, ts
    WHERE t = 'decline' AND jsonb_typeof(m) = 'object' AND coalesce(m->>'card', '') <> ''
    UNION ALL
    SELECT c->>'id', p, s, t, ts
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(ch) = 'array' THEN ch ELSE '[]'::jsonb END) AS c
    WHERE t = 'user_balance_reload'
      AND jsonb_typeof(c) = 'object' AND c->>'t' = 'user_balances' AND coalesce(c->>'id', '') <> ''
    UNION ALL
    SELECT c->>'id', p, s, t, ts
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(ch) = 'array' THEN ch ELSE '[]'::jsonb END) AS c
    WHERE t IN ('card_create', 'card_activate', 'card_lock', 'card_unlock', 'card_remove', 'card_personalise', 'card_link')
      AND jsonb_typeof(c) = 'object' AND c->>'t' = 'cards' AND coalesce(c->>'id', '') <> ''
$$;

CREATE FUNCTION journal_refs_fill() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO journal_refs (ref_id, partner_id, seq, type, ts_ms)
    SELECT r.* FROM journal_new n,
        LATERAL journal_refs_of(n.partner_id, n.seq, n.type, n.ts_ms, n.changes, n.meta) r;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'journal_refs: references of a journal batch not recorded: %', SQLERRM;
    RETURN NULL;
END;
$$;

CREATE TRIGGER journal_refs_fill
    AFTER INSERT ON journal
    REFERENCING NEW TABLE AS journal_new
    FOR EACH STATEMENT EXECUTE FUNCTION journal_refs_fill();

-- The journal written before this migration.
INSERT INTO journal_refs (ref_id, partner_id, seq, type, ts_ms)
SELECT r.* FROM journal j,
    LATERAL journal_refs_of(j.partner_id, j.seq, j.type, j.ts_ms, j.changes, j.meta) r;
