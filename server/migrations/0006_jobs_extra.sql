-- Jobs, beyond 0002: the output objects a worker staged, when expired outputs were deleted, and
-- the attempt limit taken from the queue configuration when a worker first leases the job.

-- Every key a worker got an upload URL for and the job does not (or no longer) keep as an
-- output: the reaper deletes these objects once the job has ended (a lost attempt's files).
ALTER TABLE jobs ADD COLUMN staged_keys text[] NOT NULL DEFAULT '{}';
-- Set when the reaper deleted the outputs past expires_at.
ALTER TABLE jobs ADD COLUMN outputs_deleted_at timestamptz;
-- Set at each lease from the leasing server's configuration (KILN_MAX_ATTEMPTS), so the limit in
-- force is the one of the servers running the queue, not a value frozen at submission.
ALTER TABLE jobs ALTER COLUMN max_attempts DROP NOT NULL;

CREATE INDEX jobs_staged ON jobs (finished_at) WHERE cardinality(staged_keys) > 0 AND finished_at IS NOT NULL;
CREATE INDEX jobs_retention ON jobs (expires_at) WHERE outputs_deleted_at IS NULL AND expires_at IS NOT NULL;
