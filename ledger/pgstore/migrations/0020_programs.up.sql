-- Card programs and spend controls (docs/programs.md, docs/controls.md).
--
-- programs: a partner's card programs. bin_ranges is JSON
--   ([{"from","to"}]), card_types comma separated ('' every type),
--   controls and stand_in JSON ('' none / decline), remote_secret the key
--   that signs the requests to remote_url.
-- cards.program_id: the card's program ('' the partner's default program,
--   prg_<partner id>); cards.controls: the card's own controls (JSON, ''
--   its program's).
-- holds.spend: the control windows a hold charged
--   ("interval=window:end_ms,..."), given back on release and counted again
--   by a rebuild.
CREATE TABLE programs (
    id                  text PRIMARY KEY,
    partner_id          text   NOT NULL,
    v                   bigint NOT NULL DEFAULT 0,
    name                text   NOT NULL DEFAULT '',
    currency            text   NOT NULL DEFAULT '',
    bin_ranges          text   NOT NULL DEFAULT '',
    card_types          text   NOT NULL DEFAULT '',
    digital_first       text   NOT NULL DEFAULT '',
    time_zone           text   NOT NULL DEFAULT '',
    controls            text   NOT NULL DEFAULT '',
    remote_url          text   NOT NULL DEFAULT '',
    decision_timeout_ms text   NOT NULL DEFAULT '',
    stand_in            text   NOT NULL DEFAULT '',
    created_at          text   NOT NULL DEFAULT '',
    remote_secret       text   NOT NULL DEFAULT '',
    cv                  bigint[],
    ca                  bigint[]
);
CREATE INDEX programs_partner_idx ON programs (partner_id);

ALTER TABLE cards
    ADD COLUMN program_id text NOT NULL DEFAULT '',
    ADD COLUMN controls   text NOT NULL DEFAULT '';
ALTER TABLE holds ADD COLUMN spend text NOT NULL DEFAULT '';

-- Every partner with a BIN gets its default program: the BIN as the one
-- range, the partner's name, currency and digital-first flag, created when
-- the partner was. The switch writes the same row into a Redis that kept
-- its state (ledger.EnsureDefaultPrograms), at version 1 like this one.
INSERT INTO programs (id, partner_id, v, name, currency, bin_ranges, digital_first, created_at)
SELECT 'prg_' || id, id, 1, name, currency,
       '[{"from":"' || bin || '","to":"' || bin || '"}]', digital_first, created_at
FROM partners WHERE bin <> ''
ON CONFLICT (id) DO NOTHING;
