-- Partial refusals (issue 16): a message whose envelope and device are good keeps its good readings; only its bad
-- readings are refused. Its quarantine entry says how many readings were stored and which were refused, and why.
-- Entries refused whole before reading-by-reading judgement (bad JSON, unknown device, ...) keep 0 and '[]'.
ALTER TABLE quarantine
    ADD COLUMN readings_stored  integer NOT NULL DEFAULT 0 CHECK (readings_stored >= 0),
    ADD COLUMN readings_refused integer NOT NULL DEFAULT 0 CHECK (readings_refused >= 0),
    -- [{"metric", "ts", "value", "reason", "detail"}, ...], the first few of `readings_refused`
    ADD COLUMN refused_readings jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(refused_readings) = 'array');
-- "Which entries refused a reading for this reason": refused_readings @> '[{"reason": "unknown_metric"}]'.
CREATE INDEX quarantine_refused_readings ON quarantine USING gin (refused_readings jsonb_path_ops);
