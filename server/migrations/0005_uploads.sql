-- Uploads: what kind of input they hold, and a final `rejected` state for an upload refused at
-- completion (missing parts, a wrong size or hash, an unsafe ZIP, expiry). A rejected upload's
-- objects are deleted and it can never become an input; the client creates a new one.

ALTER TABLE uploads DROP CONSTRAINT uploads_state_check;
ALTER TABLE uploads ADD CONSTRAINT uploads_state_check CHECK (state IN ('open', 'complete', 'rejected'));

-- `photos` (JPEG/PNG files) or `zip` (exactly one .zip of photos).
ALTER TABLE uploads ADD COLUMN kind text NOT NULL DEFAULT 'photos' CHECK (kind IN ('photos', 'zip'));
ALTER TABLE uploads ALTER COLUMN kind DROP DEFAULT;

-- {code, message} of the refusal, when rejected.
ALTER TABLE uploads ADD COLUMN error jsonb;

-- The expiry sweep looks for open uploads past their time.
CREATE INDEX uploads_open_expiry ON uploads (expires_at) WHERE state = 'open';
