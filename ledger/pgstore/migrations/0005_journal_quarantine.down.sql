DROP TABLE IF EXISTS journal_quarantine;
