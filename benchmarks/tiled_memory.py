"""Compiled temporaries of the whole-image step against one tile's programs of a tiled run (docs/highres.md).

Lowers and compiles, without running them: the jitted step run_stylize runs untiled, and the per-tile forward
and pull-back programs of ``--tile`` (jaxstyle.gatys.tiled) for the largest window; prints each one's
``compiled.memory_analysis()`` temporaries. The targets are computed tile by tile (a whole-image forward pass at
2048 px would need several GiB on its own).

Usage: python benchmarks/tiled_memory.py --weights weights/vgg16.npz [--size 2048] [--tile 512]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jaxstyle  # noqa: E402
from jaxstyle import gatys  # noqa: E402
from jaxstyle.gatys import tiled as driver  # noqa: E402
from jaxstyle.gatys.run import start_state  # noqa: E402
from benchmarks import common  # noqa: E402
from jaxstyle.objective import tiled  # noqa: E402

MB = 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="random")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--lbfgs-memory", type=int, default=10)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxstyle.RandomWeightsWarning)
        model = jaxstyle.load_vgg(args.weights)
    image = np.random.default_rng(0).uniform(size=(args.size, args.size, 3)).astype(np.float32)
    config = gatys.StyleConfig(image_size=None, lbfgs_memory=args.lbfgs_memory, tile=args.tile)
    problem = gatys.prepare(model, image, [image], config)
    state = start_state(problem, config, None, None)
    whole = common.step_memory(model, problem, config, state)
    plan = tiled.plan(model, problem.shape, problem.targets, problem.spec, args.tile)
    box, window = max(plan.tiles, key=lambda t: (t[1][1] - t[1][0]) * (t[1][3] - t[1][2]))
    parts, corner, sizes = driver._parts(), tiled._corner(box, window), tiled._sizes(box, window)
    zeros = {l: jnp.zeros(problem.targets.grams[l].shape[-2:]) for l in plan.style_layers}
    forward = parts.forward.lower(model, state.x, problem.targets, problem.weights, corner, (zeros, jnp.float32(0)),
                                  plan_=plan, **sizes).compile().memory_analysis()
    pull = parts.pull.lower(model, state.x, problem.targets, problem.weights, zeros, corner, jnp.zeros_like(state.x),
                            plan_=plan, **sizes).compile().memory_analysis()
    print(f"{model.arch} {args.size}x{args.size}: whole-image step {whole.temp_size_in_bytes / MB:,.0f} MB; "
          f"{len(plan.tiles)} tiles of {args.tile} px, largest window {sizes['window']}: forward "
          f"{forward.temp_size_in_bytes / MB:,.0f} MB, pull-back {pull.temp_size_in_bytes / MB:,.0f} MB "
          "(compiled temporaries)")


if __name__ == "__main__":
    main()
