"""Coarse-to-fine against a single stage of the same cost, with real weights (docs/highres.md).

Cost is counted in full-size evaluations: an evaluation at scale s costs (s / final)^2 of one at the final size
(the network's work and memory are linear in the pixel count). Each run's final loss is measured at the final
size with the same targets (the last stage's ``prepare`` equals the single stage's), and for averaged runs at
the average of iterates (the image the run outputs).

Usage: python benchmarks/coarse_to_fine.py --weights weights/vgg16.npz [--size 192] [--budget 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jaxstyle  # noqa: E402
from jaxstyle.gatys import StyleConfig, prepare, run_stylize  # noqa: E402
from jaxstyle.io.images import load_image  # noqa: E402
from jaxstyle.objective import loss_terms  # noqa: E402

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "images")


def runs(size: int, budget: int) -> dict:
    """name -> config overrides, each costing ``budget`` full-size evaluations."""
    half = size // 2
    # Two stages: 4 evaluations at half size cost one at full size.
    two = dict(scales=(half, size), scale_iterations=(2 * budget, budget // 2))
    three = dict(scales=(size // 4, half, size), scale_iterations=(4 * budget, budget, budget // 2))
    return {"single lbfgs-nols": dict(image_size=size, iterations=budget),
            "2 stages lbfgs-nols": two, "3 stages lbfgs-nols": three,
            "single adam": dict(image_size=size, iterations=budget, optimizer="adam"),
            "2 stages adam": dict(two, optimizer="adam"),
            "2 stages adam + average 0.9": dict(two, optimizer="adam", average=0.9)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--budget", type=int, default=100, help="full-size evaluations per run")
    p.add_argument("--only", nargs="*", help="run only these names")
    p.add_argument("--out", default="benchmarks/results/coarse_to_fine.json")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    model = jaxstyle.load_vgg(args.weights)
    content = load_image(os.path.join(EXAMPLES, "chelsea.jpg"))
    style = load_image(os.path.join(EXAMPLES, "starry_night.jpg"))
    final = prepare(model, content, [style], StyleConfig(image_size=args.size))
    results = {}
    for name, overrides in runs(args.size, args.budget).items():
        if args.only and name not in args.only:
            continue
        config = StyleConfig(**overrides)
        t0 = time.perf_counter()
        result = run_stylize(content, [style], model, config, chunk=25)
        terms = loss_terms(np.asarray(result.image), model, final.targets, final.weights, final.spec)
        sizes = config.scales or (args.size,)
        per_stage = config.scale_iterations or (config.iterations,)
        cost = sum(n * (s / args.size) ** 2 for s, n in zip(sizes, per_stage))
        results[name] = {"final_loss": float(terms["total"]), "style": float(terms["style"]),
                         "content": float(terms["content"]), "cost_full_size_evals": cost,
                         "evaluations": result.evaluations, "seconds": time.perf_counter() - t0,
                         "config": {k: v for k, v in overrides.items()}}
        print(f"{name}: loss {results[name]['final_loss']:.4g} (cost {cost:.0f} full-size evaluations, "
              f"{results[name]['seconds']:.0f} s)", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    old = json.load(open(args.out)) if os.path.isfile(args.out) else {}
    with open(args.out, "w") as f:
        json.dump({**old, **results, "_meta": {"size": args.size, "budget": args.budget,
                                               "weights": args.weights}}, f, indent=1)


if __name__ == "__main__":
    main()
