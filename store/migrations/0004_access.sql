-- People and machines that call the API, each with a role and a province/sector scope (NULL = all).
-- Only hashes of secrets are kept: argon2 for passwords, SHA-256 for random 192-bit tokens and keys.
CREATE TABLE users (
    user_id             bigserial PRIMARY KEY,
    username            text NOT NULL UNIQUE,
    display_name        text NOT NULL DEFAULT '',
    password_hash       text NOT NULL,
    role                text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    provinces           text[],
    sectors             text[],
    disabled_at         timestamptz,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- A login: a short-lived access token and a longer-lived refresh token, both revocable at once.
CREATE TABLE sessions (
    session_id         bigserial PRIMARY KEY,
    user_id            bigint NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    access_hash        text NOT NULL UNIQUE,
    refresh_hash       text NOT NULL UNIQUE,
    access_expires_at  timestamptz NOT NULL,
    refresh_expires_at timestamptz NOT NULL,
    address            text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    revoked_at         timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

-- Machine keys (the national center, integrations): shown once, always expire.
CREATE TABLE api_keys (
    key_id       bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    key_hash     text NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    provinces    text[],
    sectors      text[],
    expires_at   timestamptz NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- The operator tokens of 0002 had no scope and no expiry: they become all-scope keys that expire in 30 days.
INSERT INTO api_keys (name, key_hash, role, expires_at, created_by, created_at)
SELECT name, token_hash, role, now() + interval '30 days', 'migration 0004', created_at
FROM api_tokens WHERE revoked_at IS NULL;
DROP TABLE api_tokens;

-- Login attempts, for rate limiting per user and per address.
CREATE TABLE login_attempts (
    at       timestamptz NOT NULL DEFAULT now(),
    username text NOT NULL,
    address  text NOT NULL,
    ok       boolean NOT NULL
);
CREATE INDEX login_attempts_user ON login_attempts (username, at DESC);
CREATE INDEX login_attempts_address ON login_attempts (address, at DESC);

-- Where an audited action came from.
ALTER TABLE audit_log ADD COLUMN address text;
CREATE INDEX audit_log_time ON audit_log (at DESC);
