-- Data lifecycle (issue 15): one-minute and one-hour rollups of readings, the one function long-range reads go
-- through (rollups where whole buckets are ready, raw readings for the rest), and how far retention has deleted.
--
-- Both rollups have the same columns whichever TimescaleDB build runs: with the Timescale License they are
-- continuous aggregates (real-time, refreshed by policies that store.rollups sets from the settings); with the
-- Apache build these machines have they are hypertables the center's own job (store.rollups.roll_up) fills.
-- `readings` per bucket: count; `total`: sum of values (mean = total / readings); `flagged`: readings with quality <> 0.
DO $lifecycle$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW readings_1m
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket, device_id, metric,
                   count(*) AS readings, sum(value) AS total, min(value) AS minimum, max(value) AS maximum,
                   count(*) FILTER (WHERE quality <> 0) AS flagged
            FROM readings
            GROUP BY time_bucket(INTERVAL '1 minute', ts), device_id, metric
            WITH NO DATA
        $cagg$;
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW readings_1h
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, device_id, metric,
                   sum(readings)::bigint AS readings, sum(total) AS total, min(minimum) AS minimum,
                   max(maximum) AS maximum, sum(flagged)::bigint AS flagged
            FROM readings_1m
            GROUP BY time_bucket(INTERVAL '1 hour', bucket), device_id, metric
            WITH NO DATA
        $cagg$;
    ELSE
        CREATE TABLE readings_1m (
            bucket    timestamptz NOT NULL,
            device_id text NOT NULL,
            metric    text NOT NULL,
            readings  bigint NOT NULL,
            total     double precision NOT NULL,
            minimum   double precision NOT NULL,
            maximum   double precision NOT NULL,
            flagged   bigint NOT NULL,
            PRIMARY KEY (device_id, metric, bucket)
        );
        PERFORM create_hypertable('readings_1m', by_range('bucket', INTERVAL '7 days'));
        CREATE TABLE readings_1h (LIKE readings_1m INCLUDING ALL);
        PERFORM create_hypertable('readings_1h', by_range('bucket', INTERVAL '90 days'));
    END IF;
END
$lifecycle$;

-- What retention has deleted: rows older than `deleted_before` may be gone from the table (scope 'raw': every
-- sector's readings; 'raw/<sector>': one sector's; 'rollup_1m': the one-minute rollups). A rollup bucket older
-- than its horizon is never recomputed from what is left: new (late) readings are added to it instead.
CREATE TABLE retention_horizons (
    scope          text PRIMARY KEY,
    deleted_before timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Aggregates per `p_bucket` of the devices' readings in [p_from, p_to) (all metrics when `p_metrics` is NULL), the
-- same numbers time_bucket over the raw readings gives: hours wholly inside the range come from readings_1h (when
-- the bucket is whole hours), minutes from readings_1m (when it is whole minutes), the edges and anything the
-- rollup job has not reached yet (job_watermarks 'rollup'.reading_ts: every bucket ending before it is rolled up)
-- from raw readings. Scope is the caller's: it passes only devices the reader may see.
CREATE FUNCTION reading_aggregates(
    p_devices text[], p_metrics text[], p_from timestamptz, p_to timestamptz, p_bucket interval
) RETURNS TABLE (
    bucket timestamptz, device_id text, metric text, readings bigint, total double precision,
    minimum double precision, maximum double precision, flagged bigint
) LANGUAGE sql STABLE AS $fn$
    WITH ready AS NOT MATERIALIZED (
        SELECT coalesce((SELECT w.reading_ts FROM job_watermarks w WHERE w.job = 'rollup'), '-infinity') AS at
    ), cuts AS NOT MATERIALIZED (
        SELECT CASE WHEN extract(epoch FROM p_bucket) % 3600 = 0
                    THEN time_bucket(INTERVAL '1 hour', p_from - INTERVAL '1 microsecond') + INTERVAL '1 hour'
                    ELSE p_from END AS h_lo,
               CASE WHEN extract(epoch FROM p_bucket) % 3600 = 0
                    THEN time_bucket(INTERVAL '1 hour', least(p_to, r.at))
                    ELSE p_from END AS h_hi,
               CASE WHEN extract(epoch FROM p_bucket) % 60 = 0
                    THEN time_bucket(INTERVAL '1 minute', p_from - INTERVAL '1 microsecond') + INTERVAL '1 minute'
                    ELSE p_from END AS m_lo,
               CASE WHEN extract(epoch FROM p_bucket) % 60 = 0
                    THEN time_bucket(INTERVAL '1 minute', least(p_to, r.at))
                    ELSE p_from END AS m_hi
        FROM ready r
    )
    SELECT time_bucket(p_bucket, part.at), part.device_id, part.metric, sum(part.n)::bigint, sum(part.total),
           min(part.minimum), max(part.maximum), sum(part.flagged)::bigint
    FROM (
        SELECT h.bucket AS at, h.device_id, h.metric, h.readings AS n, h.total, h.minimum, h.maximum, h.flagged
        FROM readings_1h h, cuts c
        WHERE h.device_id = ANY (p_devices) AND (p_metrics IS NULL OR h.metric = ANY (p_metrics))
          AND h.bucket >= p_from AND h.bucket < p_to AND h.bucket >= c.h_lo AND h.bucket < c.h_hi
        UNION ALL
        SELECT m.bucket, m.device_id, m.metric, m.readings, m.total, m.minimum, m.maximum, m.flagged
        FROM readings_1m m, cuts c
        WHERE m.device_id = ANY (p_devices) AND (p_metrics IS NULL OR m.metric = ANY (p_metrics))
          AND m.bucket >= p_from AND m.bucket < p_to AND m.bucket >= c.m_lo AND m.bucket < c.m_hi
          AND NOT (m.bucket >= c.h_lo AND m.bucket < c.h_hi)
        UNION ALL
        SELECT r.ts, r.device_id, r.metric, 1, r.value, r.value, r.value, (r.quality <> 0)::int
        FROM readings r, cuts c
        WHERE r.device_id = ANY (p_devices) AND (p_metrics IS NULL OR r.metric = ANY (p_metrics))
          AND r.ts >= p_from AND r.ts < p_to
          AND NOT (r.ts >= c.m_lo AND r.ts < c.m_hi) AND NOT (r.ts >= c.h_lo AND r.ts < c.h_hi)
    ) part
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
$fn$;
