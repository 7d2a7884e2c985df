#!/usr/bin/env python3
"""Writes a synthetic 10-class ImageFolder of 32x32 RGB shapes (circle, square, triangle,
diamond, cross, ring, horizontal bar, vertical bar, X, L) — each drawn at a random position,
size and colour over a random noisy background — with train/ and val/ splits (240 + 60 per
class, fixed seed). A held-out check of `vgg train`'s from-scratch defaults, which were
chosen on the digits set (scripts/make_digits.py).

    python scripts/make_shapes.py /tmp/shapes     # needs numpy and pillow
"""

import pathlib
import sys

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["circle", "square", "triangle", "diamond", "cross", "ring", "hbar", "vbar", "x", "ell"]


def draw(kind, rng):
    background = rng.integers(0, 256, 3)
    noise = rng.normal(0, 25, (32, 32, 3))
    image = Image.fromarray(np.clip(background + noise, 0, 255).astype(np.uint8), "RGB")
    pen = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in (background + rng.integers(90, 166, 3)) % 256)
    r = int(rng.integers(7, 13))
    cx, cy = (int(v) for v in rng.integers(r + 1, 32 - r - 1, 2))
    box = [cx - r, cy - r, cx + r, cy + r]
    width = max(2, r // 3)
    if kind == "circle":
        pen.ellipse(box, fill=colour)
    elif kind == "square":
        pen.rectangle(box, fill=colour)
    elif kind == "triangle":
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif kind == "diamond":
        pen.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    elif kind == "cross":
        pen.rectangle([cx - width, cy - r, cx + width, cy + r], fill=colour)
        pen.rectangle([cx - r, cy - width, cx + r, cy + width], fill=colour)
    elif kind == "ring":
        pen.ellipse(box, outline=colour, width=width)
    elif kind == "hbar":
        pen.rectangle([cx - r, cy - width, cx + r, cy + width], fill=colour)
    elif kind == "vbar":
        pen.rectangle([cx - width, cy - r, cx + width, cy + r], fill=colour)
    elif kind == "x":
        pen.line([(cx - r, cy - r), (cx + r, cy + r)], fill=colour, width=width)
        pen.line([(cx - r, cy + r), (cx + r, cy - r)], fill=colour, width=width)
    else:  # an L
        pen.rectangle([cx - r, cy - r, cx - r + 2 * width, cy + r], fill=colour)
        pen.rectangle([cx - r, cy + r - 2 * width, cx + r, cy + r], fill=colour)
    return image


def main(out: pathlib.Path) -> None:
    rng = np.random.default_rng(0)
    for label, kind in enumerate(CLASSES):
        for i in range(300):
            split = "train" if i < 240 else "val"
            folder = out / split / f"{label}_{kind}"
            folder.mkdir(parents=True, exist_ok=True)
            draw(kind, rng).save(folder / f"{i:03d}.png")
    print(f"{out}: 2400 training and 600 validation images, 10 classes")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/shapes"))
