#!/usr/bin/env bash
# Installs the third-party validators for Kiln's exported files into a cache outside the clone
# (idempotent) and writes two wrappers there:
#   validate-gltf FILE   Khronos glTF-Validator (npm `gltf-validator`): prints the JSON report,
#                        exits non-zero when it has any error.
#   validate-usdz FILE   OpenUSD's UsdUtils.ComplianceChecker(arkit=True) (PyPI `usd-core`): prints
#                        errors, failed checks and warnings, exits non-zero on any error or failed
#                        check.
# Prints the wrappers' folder on stdout (last line), so callers can do:
#   tools="$(scripts/validators.sh | tail -n1)"
# Needs node + npm and python3 (with venv); reaches the npm registry and PyPI on first run only.
set -euo pipefail

TOOLS="${KILN_TOOLS:-$HOME/.cache/kiln-tools}"
# usd-core 26.5 is the last release with UsdUtils.ComplianceChecker (later ones removed it).
USD_CORE_VERSION="26.5"
GLTF_VALIDATOR_VERSION="2.0.0-dev.3.10"
mkdir -p "$TOOLS/bin"

if [ ! -f "$TOOLS/npm/node_modules/gltf-validator/package.json" ]; then
  echo "validators: installing gltf-validator $GLTF_VALIDATOR_VERSION into $TOOLS/npm" >&2
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" "gltf-validator@$GLTF_VALIDATOR_VERSION" >&2
fi

if ! "$TOOLS/usd-venv/bin/python" -c "import pxr.UsdUtils" 2>/dev/null; then
  echo "validators: installing usd-core==$USD_CORE_VERSION into $TOOLS/usd-venv" >&2
  python3 -m venv "$TOOLS/usd-venv"
  "$TOOLS/usd-venv/bin/pip" install --quiet --disable-pip-version-check "usd-core==$USD_CORE_VERSION" >&2
fi

cat > "$TOOLS/bin/validate-gltf.js" <<'JS'
// Validates one .glb / .gltf with the Khronos glTF-Validator; prints the report as JSON.
const fs = require('fs');
const path = require('path');
const validator = require(process.env.KILN_GLTF_VALIDATOR_MODULE);
const file = process.argv[2];
if (!file) { console.error('usage: validate-gltf FILE'); process.exit(2); }
const dir = path.dirname(file);
validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
  uri: path.basename(file),
  maxIssues: 0,
  externalResourceFunction: (uri) => new Promise((resolve, reject) => {
    fs.readFile(path.join(dir, decodeURIComponent(uri)), (err, data) => err ? reject(err.toString()) : resolve(new Uint8Array(data)));
  }),
}).then((report) => {
  console.log(JSON.stringify(report, null, 2));
  process.exit(report.issues.numErrors > 0 ? 1 : 0);
}).catch((error) => { console.error('validation failed:', error); process.exit(1); });
JS

cat > "$TOOLS/bin/validate-gltf" <<SH
#!/usr/bin/env bash
KILN_GLTF_VALIDATOR_MODULE="$TOOLS/npm/node_modules/gltf-validator" exec node "$TOOLS/bin/validate-gltf.js" "\$@"
SH

cat > "$TOOLS/bin/validate-usdz.py" <<'PY'
"""Checks one .usdz / .usd* file with OpenUSD's ComplianceChecker in ARKit mode."""
import json
import sys
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
from pxr import UsdUtils  # noqa: E402

if len(sys.argv) != 2:
    print("usage: validate-usdz FILE", file=sys.stderr)
    sys.exit(2)
checker = UsdUtils.ComplianceChecker(arkit=True, skipARKitRootLayerCheck=False,
                                     rootPackageOnly=False, skipVariants=False, verbose=False)
checker.CheckCompliance(sys.argv[1])
report = {"file": sys.argv[1], "errors": checker.GetErrors(),
          "failed_checks": checker.GetFailedChecks(), "warnings": checker.GetWarnings()}
print(json.dumps(report, indent=2))
sys.exit(1 if report["errors"] or report["failed_checks"] else 0)
PY

cat > "$TOOLS/bin/validate-usdz" <<SH
#!/usr/bin/env bash
exec "$TOOLS/usd-venv/bin/python" "$TOOLS/bin/validate-usdz.py" "\$@"
SH

chmod +x "$TOOLS/bin/validate-gltf" "$TOOLS/bin/validate-usdz"
echo "$TOOLS/bin"
