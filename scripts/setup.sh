#!/usr/bin/env bash
# Installs the system packages Kiln needs on a fresh Debian machine (idempotent, needs root or
# sudo). The Rust toolchain itself (>= 1.95, via rustup) must already be there.
set -euo pipefail

# mesa-vulkan-drivers: lavapipe, the software Vulkan driver the GPU backend runs on without a GPU.
# libvulkan1: the Vulkan loader wgpu opens. vulkan-tools: `vulkaninfo` for diagnosing adapters.
# xvfb, x11-apps (xwd), x11-utils (xwininfo): the `kiln view` test opens the real window on a
# virtual X display and screenshots it.
# postgresql (server binaries and psql), curl: scripts/services.sh runs its own throwaway
# PostgreSQL cluster for the hosted server (kiln-server) and signs S3 requests with curl. The
# package's own `main` cluster (port 5432), started or not, is never used.
# dbus-daemon (dbus-run-session), gnome-keyring, libsecret-tools (secret-tool): the desktop-login
# test keeps tokens in a real Secret Service on a private session bus and reads them back with
# another program (scripts/test.sh).
# libwebkit2gtk-4.1-dev (WebKitGTK and GTK 3 headers and pkg-config files): the desktop app
# (src-tauri, Tauri 2's Linux runtime). webkit2gtk-driver (WebKitWebDriver): its end-to-end test
# drives the real window through tauri-driver, and stops what it started with procps' `kill`.
# mold: the linker .cargo/config.toml names (links the test binaries several times faster).
PACKAGES=(mesa-vulkan-drivers libvulkan1 vulkan-tools pkg-config xvfb x11-apps x11-utils postgresql curl
  dbus-daemon gnome-keyring libsecret-tools libwebkit2gtk-4.1-dev webkit2gtk-driver procps mold)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# The exported-file validators (scripts/validators.sh) need node + npm (Khronos glTF-Validator)
# and python3 with venv (OpenUSD's usd-core; scripts/services.sh's SeaweedFS too). Checked by
# command, not package: node may come from another repository whose package already ships npm.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)

if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust >= 1.95 with rustup first" >&2
  exit 1
fi
echo "setup: system packages present"
