#!/usr/bin/env bash
# The tools of the desktop app's end-to-end test (src-tauri/tests/e2e.rs), which drives the real
# window through WebDriver:
#   tauri-driver     Tauri's WebDriver server (crates.io), installed once into a cache outside
#                    the clone (idempotent: a second run with the same version does nothing);
#   WebKitWebDriver  WebKitGTK's own WebDriver server, which tauri-driver forwards to on Linux:
#                    Debian's `webkit2gtk-driver` (scripts/setup.sh installs it), only checked.
# Prints the folder holding `tauri-driver` on stdout (last line), so callers can do:
#   export PATH="$(scripts/app_e2e_tools.sh | tail -n1):$PATH"
# Reaches crates.io on first run only.
set -euo pipefail

TOOLS="${KILN_TOOLS:-$HOME/.cache/kiln-tools}"
# The current stable line (3.x is an alpha). tauri-driver has no --version: cargo's record of what
# it installed under the root is read instead, so changing this pin reinstalls.
TAURI_DRIVER_VERSION="2.1.0"
ROOT="$TOOLS/tauri-driver"

if ! command -v WebKitWebDriver >/dev/null; then
  echo "app_e2e_tools: WebKitWebDriver is missing (Debian: apt-get install webkit2gtk-driver)" >&2
  exit 1
fi

if [ ! -x "$ROOT/bin/tauri-driver" ] || ! grep -qF "\"tauri-driver $TAURI_DRIVER_VERSION " "$ROOT/.crates.toml" 2>/dev/null; then
  echo "app_e2e_tools: installing tauri-driver $TAURI_DRIVER_VERSION into $ROOT" >&2
  # Its own target folder (cargo install's default), not the workspace's: nothing of the
  # workspace is rebuilt, and the installed binary does not depend on the workspace's lock file.
  # Unoptimised (--debug): it only forwards a test's few HTTP requests, and compiles sooner.
  cargo install tauri-driver --version "=$TAURI_DRIVER_VERSION" --locked --debug --root "$ROOT" >&2
fi

echo "$ROOT/bin"
