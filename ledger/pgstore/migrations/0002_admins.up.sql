-- Administration panel users (package api). Passwords are stored only as
-- PBKDF2-HMAC-SHA256 hashes "pbkdf2-sha256$<iterations>$<salt>$<key>".
CREATE TABLE admins (
    username      text PRIMARY KEY,
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('Admin', 'Manager', 'Employee', 'Bureau')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text        NOT NULL DEFAULT ''
);
