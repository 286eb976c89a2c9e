-- Digital-first programs, locks from outside and card replacement
-- (docs/ledger.md, "Rows"). New columns go last: per-column versions (cv,
-- ca; migration 0006) follow the order of ledger.Columns.
--
-- partners.digital_first: 'true' when the program may print digital-first
--   copies of virtual cards; anything else (existing partners: '') means no.
-- cards.delivery_state: of a digital-first plastic, ORDERED while it waits
--   for the bureau, PRODUCED once the bureau reported it.
-- cards.lock_ref: the requester's reference of a lock from outside (a
--   network's or acquirer's own id for the request).
-- cards.replaces / cards.replaced_by: the card a replacement replaces, and
--   on the old card the replacement.
ALTER TABLE partners ADD COLUMN digital_first text NOT NULL DEFAULT '';
ALTER TABLE cards
    ADD COLUMN delivery_state text NOT NULL DEFAULT '',
    ADD COLUMN lock_ref       text NOT NULL DEFAULT '',
    ADD COLUMN replaces       text NOT NULL DEFAULT '',
    ADD COLUMN replaced_by    text NOT NULL DEFAULT '';
-- Plastics waiting for the bureau: ordered physical cards and digital-first
-- copies not yet produced (package api lists them when its queue lost some).
DROP INDEX IF EXISTS cards_ordered_idx;
CREATE INDEX cards_ordered_idx ON cards (created_at, id)
    WHERE (status = 'ORDERED' AND type = 'PHYSICAL')
       OR (delivery_state = 'ORDERED' AND type = 'DIGITAL_FIRST' AND status <> 'REMOVED');
