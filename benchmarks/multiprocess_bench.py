"""Two processes vs one with the same total devices: a sweep's time per iteration.

Runs the same ``jaxstyle sweep`` (K runs, random VGG weights) twice on CPU: once as one process with 4 forced
CPU devices, once as two processes with 2 forced CPU devices each (gloo collectives, one 4-device mesh). Each
run uses ``--profile``, whose step time is the wall time of steady-state iterations (the first chunk, which
compiles, is left out): the time per iteration of all K runs. Repeated ``--repeats`` times, alternating, the
best kept. Writes JSON (default benchmarks/results/multiprocess_cpu.json) and prints a markdown table.

On one machine the two processes share its cores with each other (and with anyone else): this measures the
overhead of the multi-process path (gloo all-gathers of the per-run results every chunk, two Python drivers),
not a speed-up. Speed-ups come from more hardware: more hosts.

    python benchmarks/multiprocess_bench.py                       # K = 8, 64 px, 60 iterations, 3 repeats
    python benchmarks/multiprocess_bench.py --size 32 --k 4 --iterations 30 --repeats 1   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = "import sys; from jaxstyle.cli import main; sys.exit(main())"
LIMIT = 1800


def _env(devices: int) -> dict:
    return {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sweep_args(work: str, args, tag: str) -> list[str]:
    weights = ",".join(str(10.0 ** (k % 4)) for k in range(args.k))
    return ["sweep", "--content", os.path.join(work, "c.png"), "--style", os.path.join(work, "s.png"), "--zip",
            "--style-weight", weights, "--seed", ",".join(str(k) for k in range(args.k)), "--weights", "random",
            "--image-size", str(args.size), "--iterations", str(args.iterations), "--no-target-cache", "-q",
            "-o", os.path.join(work, tag), "--profile", os.path.join(work, tag + ".prof")]


def _step_seconds(work: str, tag: str) -> float:
    with open(os.path.join(work, tag + ".prof", "profile.json"), encoding="utf-8") as f:
        return json.load(f)["step_seconds"]


def one_process(work: str, args, tag: str) -> float:
    subprocess.run([sys.executable, "-c", PROGRAM, *_sweep_args(work, args, tag)], env=_env(4), check=True,
                   timeout=LIMIT)
    return _step_seconds(work, tag)


def two_processes(work: str, args, tag: str) -> float:
    port = _port()
    procs = [subprocess.Popen([sys.executable, "-c", PROGRAM, *_sweep_args(work, args, tag), "--coordinator",
                               f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)], env=_env(2))
             for i in range(2)]
    try:
        codes = [p.wait(timeout=LIMIT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(codes):
        raise SystemExit(f"two-process sweep failed: {codes}")
    return _step_seconds(work, tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "multiprocess_cpu.json"))
    args = parser.parse_args()
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as work:
        rng = np.random.default_rng(0)
        for name in ("c.png", "s.png"):
            pixels = (rng.random((args.size, args.size, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(work, name))
        one, two = [], []
        for r in range(args.repeats):
            one.append(one_process(work, args, f"one{r}"))
            two.append(two_processes(work, args, f"two{r}"))
    load.append(os.getloadavg()[0])
    result = {"size": args.size, "k": args.k, "iterations": args.iterations, "repeats": args.repeats,
              "one_process_4_devices_s_per_iter": one, "two_processes_2x2_devices_s_per_iter": two,
              "best_ratio_two_over_one": min(two) / min(one), "cpus": os.cpu_count(), "load_average": load,
              "machine": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print("| setup | s/iteration (best of %d) | all |" % args.repeats)
    print("|---|---|---|")
    print(f"| 1 process x 4 CPU devices | {min(one):.3f} | {', '.join(f'{t:.3f}' for t in one)} |")
    print(f"| 2 processes x 2 CPU devices | {min(two):.3f} | {', '.join(f'{t:.3f}' for t in two)} |")
    print(f"two / one = {result['best_ratio_two_over_one']:.2f}; {os.cpu_count()} CPUs, load average {load}")


if __name__ == "__main__":
    main()
