-- Every change of an alarm as an event, for live streams and resumable readers. Each event carries the id of the
-- transaction that wrote it, so readers use the same watermark as for readings: everything with an xid below
-- pg_snapshot_xmin(pg_current_snapshot()) is final, and a late commit is never skipped.
CREATE TABLE alarm_events (
    event_id  bigserial PRIMARY KEY,
    xid       bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    at        timestamptz NOT NULL DEFAULT now(),
    alarm_id  bigint NOT NULL,
    device_id text NOT NULL,
    province  text NOT NULL,
    sector    text NOT NULL,
    status    text NOT NULL,
    severity  text NOT NULL,
    kind      text NOT NULL,
    message   text NOT NULL
);
CREATE INDEX alarm_events_xid ON alarm_events (xid);
CREATE INDEX alarm_events_at ON alarm_events (at);

CREATE FUNCTION record_alarm_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = OLD.status AND NEW.severity = OLD.severity
       AND NEW.occurrences = OLD.occurrences THEN
        RETURN NULL;  -- bookkeeping (last value, score): not an event for a person
    END IF;
    INSERT INTO alarm_events (alarm_id, device_id, province, sector, status, severity, kind, message)
    VALUES (NEW.id, NEW.device_id, NEW.province, NEW.sector, NEW.status, NEW.severity, NEW.kind, NEW.message);
    RETURN NULL;
END
$$;
CREATE TRIGGER alarms_record_event AFTER INSERT OR UPDATE ON alarms
    FOR EACH ROW EXECUTE FUNCTION record_alarm_event();
