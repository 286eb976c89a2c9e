ALTER TABLE holds
    DROP COLUMN IF EXISTS reference,
    DROP COLUMN IF EXISTS origin,
    DROP COLUMN IF EXISTS requested,
    DROP COLUMN IF EXISTS approved,
    DROP COLUMN IF EXISTS available_after;
