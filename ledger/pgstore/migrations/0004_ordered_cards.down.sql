DROP INDEX IF EXISTS cards_ordered_idx;
