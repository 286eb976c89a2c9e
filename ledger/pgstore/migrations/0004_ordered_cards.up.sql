-- Physical cards waiting for the bureau, oldest first: the REST API lists
-- them from here when its Redis queue lost some (package api).
CREATE INDEX cards_ordered_idx ON cards (created_at, id) WHERE status = 'ORDERED' AND type = 'PHYSICAL';
