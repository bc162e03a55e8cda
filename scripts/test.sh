#!/usr/bin/env bash
# The test suite, as README.md documents it and .ci/run calls it.
# Dataset tests read $KILN_DATASETS (default ../shared/datasets) and say loudly when they skip.
set -euo pipefail
cd "$(dirname "$0")/.."
export KILN_DATASETS="${KILN_DATASETS:-$(cd .. && pwd)/shared/datasets}"
# Mesa's Vulkan loader wants a private runtime folder; without one it prints an error per device.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"
  export XDG_RUNTIME_DIR
fi

# The GPU tests and the window test need a Vulkan device: lavapipe where there is no GPU
# (scripts/setup.sh installs it). Say so now, with what the loader sees, rather than after the
# build; and from here on a GPU test without an adapter fails instead of printing SKIPPED.
if ! vulkan_devices="$(vulkaninfo --summary 2>&1)" || ! grep -q "deviceName" <<<"$vulkan_devices"; then
  echo "test.sh: no Vulkan device (run scripts/setup.sh: Debian mesa-vulkan-drivers gives lavapipe)." >&2
  echo "$vulkan_devices" >&2
  exit 1
fi
grep -E "deviceName|driverInfo" <<<"$vulkan_devices" | sed 's/^[[:space:]]*/test.sh: Vulkan /'
export KILN_REQUIRE_GPU=1

# The desktop-login test keeps tokens in a real Secret Service and reads them back with
# libsecret's secret-tool: check for the tools now rather than after the build.
for tool in dbus-run-session gnome-keyring-daemon secret-tool; do
  command -v "$tool" >/dev/null || { echo "test.sh: $tool is missing (run scripts/setup.sh)" >&2; exit 1; }
done

# Third-party validators of exported files (Khronos glTF-Validator, OpenUSD ComplianceChecker),
# installed into a cache outside the clone; the export tests run them through these wrappers.
VALIDATORS="$(scripts/validators.sh | tail -n1)"
export KILN_GLTF_VALIDATOR="$VALIDATORS/validate-gltf"
export KILN_USDZ_VALIDATOR="$VALIDATORS/validate-usdz"

# The hosted API's tests run against a real PostgreSQL and a real S3 server (SeaweedFS), started
# on loopback for this run (and stopped after it, unless they were already running).
# On exit (a failure included) the services this run started are stopped and the gates running
# in the background (below) are killed.
stop_services=""
gate_pids=()
trap 'kill "${gate_pids[@]}" 2>/dev/null || true; [ -z "$stop_services" ] || scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
if services_env="$(scripts/services.sh env 2>/dev/null)"; then
  eval "$services_env"
else
  eval "$(scripts/services.sh start)"
  stop_services=1
fi
export KILN_REQUIRE_SERVICES=1

# The desktop app's web UI (ui/, TypeScript and Vite; npm's lock file pins every package): its
# type check and build into ui/dist, which the app's binary embeds (so before any cargo build),
# then its component tests on mocked IPC (Vitest). The TypeScript types of the IPC are generated
# from the Rust types; `cargo test` below checks the committed ones are current.
npm --prefix ui ci --no-audit --no-fund --loglevel=error
npm --prefix ui run build
npm --prefix ui test

# Style and layering first: they cost seconds and name the file (check_layers: crates depend only
# on earlier ones, no module cycles).
cargo fmt --all --check
scripts/check_layers.py

# Clippy on every crate and target with warnings as errors (the workspace lints deny unwrap,
# expect and panic outside tests), inside the test build below rather than before it: clippy's
# driver compiles the workspace's own crates for the tests (RUSTC_WORKSPACE_WRAPPER, the hook
# `cargo clippy` itself uses for its check build, with CLIPPY_ARGS in cargo-clippy's encoding of
# `-- -D warnings`), so the ~560 dependencies are compiled once instead of a second time in
# check mode (8 min of a separate `cargo clippy` on the two-core CI machine). The encoding is
# cargo-clippy's internal one: the canary below fails the run if a lint warning stops failing
# the build, so that the build cannot silently stop being linted.
CLIPPY_DRIVER="$(rustc --print sysroot)/bin/clippy-driver"
CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
export CLIPPY_ARGS
canary="$(mktemp -d)"
printf 'fn main() {\n    let v = vec![1];\n    if v.len() == 0 {}\n}\n' >"$canary/canary.rs"
if "$CLIPPY_DRIVER" rustc --edition 2024 --crate-type bin -o "$canary/canary" "$canary/canary.rs" >"$canary/log" 2>&1 \
  || ! grep -q "clippy::len-zero. implied by .-D warnings" "$canary/log"; then
  echo "test.sh: clippy-driver with CLIPPY_ARGS=$CLIPPY_ARGS did not deny a clippy warning (len_zero):" >&2
  cat "$canary/log" >&2
  exit 1
fi
rm -rf "$canary"

# Stripe's own Python library (PyPI), for the server's test that checks our webhook signatures
# independently; installed once into the tools cache, like schemathesis.
STRIPE_VERSION="16.1.0"
STRIPE_VENV="${KILN_TOOLS:-$HOME/.cache/kiln-tools}/stripe-venv"
if ! "$STRIPE_VENV/bin/python" -c "import stripe; assert stripe.VERSION == '$STRIPE_VERSION'" >/dev/null 2>&1; then
  echo "test.sh: installing stripe==$STRIPE_VERSION into $STRIPE_VENV" >&2
  python3 -m venv "$STRIPE_VENV"
  "$STRIPE_VENV/bin/pip" install --quiet --disable-pip-version-check "stripe==$STRIPE_VERSION" >&2
