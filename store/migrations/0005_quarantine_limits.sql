-- Quarantine limits and readiness (issue 14): where a message said it came from (so an admin sees only their provinces),
-- the messages counted but not stored beyond a device's rate limit, and indexes for retention and per-device views.
ALTER TABLE quarantine
    ADD COLUMN province text,
    ADD COLUMN sector   text;
CREATE INDEX quarantine_received ON quarantine (received_at);
CREATE INDEX quarantine_device_time ON quarantine (device_id, received_at DESC);

-- Beyond its rate limit a device's bad messages are counted here per minute (one in N is still stored in full).
CREATE TABLE quarantine_suppressed (
    device_key   text NOT NULL,         -- the device id the topic named, '' when it named none
    window_start timestamptz NOT NULL,  -- the minute the messages arrived in
    province     text,
    sector       text,
    messages     bigint NOT NULL,
    bytes        bigint NOT NULL,
    last_reason  text NOT NULL,
    PRIMARY KEY (device_key, window_start)
);
CREATE INDEX quarantine_suppressed_window ON quarantine_suppressed (window_start);

-- Readiness: each ingest worker says every few seconds whether it is connected and subscribed (GET /readyz).
CREATE TABLE ingest_heartbeats (
    client_id text PRIMARY KEY,
    connected boolean NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
