#!/usr/bin/env bash
# Installs the system packages Kiln needs on a fresh Debian machine (idempotent, needs root or
# sudo). The Rust toolchain itself (>= 1.85, via rustup) must already be there.
set -euo pipefail

# mesa-vulkan-drivers: lavapipe, the software Vulkan driver the GPU backend runs on without a GPU.
# libvulkan1: the Vulkan loader wgpu opens. vulkan-tools: `vulkaninfo` for diagnosing adapters.
PACKAGES=(mesa-vulkan-drivers libvulkan1 vulkan-tools pkg-config)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust >= 1.85 with rustup first" >&2
  exit 1
fi
echo "setup: system packages present"