fi
export KILN_STRIPE_PYTHON="$STRIPE_VENV/bin/python"

# Unit, integration, GPU-vs-CPU (on lavapipe when there is no GPU) and CLI tests run below on a
# private D-Bus session bus whose Secret Service is gnome-keyring, unlocked with a throwaway
# password and keeping its keyrings in a temporary folder (never the user's own keyring); both end
# with the session. KILN_REQUIRE_KEYRING=1: the login test fails rather than skips without the keyring.
# --all-targets: examples and benches are built (and linted) too; it leaves out doctests, and
# the workspace has none (every crate's doc-test run found 0).
KEYRING_DIR="$(mktemp -d)"
export KEYRING_DIR KILN_REQUIRE_KEYRING=1 CLIPPY_DRIVER
# The desktop app's end-to-end test (src-tauri/tests/e2e.rs) drives the real window under its own
# Xvfb through WebDriver: tauri-driver (crates.io, installed once into the tools cache) over
# WebKitWebDriver (Debian's webkit2gtk-driver), and compares its preview with `kiln render`
# (the CLI binary this same cargo test builds).
PATH="$(scripts/app_e2e_tools.sh | tail -n1):$PATH"
KILN_CLI_BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/debug/kiln"
export PATH KILN_CLI_BIN KILN_REQUIRE_APP_E2E=1
CARGO_TEST=(cargo test --workspace --all-targets --locked --features kiln-protocol/ts)
# The quality gates' test binaries (below).
GATES=(mesh_bunny cli_reconstruct)

# One build for the tests and the quality gates (--timings leaves cargo's report of where the
# build's time went in target/cargo-timings). Its JSON messages name the gates' test binaries;
# diagnostics are still printed as text.
gate_binaries="$(RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER" "${CARGO_TEST[@]}" --no-run --timings \
  --message-format=json-render-diagnostics | python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable") \
            and message["target"]["name"] in sys.argv[1:]:
        print(message["target"]["name"], message["manifest_path"], message["executable"])
' "${GATES[@]}")"

# Quality gates that need optimised code (ignored in the plain test run), from the same build:
# the engine's crates are compiled at opt-level 3 in it (Cargo.toml), so no second, release build
# of the dependencies (7 min on the two-core CI machine). They run beside the tests below, at a
# lower priority: the tests leave a core idle for a quarter of their time and more (waiting on
# windows, servers and subprocesses; measured on the CI machine by what a nice'd build got), which
# the gates take. Each binary runs from its package folder, as cargo runs it (`cargo test -p …
# --test …` would resolve features for those packages alone and rebuild part of the tree), and
# writes to a log printed when it ends. Held-out PSNR of training, mesh geometry (Chamfer,
# F-score) and texture PSNR against bunny-synth's ground truth, on one shared training run
# (kiln-splats' own 2000-step bunny gate trained it a second time: two minutes; it is run by hand,
# like the SfM gates below); then one command from photos to validated GLB/USDZ on bunny-synth (no
# poses given), its poses scored against the exact cameras; a job killed with SIGKILL during
# training that resumes without recomputing its poses; and the real photo sets finishing with
# every photo registered, a model and a verdict, fox's poses scored against its COLMAP poses.
# (The structure-from-motion gates at the default settings, engine/sfm/tests/sfm_datasets.rs, ran
# the same three sets' SfM a second time: six minutes; they are run by hand after SfM changes.)
GATE_LOGS="$(mktemp -d)"
for gate in "${GATES[@]}"; do
  read -r _ manifest executable < <(grep "^$gate " <<<"$gate_binaries") \
    || { echo "test.sh: the $gate test binary was not built" >&2; exit 1; }
  (cd "$(dirname "$manifest")" && exec nice -n 10 "$executable" --ignored --nocapture) >"$GATE_LOGS/$gate.log" 2>&1 &
  gate_pids+=("$!")
done

# The tests (built above), on the D-Bus session with its keyring.
dbus-run-session -- sh -c 'printf kiln-test | XDG_DATA_HOME="$KEYRING_DIR" gnome-keyring-daemon --unlock \
  --components=secrets >/dev/null && exec env RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER" "$@"' sh "${CARGO_TEST[@]}"
rm -rf "$KEYRING_DIR"

# The API against its own OpenAPI document: schemathesis finds no 5xx and no response outside
# the schema (the binary is the one the server's tests just built).
KILN_SERVER_BIN="${CARGO_TARGET_DIR:-target}/debug/kiln-server" scripts/schemathesis.sh

# The gates' results, each in full, and the first failure fails the run.
failed=0
for k in "${!GATES[@]}"; do
  wait "${gate_pids[$k]}" || failed=1
  echo "=== ${GATES[$k]} (quality gates) ==="
  cat "$GATE_LOGS/${GATES[$k]}.log"
done
gate_pids=()
rm -rf "$GATE_LOGS"
[ "$failed" = 0 ] || { echo "test.sh: a quality gate failed (its log is above)" >&2; exit 1; }
