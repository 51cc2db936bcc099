-- Core tables: device catalog and registry, the readings hypertable, last values, quarantine.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE device_types (
    code              text PRIMARY KEY,
    name              text NOT NULL,
    sector            text NOT NULL CHECK (sector IN ('agriculture', 'energy', 'transport', 'health')),
    report_interval_s double precision NOT NULL CHECK (report_interval_s > 0),
    spec              jsonb NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE provinces (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    name_ascii  text NOT NULL,
    kind        text NOT NULL,
    merged_from text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE devices (
    device_id        text PRIMARY KEY CHECK (device_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    type_code        text NOT NULL REFERENCES device_types (code),
    province         text NOT NULL,
    sector           text NOT NULL,
    name             text NOT NULL DEFAULT '',
    location         jsonb,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'decommissioned')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    decommissioned_at timestamptz
);
CREATE INDEX devices_province_sector ON devices (province, sector);

CREATE TABLE readings (
    ts        timestamptz NOT NULL,
    device_id text NOT NULL,
    metric    text NOT NULL,
    value     double precision NOT NULL,
    -- 0 = good, 1 = outside the sensor's physical range (stored, flagged, never dropped)
    quality   smallint NOT NULL DEFAULT 0
);
SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'));
-- Redelivered messages are absorbed here: at-least-once in, exactly-once in the table.
CREATE UNIQUE INDEX readings_device_metric_ts ON readings (device_id, metric, ts DESC);

CREATE TABLE device_latest (
    device_id   text NOT NULL,
    metric      text NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    quality     smallint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, metric)
);

CREATE TABLE quarantine (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    device_id    text,
    reason       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    payload      bytea NOT NULL,
    payload_size integer NOT NULL
);
CREATE INDEX quarantine_reason_time ON quarantine (reason, received_at DESC);
