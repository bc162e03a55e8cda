-- Webhooks to customers (Standard Webhooks): endpoints, an outbox of messages, one delivery per
-- message and endpoint, and the log of every attempt. Batches: one job per item.

CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY,
    org_id               uuid NOT NULL REFERENCES orgs (id),
    url                  text NOT NULL,
    description          text NOT NULL DEFAULT '',
    -- The event types sent; NULL for every type.
    events               text[],
    -- `whsec_…`, kept in the clear because it signs: shown once at creation and rotation.
    secret               text NOT NULL,
    -- The secret before the last rotation, which still signs beside the new one until
    -- previous_expires_at, so receivers can switch without losing a message.
    previous_secret      text,
    previous_expires_at  timestamptz,
    -- Cleared when the receiver answered 410 Gone.
    enabled              boolean NOT NULL DEFAULT true,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id, created_at);

-- The outbox: written in the transaction of the change the event reports.
CREATE TABLE webhook_messages (
    -- `msg_…`: the `webhook-id` of every attempt, retry and redelivery.
    id          text PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES orgs (id),
    event_type  text NOT NULL,
    -- The exact body sent (and signed) on every attempt.
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_messages_org ON webhook_messages (org_id, created_at);

CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    org_id           uuid NOT NULL REFERENCES orgs (id),
    message_id       text NOT NULL REFERENCES webhook_messages (id),
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    state            text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    -- Attempts allowed before it fails: the retry schedule's length, or one more than made when
    -- redelivered by hand.
    max_attempts     integer NOT NULL CHECK (max_attempts > 0),
    -- When a pending delivery is due.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- While a dispatcher is sending it: when its claim lapses (the process died mid-attempt).
    claimed_until    timestamptz,
    -- The next attempt was asked for by hand (POST /v1/webhook-messages/{id}/redeliver).
    manual           boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, endpoint_id)
);
-- The dispatcher's queue: due pending deliveries, oldest first, claimed with SKIP LOCKED.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id);

-- The delivery log: one row per attempt.
CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    org_id       uuid NOT NULL REFERENCES orgs (id),
    endpoint_id  uuid NOT NULL,
    message_id   text NOT NULL,
    attempt      integer NOT NULL,
    -- Made because of a manual redelivery rather than the schedule.
    manual       boolean NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    error        text,
    duration_ms  integer NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);

CREATE TABLE batches (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs (id),
    -- How the items were given: `items` (JSON) or `csv` (a manifest).
    source        text NOT NULL CHECK (source IN ('items', 'csv')),
    item_count    integer NOT NULL CHECK (item_count > 0),
    state         text NOT NULL CHECK (state IN ('running', 'completed')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);
CREATE INDEX batches_org ON batches (org_id, created_at DESC);

ALTER TABLE jobs ADD CONSTRAINT jobs_batch FOREIGN KEY (batch_id) REFERENCES batches (id);
