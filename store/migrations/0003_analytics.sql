-- Analytics: the job's ingest-ordered cursor on readings, anomalies, alarms with their lifecycle,
-- saved detector/rule state per series and the job's watermark.

-- The job reads readings in ingest-commit order. A timestamp or a sequence is assigned before commit, so a
-- slow transaction can commit "behind" a watermark that has already passed it; a transaction id is not safe
-- either on its own, but together with the snapshot's xmin it is: every transaction below xmin has finished,
-- so reading `ingest_xid` in [watermark, xmin) never skips a late commit and never sees one twice.
-- Stored as bigint (xid8 has no BRIN operator class); a 64-bit xid never wraps around.
ALTER TABLE readings ADD COLUMN ingest_xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
-- When the center received the reading (the ingest transaction's start): alarm latency is measured from it.
ALTER TABLE readings ADD COLUMN received_at timestamptz NOT NULL DEFAULT now();
-- Rows are appended in ingest order, so a BRIN index is tiny and costs the ingest path almost nothing.
CREATE INDEX readings_ingest_xid ON readings USING brin (ingest_xid) WITH (pages_per_range = 16);

CREATE TABLE anomalies (
    ts          timestamptz NOT NULL,
    device_id   text NOT NULL,
    metric      text NOT NULL,
    value       double precision NOT NULL,
    score       double precision NOT NULL,
    detector    text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz,
    detected_at timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('anomalies', by_range('ts', INTERVAL '7 days'));
-- A reading re-scored after a restart from an older saved state is absorbed, not doubled.
CREATE UNIQUE INDEX anomalies_device_metric_ts ON anomalies (device_id, metric, detector, ts DESC);

CREATE TABLE alarms (
    id                  bigserial PRIMARY KEY,
    device_id           text NOT NULL,
    metric              text,
    -- What raised it: a rule of the device type or a learned detector; `cause` names it within the device
    -- (e.g. `threshold_above@8`, `univariate`), one open alarm per (device, metric, cause).
    source              text NOT NULL CHECK (source IN ('rule', 'detector')),
    kind                text NOT NULL,
    cause               text NOT NULL,
    province            text NOT NULL,
    sector              text NOT NULL,
    severity            text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    initial_severity    text NOT NULL CHECK (initial_severity IN ('critical', 'major', 'minor', 'warning')),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'acknowledged', 'cleared')),
    message             text NOT NULL,
    occurrences         integer NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
    -- The readings that raised it: device_id, metric and the reading-time range [first_reading_ts, last_reading_ts].
    first_reading_ts    timestamptz NOT NULL,
    last_reading_ts     timestamptz NOT NULL,
    last_value          double precision,
    last_score          double precision,
    -- The reading that raised it (for a rule: the one completing the duration) and when the center received it.
    trigger_reading_ts  timestamptz,
    trigger_received_at timestamptz,
    raised_at           timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    acknowledged_by     text,
    acknowledged_at     timestamptz,
    ack_note            text,
    escalation_level    integer NOT NULL DEFAULT 0,
    escalated_at        timestamptz,
    cleared_by          text,
    cleared_at          timestamptz,
    clear_reason        text,
    clear_note          text,
    details             jsonb NOT NULL DEFAULT '{}',
    CHECK ((status = 'cleared') = (cleared_at IS NOT NULL)),
    CHECK (status <> 'acknowledged' OR acknowledged_at IS NOT NULL)
);
CREATE UNIQUE INDEX alarms_one_open_per_cause ON alarms (device_id, metric, cause) NULLS NOT DISTINCT
    WHERE status <> 'cleared';
CREATE INDEX alarms_status_raised ON alarms (status, raised_at DESC);
CREATE INDEX alarms_province_raised ON alarms (province, raised_at DESC);
CREATE INDEX alarms_device_raised ON alarms (device_id, raised_at DESC);

CREATE TABLE analytics_state (
    job        text NOT NULL,
    device_id  text NOT NULL,
    metric     text NOT NULL,
    state      bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, device_id, metric)
);

CREATE TABLE job_watermarks (
    job        text PRIMARY KEY,
    -- Every reading with ingest_xid below this has been processed.
    ingest_xid bigint NOT NULL,
    -- The newest reading time processed and the job's clock at the last tick, for "seconds behind".
    reading_ts timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
