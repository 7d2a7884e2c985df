"""Writes scikit-learn's 8x8 handwritten digits (1797 images, 10 classes; bundled with
scikit-learn, no download) as a 32x32 RGB PNG ImageFolder with train/ and val/ splits
(80/20, stratified, fixed seed): a small real dataset for `vgg train` on a CPU.

    python scripts/make_digits.py /tmp/digits     # needs numpy, pillow, scikit-learn
"""

import pathlib
import sys

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def main(out: pathlib.Path) -> None:
    digits = load_digits()
    images = (digits.images / 16.0 * 255.0).round().astype(np.uint8)
    train, val = train_test_split(
        np.arange(len(images)), test_size=0.2, stratify=digits.target, random_state=0
    )
    for split, indices in (("train", train), ("val", val)):
        for i in indices:
            folder = out / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(images[i], mode="L").resize((32, 32), Image.BILINEAR)
            image.convert("RGB").save(folder / f"{i:04d}.png")
    print(f"{out}: {len(train)} training and {len(val)} validation images, 10 classes")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_digits.py OUT_DIR")
    main(pathlib.Path(sys.argv[1]))
