-- A delivery row is updated twice after its insert: the lease of a claim
-- (lease_until, in no index) and the outcome. With room left on each page
-- the lease's update stays on the page (a heap-only tuple) and writes no
-- index entry; a full page sends it elsewhere, with an entry in every
-- index of the table. Applies to the pages written from now on.
ALTER TABLE webhook_deliveries SET (fillfactor = 70);
