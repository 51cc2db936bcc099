-- Who is working on an alarm: an operator assigns it to a person (themselves or a colleague who can see it), and an
-- assignment is an event for the live console like a change of status.
ALTER TABLE alarms ADD COLUMN assigned_to text, ADD COLUMN assigned_at timestamptz;
CREATE INDEX alarms_assigned_open ON alarms (assigned_to) WHERE status <> 'cleared' AND assigned_to IS NOT NULL;

ALTER TABLE alarm_events ADD COLUMN assigned_to text;

CREATE OR REPLACE FUNCTION record_alarm_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = OLD.status AND NEW.severity = OLD.severity
       AND NEW.occurrences = OLD.occurrences AND NEW.assigned_to IS NOT DISTINCT FROM OLD.assigned_to THEN
        RETURN NULL;  -- bookkeeping (last value, score): not an event for a person
    END IF;
    INSERT INTO alarm_events (alarm_id, device_id, province, sector, status, severity, kind, message, assigned_to)
    VALUES (NEW.id, NEW.device_id, NEW.province, NEW.sector, NEW.status, NEW.severity, NEW.kind, NEW.message,
            NEW.assigned_to);
    RETURN NULL;
END
$$;
