#!/usr/bin/env bash
# The test suite, as README.md documents it and .ci/run calls it.
# Dataset tests read $KILN_DATASETS (default ../shared/datasets) and say loudly when they skip.
set -euo pipefail
cd "$(dirname "$0")/.."
export KILN_DATASETS="${KILN_DATASETS:-$(cd .. && pwd)/shared/datasets}"
# Tests run on lavapipe when there is no GPU: allow wgpu a software adapter.
export KILN_ALLOW_SOFTWARE_GPU=1
cargo test --workspace --locked
