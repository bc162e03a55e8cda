-- Uploads to object storage, jobs and their queue, progress events, and the workers seen.

CREATE TABLE uploads (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs (id),
    state         text NOT NULL CHECK (state IN ('open', 'complete')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    completed_at  timestamptz
);
CREATE INDEX uploads_org ON uploads (org_id, created_at);

CREATE TABLE upload_files (
    upload_id     uuid NOT NULL REFERENCES uploads (id),
    idx           integer NOT NULL,
    name          text NOT NULL,
    size          bigint NOT NULL CHECK (size >= 0),
    sha256        bytea NOT NULL CHECK (length(sha256) = 32),
    object_key    text NOT NULL,
    -- The S3 multipart upload's id while it is open.
    multipart_id  text,
    part_size     bigint NOT NULL CHECK (part_size > 0),
    part_count    integer NOT NULL CHECK (part_count > 0),
    PRIMARY KEY (upload_id, idx),
    UNIQUE (upload_id, name)
);

CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES orgs (id),
    upload_id         uuid NOT NULL REFERENCES uploads (id),
    batch_id          uuid,
    batch_item        integer,
    state             text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled', 'expired')),
    priority          text NOT NULL CHECK (priority IN ('standard', 'rush')),
    -- The key's mode: `test` jobs run at `preview` at most and are never charged.
    mode              text NOT NULL CHECK (mode IN ('live', 'test')),
    -- kiln-protocol's SettingsOverrides, as submitted (after validation).
    settings          jsonb NOT NULL,
    stage             text,
    fraction          real NOT NULL DEFAULT 0,
    eta_seconds       real,
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL CHECK (max_attempts > 0),
    worker_id         text,
    lease_expires_at  timestamptz,
    heartbeat_at      timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    -- kiln-job's report.json once a worker sent it.
    report            jsonb,
    -- [{name, size, sha256, object_key}] of the finished attempt.
    outputs           jsonb NOT NULL DEFAULT '[]',
    -- {code, message, class} when failed.
    error             jsonb,
    gpu_seconds       double precision NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    -- When the outputs are deleted (set when the job ends).
    expires_at        timestamptz
);
CREATE INDEX jobs_org ON jobs (org_id, created_at DESC);
-- The queue: rush before standard, oldest first, claimed with FOR UPDATE SKIP LOCKED.
CREATE INDEX jobs_queue ON jobs ((priority = 'rush') DESC, created_at) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_batch ON jobs (batch_id, batch_item) WHERE batch_id IS NOT NULL;

-- Final states never change: the database refuses it, whatever the code does.
CREATE FUNCTION jobs_final_states_stay() RETURNS trigger AS $$
BEGIN
    IF OLD.state IN ('succeeded', 'failed', 'canceled', 'expired') AND NEW.state <> OLD.state THEN
        RAISE EXCEPTION 'job % is % and final', OLD.id, OLD.state USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER jobs_final_states_stay BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_final_states_stay();

-- Typed progress (kiln-protocol JobEvent) and state changes, in order: the SSE stream replays
-- them from any id (Last-Event-ID).
CREATE TABLE job_events (
    id          bigserial PRIMARY KEY,
    job_id      uuid NOT NULL REFERENCES jobs (id),
    org_id      uuid NOT NULL REFERENCES orgs (id),
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    body        jsonb NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id, id);

CREATE TABLE workers (
    id          text PRIMARY KEY,
    device      text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);
