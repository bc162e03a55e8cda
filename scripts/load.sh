#!/usr/bin/env bash
# Load figure for the hosted API: `wrk` (Debian) on loopback against `GET /v1/jobs/{id}` with an
# API key and 1,000 jobs in the table, and, in the same run on the same server, against
# `GET /healthz` (no database, no auth) as the peer: the floor of this machine's HTTP stack.
# Prints requests per second and latency percentiles of both, and their ratio.
#
# Needs the services' environment (eval "$(scripts/services.sh start)") and a release build:
#   cargo build --release -p kiln-server
# Uses a database of its own, dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER="${KILN_SERVER_BIN:-${CARGO_TARGET_DIR:-target}/release/kiln-server}"
# wrk's settings: two threads (one per core of the 2-core CI machine) and 32 connections, about
# what a busy integration's pool plus a dashboard would hold open.
THREADS="${KILN_LOAD_THREADS:-2}"
CONNECTIONS="${KILN_LOAD_CONNECTIONS:-32}"
DURATION="${KILN_LOAD_DURATION:-20s}"
JOBS=1000

log() { echo "load.sh: $*" >&2; }
[ -x "$SERVER" ] || { log "kiln-server not found at $SERVER (cargo build --release -p kiln-server)"; exit 1; }
command -v wrk >/dev/null || { log "wrk not found (apt-get install wrk)"; exit 1; }

# One key from one address at full speed: the rate limits would be what is measured otherwise.
export KILN_RATE_PER_KEY=10000000 KILN_RATE_PER_IP=10000000
. scripts/lib/api_server.sh
start_api_server load "$SERVER"
api_account load@example.com '["jobs:read"]'

# 1,000 jobs of that organisation (and as many of another, so scoping is exercised), written
# straight into the tables: the figure is about reading a job, not about running one.
psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" >/dev/null <<SQL
INSERT INTO orgs (id, name) VALUES ('00000000-0000-7000-8000-000000000001', 'other');
INSERT INTO uploads (id, org_id, state, kind, expires_at, completed_at)
  VALUES ('00000000-0000-7000-8000-000000000002', '$org', 'complete', 'photos', now() + interval '7 days', now()),
         ('00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000001', 'complete', 'photos', now() + interval '7 days', now());
INSERT INTO jobs (id, org_id, upload_id, state, priority, mode, settings, max_attempts, stage, fraction)
  SELECT gen_random_uuid(), o.org, o.upload, (ARRAY['queued','running','succeeded'])[1 + n % 3], 'standard', 'live',
         '{"preset": "preview"}', 3, 'train', (n % 100) / 100.0
  FROM generate_series(1, $JOBS) AS n,
       (VALUES ('$org'::uuid, '00000000-0000-7000-8000-000000000002'::uuid),
               ('00000000-0000-7000-8000-000000000001'::uuid, '00000000-0000-7000-8000-000000000003'::uuid)) AS o(org, upload);
ANALYZE jobs, uploads, api_keys;
SQL
job="$(psql -tA "$DATABASE_URL" -c "SELECT id FROM jobs WHERE org_id = '$org' AND state = 'queued' ORDER BY created_at DESC LIMIT 1")"
status="$(curl -s -o "$WORK/job.json" -w '%{http_code}' "$URL/v1/jobs/$job" -H "authorization: Bearer $key")"
[ "$status" = 200 ] || { log "GET /v1/jobs/$job answered $status: $(cat "$WORK/job.json")"; exit 1; }

run() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@"; }
log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $(nproc) cores"
run "$URL/healthz" | tee "$WORK/healthz.txt"
run -H "Authorization: Bearer $key" "$URL/v1/jobs/$job" | tee "$WORK/job.txt"

python3 - "$WORK/healthz.txt" "$WORK/job.txt" <<'PY'
import re, sys
def read(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {p: v for p, v in re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return rps, lat, int(non2xx.group(1)) if non2xx else 0
def ms(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]
(h_rps, h_lat, h_bad), (j_rps, j_lat, j_bad) = read(sys.argv[1]), read(sys.argv[2])
print(f"GET /healthz        {h_rps:9.0f} req/s  p50 {h_lat['50']:>8}  p99 {h_lat['99']:>8}")
print(f"GET /v1/jobs/{{id}}   {j_rps:9.0f} req/s  p50 {j_lat['50']:>8}  p99 {j_lat['99']:>8}")
print(f"jobs/healthz: throughput x{j_rps / h_rps:.2f}, p99 x{ms(j_lat['99']) / ms(h_lat['99']):.1f}")
if h_bad or j_bad:
    sys.exit(f"non-2xx responses: healthz {h_bad}, jobs {j_bad}")
if ms(j_lat["99"]) >= 50:
    sys.exit(f"p99 {j_lat['99']} is over the 50 ms goal")
PY
