#!/usr/bin/env bash
# Builds the desktop app's Debian package, installs it with apt-get and starts the installed
# binary under its own Xvfb until its window "Kiln" is mapped (issue 16, item 9).
#
# Not part of scripts/test.sh: the release build of kiln-app (Tauri, WebKitGTK, wgpu and the engine
# at opt-level 3) takes some 20 minutes on CI's two cores on top of the debug build the tests use,
# which the 60-minute budget does not hold. The debug binary is what the end-to-end tests drive.
#
# The Tauri CLI comes from npm (ui's devDependency @tauri-apps/cli, a prebuilt binary): compiling
# tauri-cli with cargo would take many minutes more. Needs root for apt-get (as CI runs).
#   scripts/app/package_deb.sh            build, install, start, then remove the package
#   KILN_KEEP_INSTALLED=1 scripts/app/package_deb.sh   leave it installed
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
log() { echo "package_deb.sh: $*" >&2; }

npm --prefix ui ci --no-audit --no-fund --loglevel=error
# tauri.conf.json is at the top (the design's layout); Tauri's CLI finds the Rust crate through
# TAURI_APP_PATH and the web front end (where beforeBuildCommand runs) through TAURI_FRONTEND_PATH.
started=$(date +%s)
TAURI_APP_PATH="$root/src-tauri" TAURI_FRONTEND_PATH="$root/ui" \
  npm --prefix ui run tauri -- build --bundles deb --ci
log "tauri build took $(( $(date +%s) - started )) s"

target="${CARGO_TARGET_DIR:-$root/target}"
deb="$(ls -t "$target"/release/bundle/deb/*.deb | head -n1)"
log "built $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | sed 's/^/  /' >&2
dpkg-deb --contents "$deb" | awk '{print "  " $6}' >&2

apt-get install -y --no-install-recommends "$deb" >&2
installed="$(dpkg -L kiln | grep -E '/bin/kiln-app$')"
log "installed: $installed"

# Start it as a user would, on a display of its own with a fresh data folder, and wait for its
# main window.
scratch="$(mktemp -d)"
exec 3< <(Xvfb -displayfd 1 -screen 0 1400x900x24 -nolisten tcp -noreset 2>/dev/null)
read -r display <&3
xvfb_pid=$(pgrep -n -f "Xvfb -displayfd 1 -screen 0 1400x900x24")
runtime="$scratch/runtime"; mkdir -m 700 "$runtime"
DISPLAY=":$display" XDG_RUNTIME_DIR="$runtime" KILN_APP_DATA="$scratch/data" NO_AT_BRIDGE=1 \
  "$installed" >"$scratch/app.log" 2>&1 &
app_pid=$!
cleanup() {
  kill "$app_pid" 2>/dev/null || true
  kill "$xvfb_pid" 2>/dev/null || true
  rm -rf "$scratch"
  if [ "${KILN_KEEP_INSTALLED:-0}" != 1 ]; then apt-get remove -y kiln >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
started=$(date +%s%N)
for _ in $(seq 600); do
  if xwininfo -root -tree -display ":$display" 2>/dev/null | grep -q '"Kiln"'; then
    log "the installed kiln-app mapped its window \"Kiln\" after $(( ($(date +%s%N) - started) / 1000000 )) ms"
    xwininfo -root -tree -display ":$display" | grep '"Kiln"' | sed 's/^ */  /' >&2
    exit 0
  fi
  if ! kill -0 "$app_pid" 2>/dev/null; then
    log "the installed kiln-app exited before its window was mapped; its log:"; cat "$scratch/app.log" >&2; exit 1
  fi
  sleep 0.1
done
log "no window \"Kiln\" within 60 s; the app's log:"; cat "$scratch/app.log" >&2
exit 1
