DROP INDEX IF EXISTS cards_ordered_idx;
CREATE INDEX cards_ordered_idx ON cards (created_at, id) WHERE status = 'ORDERED' AND type = 'PHYSICAL';
ALTER TABLE cards
    DROP COLUMN IF EXISTS delivery_state,
    DROP COLUMN IF EXISTS lock_ref,
    DROP COLUMN IF EXISTS replaces,
    DROP COLUMN IF EXISTS replaced_by;
ALTER TABLE partners DROP COLUMN IF EXISTS digital_first;
