"""Host-dispatched steps vs one compiled while_loop per chunk, per optimiser (run_stylize's two loop modes).

XLA CPU runs convolutions inside a while_loop body several times slower than the same program outside one
(jax-ml/jax#12868), so on CPU run_stylize dispatches one jitted step per iteration (host_loop=True, the CPU
default). Usage: python benchmarks/host_loop.py [--size 128] [--iterations 8]
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jaxstyle  # noqa: E402
from jaxstyle.gatys import StyleConfig, run_stylize  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iterations", type=int, default=8)
    args = p.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = jaxstyle.load_vgg("random")
    rng = np.random.default_rng(0)
    content = rng.random((args.size, args.size, 3), np.float32)
    style = rng.random((args.size, args.size, 3), np.float32)
    print(f"| optimizer | loop | s per iteration | s per evaluation | evaluations | load avg |")
    print("|---|---|---|---|---|---|")
    for opt in ("lbfgs-nols", "lbfgs", "adam"):
        for host in (True, False):
            warm = StyleConfig(image_size=args.size, iterations=2, optimizer=opt)
            run_stylize(content, style, model, warm, chunk=args.iterations, host_loop=host)  # compile
            config = StyleConfig(image_size=args.size, iterations=args.iterations, optimizer=opt)
            t = time.perf_counter()
            r = run_stylize(content, style, model, config, chunk=args.iterations, host_loop=host)
            dt = time.perf_counter() - t
            loop = "host-dispatched steps" if host else "while_loop chunk"
            print(f"| {opt} | {loop} | {dt / r.iterations:.3f} | {dt / r.evaluations:.3f} | {r.evaluations} | "
                  f"{os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
