-- Idempotency keys (Stripe's semantics): the first response to a POST carrying
-- `Idempotency-Key` is kept for 24 hours and replayed to every repeat of the same request.

CREATE TABLE idempotency_keys (
    org_id        uuid NOT NULL REFERENCES orgs (id),
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of method, path and body: the same key with another request is refused.
    request_hash  bytea NOT NULL CHECK (length(request_hash) = 32),
    -- NULL while the first request runs; then the response kept for replays.
    status        smallint,
    content_type  text,
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (org_id, key),
    CHECK ((status IS NULL) = (body IS NULL))
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
