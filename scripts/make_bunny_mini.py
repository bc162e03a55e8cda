#!/usr/bin/env python3
"""Derive engine/fixtures/bunny-mini from the shared bunny-synth data set.

    python3 scripts/make_bunny_mini.py [BUNNY_SYNTH_DIR] [OUT_DIR]

Keeps 12 of the 80 views (3 of them in the test split), box-downscales images and masks by 4
(800x600 -> 200x150), scales the intrinsics by the same factor and copies gt_mesh.ply. Needs Pillow.
"""
import json
import os
import shutil
import sys

from PIL import Image

# Spread around the spiral; 0, 8 and 40 are test frames in bunny-synth (i % 8 == 0).
FRAMES = [0, 3, 8, 11, 17, 22, 27, 33, 40, 46, 53, 61]
FACTOR = 4
JPEG_QUALITY = 90


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "datasets", "bunny-synth")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "engine", "tests", "fixtures", "bunny-mini")
    meta = json.load(open(os.path.join(src, "transforms.json")))
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    os.makedirs(os.path.join(out, "masks"), exist_ok=True)
    for key in ("fl_x", "fl_y", "cx", "cy"):
        meta[key] = meta[key] / FACTOR
    meta["w"] = meta["w"] // FACTOR
    meta["h"] = meta["h"] // FACTOR
    frames = [meta["frames"][i] for i in FRAMES]
    kept = {f["file_path"] for f in frames}
    for key in ("train_filenames", "val_filenames", "test_filenames"):
        meta[key] = [name for name in meta[key] if name in kept]
    for frame in frames:
        stem = os.path.splitext(os.path.basename(frame["file_path"]))[0]
        img = Image.open(os.path.join(src, frame["file_path"])).convert("RGB").reduce(FACTOR)
        img.save(os.path.join(out, frame["file_path"]), quality=JPEG_QUALITY)
        mask = Image.open(os.path.join(src, "masks", stem + ".png")).convert("L").reduce(FACTOR)
        mask.save(os.path.join(out, "masks", stem + ".png"), optimize=True)
    meta["frames"] = frames
    with open(os.path.join(out, "transforms.json"), "w") as f:
        json.dump(meta, f, indent=1)
    shutil.copyfile(os.path.join(src, "gt_mesh.ply"), os.path.join(out, "gt_mesh.ply"))


if __name__ == "__main__":
    main()
