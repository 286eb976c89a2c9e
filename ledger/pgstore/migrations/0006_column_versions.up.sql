-- Per-column versions, so that an event applied after a newer one (two
-- switches, or the sweep of an entry whose switch stopped) keeps the
-- columns it set that no newer event set (docs/ledger.md, "Order").
-- cv[i] is the version of the change that last set column i (ledger.Columns
-- order); ca[i] is what was added to numeric column i since that set.
-- Rows written before this migration have none: their row version v stands
-- in for every column, which is the rule they were written under.
ALTER TABLE partners ADD COLUMN cv bigint[], ADD COLUMN ca bigint[];
ALTER TABLE partner_balances ADD COLUMN cv bigint[], ADD COLUMN ca bigint[];
ALTER TABLE customers ADD COLUMN cv bigint[], ADD COLUMN ca bigint[];
ALTER TABLE user_balances ADD COLUMN cv bigint[], ADD COLUMN ca bigint[];
ALTER TABLE cards ADD COLUMN cv bigint[], ADD COLUMN ca bigint[];
ALTER TABLE holds ADD COLUMN cv bigint[], ADD COLUMN ca bigint[];
ALTER TABLE funding ADD COLUMN cv bigint[], ADD COLUMN ca bigint[];
