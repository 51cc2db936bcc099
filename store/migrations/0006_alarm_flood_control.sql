-- Flood control of alarms: incidents (alarms that share a cause are linked to the incident's first alarm),
-- reminders of alarms left unacknowledged (a silent device), flapping, and maintenance windows that suppress
-- alarms during planned work.

-- The first alarm of the incident this alarm joined (a device's second alarm within minutes of its first, the
-- fifth device of a province going silent at once); NULL: it leads its own incident. Only leaders are notified.
ALTER TABLE alarms ADD COLUMN incident_id bigint REFERENCES alarms (id);
-- Notifications sent again while the alarm stays active and unacknowledged (silence reminders).
ALTER TABLE alarms ADD COLUMN reminders integer NOT NULL DEFAULT 0;
ALTER TABLE alarms ADD COLUMN reminded_at timestamptz;
-- Raised again and again within the flap window: kept open as one alarm until quiet for a whole window.
ALTER TABLE alarms ADD COLUMN flapping boolean NOT NULL DEFAULT false;
CREATE INDEX alarms_incident ON alarms (incident_id) WHERE incident_id IS NOT NULL;
-- The latest alarm of a cause (the incident leader a new alarm joins), open or not.
CREATE INDEX alarms_cause_raised ON alarms (device_id, cause, raised_at DESC);

-- Planned work: no alarm is raised for the devices a window covers while it lasts. A window covers one device,
-- the devices of one site (`devices.location->>'site'`), or a province and/or a sector. `province` and `sector`
-- are also the window's scope (who may see and change it); a device's or site's window carries its devices'.
CREATE TABLE maintenance_windows (
    id           bigserial PRIMARY KEY,
    device_id    text REFERENCES devices (device_id),
    site         text,
    province     text,
    sector       text,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    cancelled_by text,
    cancelled_at timestamptz,
    CHECK (ends_at > starts_at),
    CHECK (device_id IS NOT NULL OR site IS NOT NULL OR province IS NOT NULL OR sector IS NOT NULL),
    CHECK ((cancelled_at IS NULL) = (cancelled_by IS NULL))
);
CREATE INDEX maintenance_windows_ends ON maintenance_windows (ends_at) WHERE cancelled_at IS NULL;
