"""Draws Kiln's app icon (a kiln's arched mouth glowing around a cube) at the sizes Tauri's
Linux bundle uses, into icons/. Run from the repo root: python3 scripts/app/make_icons.py
(needs Pillow). The PNGs are committed; this script is how they were made."""

from pathlib import Path

from PIL import Image, ImageDraw

SIZES = {"32x32.png": 32, "128x128.png": 128, "128x128@2x.png": 256, "icon.png": 512}
# Drawn at 4x the largest size, then downsampled: smooth edges without an antialiasing library.
SUPERSAMPLE = 4


def draw(size: int) -> Image.Image:
    s = size * SUPERSAMPLE
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(image)
    pad = s * 0.06
    d.rounded_rectangle([pad, pad, s - pad, s - pad], radius=s * 0.2, fill=(32, 30, 36, 255))
    # The kiln's arched mouth, glowing.
    left, right, top, bottom = s * 0.22, s * 0.78, s * 0.26, s * 0.8
    d.rounded_rectangle([left, top, right, bottom], radius=(right - left) / 2, fill=(240, 120, 40, 255))
    inset = s * 0.06
    d.rounded_rectangle(
        [left + inset, top + inset, right - inset, bottom], radius=(right - left) / 2 - inset, fill=(255, 196, 92, 255)
    )
    # A cube inside: three faces.
    cx, cy, r = s * 0.5, s * 0.6, s * 0.14
    top_face = [(cx, cy - r), (cx + r, cy - r / 2), (cx, cy), (cx - r, cy - r / 2)]
    left_face = [(cx - r, cy - r / 2), (cx, cy), (cx, cy + r), (cx - r, cy + r / 2)]
    right_face = [(cx + r, cy - r / 2), (cx, cy), (cx, cy + r), (cx + r, cy + r / 2)]
    d.polygon(top_face, fill=(250, 246, 240, 255))
    d.polygon(left_face, fill=(200, 190, 182, 255))
    d.polygon(right_face, fill=(150, 140, 134, 255))
    d.rectangle([left, bottom - s * 0.02, right, bottom + s * 0.03], fill=(32, 30, 36, 255))
    return image.resize((size, size), Image.LANCZOS)


def main() -> None:
    out = Path("icons")
    out.mkdir(exist_ok=True)
    for name, size in SIZES.items():
        draw(size).save(out / name)


if __name__ == "__main__":
    main()
