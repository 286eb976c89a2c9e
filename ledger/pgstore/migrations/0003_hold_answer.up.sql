-- What a rebuild of Redis needs to answer a retransmission or a reversal
-- exactly as before: the hold's second key (RRN + card id, the reversal
-- fallback), the script that made it (reserve, force_post, refund), the
-- amount the message asked for and the amount approved (a partial approval
-- holds less; a capture with extra raises amount later) and the user's
-- available balance right after it (DE54 of the answer).
ALTER TABLE holds
    ADD COLUMN reference       text   NOT NULL DEFAULT '',
    ADD COLUMN origin          text   NOT NULL DEFAULT '',
    ADD COLUMN requested       bigint NOT NULL DEFAULT 0,
    ADD COLUMN approved        bigint NOT NULL DEFAULT 0,
    ADD COLUMN available_after bigint NOT NULL DEFAULT 0;
