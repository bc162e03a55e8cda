#!/usr/bin/env bash
# Renders Kiln's hard synthetic capture sets (issue 17) with Blender Cycles, one size at a time:
#
#   scripts/hard_sets.sh full [SET...]   60 views (quarter: 24) at 640×480 into
#                                        ${KILN_DATASETS:-../shared/datasets}/hard/<set>
#   scripts/hard_sets.sh ci [SET...]     24 views at 320×240, JPEG q80, into engine/fixtures/hard/<set>
#                                        (committed, so CI needs no Blender)
#   scripts/hard_sets.sh full|ci --docs-only [SET...]
#                                        rewrites the sets' transforms.json, gt.json, gt_mesh.ply and
#                                        README.md in place without rendering (after a change to them)
#
# SETs: white-mug glossy-vase dark-object quarter (default: all). Needs Debian's `blender` (3.4.1:
# `apt-get install --no-install-recommends blender`; not part of scripts/setup.sh) and a python3
# with numpy and Pillow for the shared convention check (`check_dataset.py`), whose result goes
# into each set's README. Each set is rendered into a temporary folder beside its destination and
# moved into place only when its check passed. Runs under `nice -n 10`; deterministic (seed 1).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
datasets="${KILN_DATASETS:-$root/../shared/datasets}"
size="${1:-}"
shift || true
docs_only=""
sets=()
for arg in "$@"; do
  if [ "$arg" = --docs-only ]; then docs_only=--docs-only; else sets+=("$arg"); fi
done
[ ${#sets[@]} -gt 0 ] || sets=(white-mug glossy-vase dark-object quarter)

# Seed of every set's cameras and of Cycles' sampling: fixed, so a set renders the same each time.
seed=1
case "$size" in
  full)
    dest="$datasets/hard"; width=640; height=480; quality=92
    # Without OpenImageDenoise in Debian's Blender, 24 samples keep the noise to about one grey
    # level on flat areas while all four sets render in about half an hour on two cores.
    samples=24 ;;
  ci)
    dest="$root/engine/fixtures/hard"; width=320; height=240; quality=80
    # Cheap at this size; less noise also keeps each set's JPEGs within 400 KB.
    samples=48 ;;
  *)
    echo "usage: $0 full|ci [white-mug glossy-vase dark-object quarter]" >&2
    exit 2 ;;
esac

command -v blender >/dev/null || { echo "blender is not installed (apt-get install --no-install-recommends blender)" >&2; exit 1; }
check="$datasets/check_dataset.py"
[ -f "$check" ] || { echo "the convention check $check is missing (set KILN_DATASETS)" >&2; exit 1; }
python=""
for candidate in "${PYTHON:-python3}" python3 /usr/bin/python3; do
  if "$candidate" -c 'import numpy, PIL' 2>/dev/null; then python="$candidate"; break; fi
done
[ -n "$python" ] || { echo "no python3 with numpy and Pillow for $check (apt-get install python3-numpy python3-pil)" >&2; exit 1; }

mkdir -p "$dest"
for set in "${sets[@]}"; do
  views=60
  [ "$size" = ci ] && views=24
  [ "$set" = quarter ] && views=24
  tmp="$dest/.$set.tmp"
  if [ -n "$docs_only" ]; then
    [ -d "$dest/$set/images" ] || { echo "$set: nothing rendered in $dest/$set to document" >&2; exit 1; }
    tmp="$dest/$set"
  else
    rm -rf "$tmp"
  fi
  start=$(date +%s)
  nice -n 10 blender -b --factory-startup --python-exit-code 1 -P "$here/hard_sets/make_set.py" -- \
    --set "$set" --out "$tmp" --views "$views" --width "$width" --height "$height" \
    --samples "$samples" --seed "$seed" --jpeg-quality "$quality" \
    --check-script "$check" --check-python "$python" $docs_only >"$dest/.$set.log" 2>&1 \
    || { tail -20 "$dest/.$set.log" >&2; echo "$set: rendering failed (log: $dest/.$set.log)" >&2; exit 1; }
  if [ -z "$docs_only" ]; then
    rm -rf "${dest:?}/$set"
    mv "$tmp" "$dest/$set"
  fi
  rm -f "$dest/.$set.log"
  echo "$set: $views views ${width}x${height} in $(( $(date +%s) - start )) s -> $dest/$set ($(du -sh "$dest/$set" | cut -f1))"
done
