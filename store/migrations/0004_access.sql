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

-- A login: a short-lived access token and a refresh token that renews it (both rotate on every refresh) until the
-- session ends at refresh_expires_at; revocable at once.
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

-- The tokens a refresh replaced. Presenting a spent refresh token again means it was copied: its session is
-- revoked. A replaced access token is remembered so that a client still holding one is not taken for a guesser.
CREATE TABLE spent_tokens (
    refresh_hash text PRIMARY KEY,
    access_hash  text NOT NULL,
    session_id   bigint NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    spent_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX spent_tokens_access ON spent_tokens (access_hash);
CREATE INDEX spent_tokens_session ON spent_tokens (session_id);

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

-- Login attempts, for rate limiting per user and per address; an attempt counts as failed until its password is
-- verified, and rows older than the rate-limit window are pruned.
CREATE TABLE login_attempts (
    attempt_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    username   text NOT NULL,
    address    text NOT NULL,
    ok         boolean NOT NULL
);
CREATE INDEX login_attempts_user ON login_attempts (username, at DESC);
CREATE INDEX login_attempts_address ON login_attempts (address, at DESC);
CREATE INDEX login_attempts_at ON login_attempts (at);

-- Where an audited action came from.
ALTER TABLE audit_log ADD COLUMN address text;
CREATE INDEX audit_log_time ON audit_log (at DESC);
