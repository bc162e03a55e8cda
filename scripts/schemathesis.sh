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
[ -x "$SERVER" ] || { log "kiln-server binary not found at $SERVER (cargo build -p kiln-server)"; exit 1; }

if ! "$VENV/bin/schemathesis" --version >/dev/null 2>&1; then
  log "installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi

# The run sends thousands of requests from one key and one address: lift the rate limits.
# A webhook secret, so Stripe's endpoint is fuzzed for real: every unsigned event is a 400.
export KILN_STRIPE_WEBHOOK_SECRET="whsec_schemathesis_$$_0123456789abcdef"
export KILN_RATE_PER_KEY="${KILN_RATE_PER_KEY:-100000}" KILN_RATE_PER_IP="${KILN_RATE_PER_IP:-100000}"
. scripts/lib/api_server.sh
start_api_server schemathesis "$SERVER"
api_account schemathesis@example.com '["jobs:read", "jobs:write", "keys:manage", "webhooks:manage"]'

# Revoking an API key is tested last and alone: schemathesis reuses ids it has seen, and would
# otherwise revoke its own key halfway and test the rest of the API as a stranger.
REVOKE='^/v1/api-keys/\{id\}$'
# Studio's checkout calls Stripe, which is not here (without a key it answers 503, which the
# server-error check counts): tests/api/billing_stripe.rs runs it against a stub of Stripe's API.
STRIPE_ONLY='^/v1/studio/checkout$'
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
st --exclude-path-regex "$REVOKE|$STRIPE_ONLY" || status=$?
st --include-path-regex "$REVOKE" || status=$?
if [ "$status" -ne 0 ]; then
  log "FAILED; the server's log follows"
  tail -n 50 "$WORK/server.log" >&2
fi
exit "$status"
