"""Sweep benchmark: is one vmapped run of K settings cheaper than K single runs? And what does vmap cost the
line search?

1. Time per iteration of ``stylize_many`` with K runs divided by K x the time per iteration of one
   ``run_stylize`` (ratio <= 1: the sweep is no slower than running the settings one after another). Each time
   per iteration is (t(N2) - t(N1)) / (N2 - N1) over two warm runs of N1 and N2 iterations in one chunk,
   which cancels compilation, target computation and transfers; the best of ``--repeats`` is kept. The single
   run is timed again for every K, interleaved with the sweep (see ``per_iteration_pair``).
2. Loss-and-gradient evaluations executed per image per iteration, single vs vmapped, for each optimiser
   (:func:`jaxstyle.gatys.sweep.count_evaluations`: a debug callback inside the loss counts every execution, a lane
   of a batched ``lax.cond`` included).

Writes JSON (default benchmarks/results/sweep_cpu.json) and prints markdown tables. Random VGG weights (the
timings do not depend on the weights). The machine may be shared: the load average before and after is recorded.

    python benchmarks/sweep_bench.py                   # K = 1, 4, 16 at 128 px; evaluation counts at 64 px
    python benchmarks/sweep_bench.py --size 48 --ks 1,4 --eval-size 32   # quick check
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from jaxstyle import load_vgg  # noqa: E402
from jaxstyle.atomic import atomic_write  # noqa: E402
from jaxstyle.gatys import run_stylize  # noqa: E402
from jaxstyle.gatys.sweep import DEFAULT_CONFIG, count_evaluations, normalize_settings, run_configs, stylize_many  # noqa: E402


def _ints(text):
    return [int(t) for t in text.split(",") if t.strip()]


def settings_for(k: int) -> dict:
    """K different settings: style weights spread over two decades, one seed each."""
    return {"style_weight": list(np.geomspace(10.0, 1000.0, k)) if k > 1 else [100.0], "seed": list(range(k))}


def per_iteration_pair(single, vmapped, n1: int, n2: int, repeats: int) -> tuple[float, float]:
    """Seconds per iteration of ``single`` and ``vmapped`` (each ``fn(n)`` runs n iterations), interleaved.

    Each repetition times single(n1), vmapped(n1), single(n2), vmapped(n2) in turn, so a change of machine load
    hits both sides alike; per side the best time of each N is kept and the time per iteration is
    (t(N2) - t(N1)) / (N2 - N1), which cancels compilation, targets and transfers.
    """
    single(n2), vmapped(n2)  # compile and warm up (same chunk length as the timed calls)
    best = {(side, n): float("inf") for side in ("single", "vmapped") for n in (n1, n2)}
    for _ in range(repeats):
        for n in (n1, n2):
            for side, fn in (("single", single), ("vmapped", vmapped)):
                t = time.perf_counter()
                fn(n)
                best[side, n] = min(best[side, n], time.perf_counter() - t)
    return tuple((best[side, n2] - best[side, n1]) / (n2 - n1) for side in ("single", "vmapped"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--ks", type=_ints, default=[1, 4, 16])
    p.add_argument("--iterations", type=_ints, default=[2, 8], help="N1,N2 (default: 2,8)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--eval-size", type=int, default=64)
    p.add_argument("--eval-iterations", type=int, default=10)
    p.add_argument("--eval-k", type=int, default=4)
    p.add_argument("--output", default=os.path.join("benchmarks", "results", "sweep_cpu.json"))
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    model = load_vgg("random")
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    n1, n2 = args.iterations

    rows = []
    for size in (args.size,):
        content = rng.random((size, size, 3), np.float32)
        style = rng.random((size, size, 3), np.float32)
        config = dataclasses.replace(DEFAULT_CONFIG, image_size=size)
        single_config = run_configs(normalize_settings(settings_for(1), config, 1), config, model.arch, 1)[0]
        for k in args.ks:
            single, vmapped = per_iteration_pair(
                lambda n: run_stylize(content, style, model, dataclasses.replace(single_config, iterations=n),
                                      chunk=n2),
                lambda n: stylize_many(content, style, settings_for(k), model=model,
                                       config=dataclasses.replace(config, iterations=n), chunk=n2),
                n1, n2, args.repeats)
            rows.append({"size": size, "k": k, "single_s_per_iter": single, "vmapped_s_per_iter": vmapped,
                         "ratio": vmapped / (k * single)})
            print(f"size {size} K {k}: single {single:.3f} s/it, vmapped {vmapped:.3f} s/it, "
                  f"ratio {rows[-1]['ratio']:.2f}", file=sys.stderr, flush=True)

    evals = []
    size = args.eval_size
    content = rng.random((size, size, 3), np.float32)
    style = rng.random((size, size, 3), np.float32)
    settings = settings_for(args.eval_k)
    for optimizer in ("lbfgs", "lbfgs-nols", "adam"):
        config = dataclasses.replace(DEFAULT_CONFIG, image_size=size, iterations=args.eval_iterations,
                                     optimizer=optimizer)
        single = count_evaluations(content, style, settings, model=model, config=config, vmapped=False)
        vmapped = count_evaluations(content, style, settings, model=model, config=config, vmapped=True)
        evals.append({"optimizer": optimizer, "size": size, "k": args.eval_k, "iterations": args.eval_iterations,
                      "single_evals_per_iter": single, "vmapped_evals_per_image_per_iter": vmapped})
        print(f"{optimizer}: {single:.2f} single, {vmapped:.2f} vmapped", file=sys.stderr, flush=True)

    result = {
        "benchmark": "sweep_bench", "command": " ".join(["python", "benchmarks/sweep_bench.py", *(argv or sys.argv[1:])]),
        "jax": jax.__version__, "backend": jax.default_backend(), "devices": jax.device_count(),
        "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "iterations_n1_n2": [n1, n2], "repeats": args.repeats, "timings": rows, "evaluations": evals,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with atomic_write(args.output, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    print("| size | K | single run s/iter | vmapped s/iter | vmapped / (K x single) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['k']} | {r['single_s_per_iter']:.3f} | {r['vmapped_s_per_iter']:.3f} | "
              f"{r['ratio']:.2f} |")
    print()
    print(f"| optimizer | single: evaluations / iteration | vmapped (K={args.eval_k}): evaluations / image / iteration |")
    print("|---|---|---|")
    for e in evals:
        print(f"| {e['optimizer']} | {e['single_evals_per_iter']:.2f} | {e['vmapped_evals_per_image_per_iter']:.2f} |")
    print(f"\nload average before {load_before[0]:.1f}, after {result['loadavg_after'][0]:.1f} "
          f"({os.cpu_count()} CPUs); wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
