-- Journal entries Postgres refused or that did not validate. The
-- write-behind moves such an entry here, with its error, so that no single
-- entry stops the journal of any partner (docs/ledger.md, "Quarantine").
-- fields holds the stream entry exactly as Redis had it: a JSON object of
-- field name -> base64 of the raw bytes, so nothing is lost.
CREATE TABLE journal_quarantine (
    partner_id     text        NOT NULL,
    stream_id      text        NOT NULL,
    seq            bigint      NOT NULL,
    fields         jsonb       NOT NULL,
    error          text        NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, stream_id)
);
