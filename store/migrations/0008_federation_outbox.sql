-- Snapshots for the national center, kept until delivered: the push job inserts one per province and period, and
-- sends them in order with retries; the idempotency key lets the receiver drop a snapshot it already has.
CREATE TABLE federation_outbox (
    id               bigserial PRIMARY KEY,
    province         text NOT NULL,
    period_start     timestamptz NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    delivered_at     timestamptz,
    UNIQUE (province, period_start)
);
CREATE INDEX federation_outbox_pending ON federation_outbox (next_attempt_at) WHERE delivered_at IS NULL;
