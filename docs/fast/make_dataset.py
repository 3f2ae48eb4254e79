#!/usr/bin/env python3
"""Build the small training set of the README's fast-style example: 160 crops of 4 local photos.

Random square crops (1/3 to all of the short side), resized to 160 px, every other one mirrored, from
astronaut.jpg, coffee.jpg and rocket.jpg (examples/images) and matplotlib's grace_hopper.jpg. chelsea.jpg, the
image the README shows the result on, is not among them. Usage: python docs/fast/make_dataset.py OUTDIR
"""
import os
import sys

import matplotlib
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = [os.path.join(ROOT, "examples", "images", n) for n in ("astronaut.jpg", "coffee.jpg", "rocket.jpg")]
SOURCES.append(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    rng, n = np.random.default_rng(0), 0
    for src in SOURCES:
        im = Image.open(src).convert("RGB")
        w, h = im.size
        for k in range(40):
            c = int(rng.integers(min(w, h) // 3, min(w, h) + 1))
            x, y = int(rng.integers(0, w - c + 1)), int(rng.integers(0, h - c + 1))
            crop = im.crop((x, y, x + c, y + c)).resize((160, 160), Image.Resampling.LANCZOS)
            if k % 2:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.save(os.path.join(out, f"{n:04d}.jpg"), quality=92)
            n += 1


if __name__ == "__main__":
    main(sys.argv[1])
