-- Device credentials, broker access version, device health, commands (downlink), audit log, API tokens.

-- secret_hash is Mosquitto's own PBKDF2-SHA512 format ($7$…): the broker's password file is rendered from it.
ALTER TABLE devices
    ADD COLUMN secret_hash           text,
    ADD COLUMN credential_status     text NOT NULL DEFAULT 'none'
        CHECK (credential_status IN ('none', 'active', 'revoked')),
    ADD COLUMN credential_changed_at timestamptz,
    -- NULL = the device type's report interval
    ADD COLUMN report_interval_s     double precision CHECK (report_interval_s > 0);

-- Bumped by every change to `devices`; the broker access sync regenerates the broker's files when it moves.
CREATE TABLE broker_access_state (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    version    bigint NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO broker_access_state DEFAULT VALUES;

CREATE FUNCTION bump_broker_access_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE broker_access_state SET version = version + 1, changed_at = now();
    RETURN NULL;
END
$$;
-- Per statement, not per row: a COPY of 10,000 devices bumps the version once.
CREATE TRIGGER devices_broker_access AFTER INSERT OR UPDATE OR DELETE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION bump_broker_access_version();

-- Online/offline as the device last said it (retained `status`, or its Last Will).
CREATE TABLE device_status (
    device_id  text PRIMARY KEY,
    online     boolean NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE device_commands (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    device_id  text NOT NULL REFERENCES devices (device_id),
    name       text NOT NULL,
    params     jsonb NOT NULL DEFAULT '{}',
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'acked', 'failed', 'timed_out')),
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    acked_at   timestamptz,
    detail     text NOT NULL DEFAULT '',
    actor      text NOT NULL DEFAULT ''
);
CREATE INDEX device_commands_device_time ON device_commands (device_id, created_at DESC);
CREATE INDEX device_commands_open ON device_commands (sent_at) WHERE status IN ('pending', 'sent');

CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_target_time ON audit_log (target, at DESC);

-- Operator API tokens: only a SHA-256 of the (random, 192-bit) token is kept.
CREATE TABLE api_tokens (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    role       text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    token_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
