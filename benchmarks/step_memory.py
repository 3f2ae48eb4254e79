"""Compiled temporaries per pixel of one loss-and-gradient step (docs/highres.md, "Memory").

Lowers and compiles, without running it, the jitted step run_stylize runs, at two sizes per network, and prints
``compiled.memory_analysis()``'s temporary bytes and their slope in bytes per pixel: the number
jaxstyle.gatys.memory.EVALUATION_BYTES_PER_PIXEL holds. Random weights: the buffers depend only on the shapes.

Usage: python benchmarks/step_memory.py [--sizes 256 384] [--archs vgg19 vgg16] [--lbfgs-memory 5] [--remat]
(``--remat``: the rematerialised step, jaxstyle.gatys.memory.REMAT_EVALUATION_BYTES_PER_PIXEL)
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jaxstyle  # noqa: E402
from jaxstyle import gatys  # noqa: E402
from jaxstyle.gatys.run import start_state  # noqa: E402
from benchmarks import common  # noqa: E402


def temporaries(model, side: int, lbfgs_memory: int, remat: bool = False) -> int:
    """XLA's temporary bytes of the compiled step at ``side`` x ``side`` pixels, default layers."""
    config = gatys.StyleConfig(image_size=None, lbfgs_memory=lbfgs_memory, remat=remat)
    content = np.random.default_rng(0).uniform(size=(side, side, 3)).astype(np.float32)
    problem = gatys.prepare(model, content, [content], config)
    return common.step_memory(model, problem, config, start_state(problem, config, None, None)).temp_size_in_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[256, 384])
    parser.add_argument("--archs", nargs="+", default=["vgg19", "vgg16"])
    parser.add_argument("--lbfgs-memory", type=int, default=5)
    parser.add_argument("--remat", action="store_true", help="rematerialise each VGG block (StyleConfig.remat)")
    args = parser.parse_args()
    for arch in args.archs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jaxstyle.RandomWeightsWarning)
            model = jaxstyle.load_vgg("random", arch=arch)
        (a, ta), (b, tb) = [(s * s, temporaries(model, s, args.lbfgs_memory, args.remat)) for s in args.sizes]
        slope = (tb - ta) / (b - a)
        print(f"{arch}: temporaries {ta / 1e6:.1f} MB at {args.sizes[0]}², {tb / 1e6:.1f} MB at {args.sizes[1]}²; "
              f"slope {slope:.0f} B/px, intercept {(ta - slope * a) / 1e6:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
