#!/usr/bin/env python3
"""Build the small training set of the README's fast-style example: random crops of local photos.

Random square crops (1/3 to all of the short side), resized to 160 px, every other one mirrored, from
astronaut.jpg, coffee.jpg and rocket.jpg (examples/images), matplotlib's grace_hopper.jpg, and any further
photos given on the command line (the README run adds scikit-learn's china.jpg and flower.jpg and scikit-image's
motorcycle_left.png, taken from their PyPI wheels without installing them, see docs/fast.md). chelsea.jpg, the
image the README shows the results on, is never among them.

Usage: python docs/fast/make_dataset.py OUTDIR [--per-image N] [EXTRA_PHOTO ...]
"""
import argparse
import os

import matplotlib
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = [os.path.join(ROOT, "examples", "images", n) for n in ("astronaut.jpg", "coffee.jpg", "rocket.jpg")]
SOURCES.append(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("extra", nargs="*", help="further photos to crop from")
    p.add_argument("--per-image", type=int, default=40)
    args = p.parse_intermixed_args()
    if any(os.path.basename(e).startswith("chelsea") for e in args.extra):
        raise SystemExit("chelsea is the held-out test image; do not train on it")
    os.makedirs(args.out, exist_ok=True)
    rng, n = np.random.default_rng(0), 0
    for src in SOURCES + args.extra:
        im = Image.open(src).convert("RGB")
        w, h = im.size
        for k in range(args.per_image):
            c = int(rng.integers(min(w, h) // 3, min(w, h) + 1))
            x, y = int(rng.integers(0, w - c + 1)), int(rng.integers(0, h - c + 1))
            crop = im.crop((x, y, x + c, y + c)).resize((160, 160), Image.Resampling.LANCZOS)
            if k % 2:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.save(os.path.join(args.out, f"{n:04d}.jpg"), quality=92)
            n += 1
    print(f"{n} crops of {len(SOURCES) + len(args.extra)} photos in {args.out}")


if __name__ == "__main__":
    main()
