#!/usr/bin/env bash
# Property-based API check: runs schemathesis (PyPI) against a live `kiln-server serve` with its
# own /openapi.json and a live API key, and fails on any 5xx or any response that breaks the
# schema (status codes, content types, headers, bodies).
#
# Needs the services' environment (eval "$(scripts/services.sh start)") and a built kiln-server
# ($KILN_SERVER_BIN, default $CARGO_TARGET_DIR/debug/kiln-server). Uses a database of its own,
# dropped at the end. schemathesis is installed into a cache outside the clone on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
TOOLS="${KILN_TOOLS:-$HOME/.cache/kiln-tools}"
VENV="$TOOLS/schemathesis-venv"
# Examples per operation: about 3,500 requests in all, some 20 s on two cores (measured
# 2026-12-06), enough to reach every schema branch of our small bodies.
MAX_EXAMPLES="${KILN_SCHEMATHESIS_EXAMPLES:-100}"
SERVER="${KILN_SERVER_BIN:-${CARGO_TARGET_DIR:-target}/debug/kiln-server}"

log() { echo "schemathesis.sh: $*" >&2; }
: "${DATABASE_URL:?run eval \"\$(scripts/services.sh start)\" first}"
[ -x "$SERVER" ] || { log "kiln-server binary not found at $SERVER (cargo build -p kiln-server)"; exit 1; }

if ! "$VENV/bin/schemathesis" --version >/dev/null 2>&1; then
  log "installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi

DB="kiln_schemathesis_$$"
ADMIN_URL="$DATABASE_URL"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="${ADMIN_URL%/*}/$DB"
export KILN_WORKER_TOKEN="schemathesis-worker-token-$$-0123456789abcdef"
export KILN_JWT_SECRET="schemathesis-jwt-secret-0123456789abcdef"
# The run sends thousands of requests from one key and one address: lift the rate limits.
export KILN_RATE_PER_KEY="${KILN_RATE_PER_KEY:-100000}" KILN_RATE_PER_IP="${KILN_RATE_PER_IP:-100000}"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
export KILN_PUBLIC_URL="$URL"

"$SERVER" migrate
RUST_LOG="${RUST_LOG:-warn}" "$SERVER" serve --bind "127.0.0.1:$PORT" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do curl -fs "$URL/healthz" >/dev/null && break; sleep 0.1; done

signup="$(curl -fsS "$URL/v1/auth/signup" -H 'content-type: application/json' \
  -d '{"email": "schemathesis@example.com", "password": "schemathesis password"}')"
token="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' <<<"$signup")"
created="$(curl -fsS "$URL/v1/api-keys" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name": "schemathesis", "scopes": ["jobs:read", "jobs:write", "keys:manage", "webhooks:manage"], "mode": "live"}')"
key="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' <<<"$created")"

# Revoking an API key is tested last and alone: schemathesis reuses ids it has seen, and would
# otherwise revoke its own key halfway and test the rest of the API as a stranger.
REVOKE='^/v1/api-keys/\{id\}$'
log "running against $URL ($MAX_EXAMPLES examples per operation)"
status=0
# Run inside the scratch folder: schemathesis keeps a cache folder in its working directory.
st() (
  cd "$WORK"
  "$VENV/bin/schemathesis" --no-color run "$URL/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases "${KILN_SCHEMATHESIS_PHASES:-examples,coverage,fuzzing}" \
  --max-examples "$MAX_EXAMPLES" \
  --seed 1 \
  --generation-database none \
  --workers 1 \
  "$@"
)
st --exclude-path-regex "$REVOKE" || status=$?
st --include-path-regex "$REVOKE" || status=$?
if [ "$status" -ne 0 ]; then
  log "FAILED; the server's log follows"
  tail -n 50 "$WORK/server.log" >&2
fi
exit "$status"
