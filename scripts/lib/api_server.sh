# Sourced by scripts that drive a live kiln-server (schemathesis.sh, load.sh): a database of its
# own on the services' PostgreSQL, `migrate`, `serve` on a free loopback port, and an account
# with an API key. Everything is removed on exit.
#
#   start_api_server NAME SERVER   sets DATABASE_URL, URL, WORK (scratch folder, server.log in it)
#   api_account EMAIL SCOPES_JSON  sets token, org, key (a live API key with those scopes)
# The caller sets KILN_RATE_PER_KEY / KILN_RATE_PER_IP (and RUST_LOG) before starting.

start_api_server() {
  local name="$1" server="$2"
  : "${DATABASE_URL:?run eval \"\$(scripts/services.sh start)\" first}"
  API_DB="kiln_${name}_$$"
  API_ADMIN_URL="$DATABASE_URL"
  WORK="$(mktemp -d)"
  API_SERVER_PID=""
  trap stop_api_server EXIT
  psql -q "$API_ADMIN_URL" -c "CREATE DATABASE $API_DB" >/dev/null
  export DATABASE_URL="${API_ADMIN_URL%/*}/$API_DB"
  export KILN_WORKER_TOKEN="${name}-worker-token-$$-0123456789abcdef0123"
  export KILN_JWT_SECRET="${name}-jwt-secret-0123456789abcdef0123456789"
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  URL="http://127.0.0.1:$port"
  export KILN_PUBLIC_URL="$URL"
  # Credits for the account's jobs (a ledger grant at signup), so jobs are accepted, not 402.
  export KILN_SIGNUP_CREDITS="${KILN_SIGNUP_CREDITS:-1000000}"
  "$server" migrate
  RUST_LOG="${RUST_LOG:-warn}" "$server" serve --bind "127.0.0.1:$port" 2>"$WORK/server.log" &
  API_SERVER_PID=$!
  for _ in $(seq 100); do curl -fs "$URL/healthz" >/dev/null && break; sleep 0.1; done
}

stop_api_server() {
  [ -n "${API_SERVER_PID:-}" ] && kill "$API_SERVER_PID" 2>/dev/null && wait "$API_SERVER_PID" 2>/dev/null || true
  psql -q "$API_ADMIN_URL" -c "DROP DATABASE IF EXISTS $API_DB" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}

api_account() {
  local email="$1" scopes="$2" signup
  signup="$(curl -fsS "$URL/v1/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\": \"$email\", \"password\": \"a long enough password\"}")"
  token="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' <<<"$signup")"
  org="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["org_id"])' <<<"$signup")"
  key="$(curl -fsS "$URL/v1/api-keys" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"name\": \"$email\", \"scopes\": $scopes, \"mode\": \"live\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
}
