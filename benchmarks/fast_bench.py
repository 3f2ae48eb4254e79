"""Fast style transfer speed: jaxstyle vs PyTorch (pytorch/examples' network and losses), same machine, one run.

For each size (256, 512 by default) and side: train images/s (one Adam step on a batch of 4 crops: network
forward, VGG16 features of output and content, Johnson's losses, backward, update) and apply images/s (network
forward on a batch of 4). Both sides use the same random VGG16 ``.npz``, all CPU threads, float32, warm-up steps
excluded; the two sides' timed calls alternate, so a load that changes during the run affects both alike. ``python benchmarks/fast_bench.py [--sizes 256 512] [--steps 5] [--out benchmarks/results/fast.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BATCH = 4


def vgg16_file() -> str:
    from jaxstyle.nets import vgg, weights

    path = os.path.join(tempfile.gettempdir(), "jaxstyle-bench", "vgg16_random_seed0.npz")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        params = weights.random_params("vgg16")["params"]
        convs = {name: (p["kernel"], p["bias"]) for name, p in params.items()}
        weights.save_converted(path, "vgg16", convs, vgg.PRESETS["torchvision"], source="random_params(vgg16)",
                               source_sha256="", source_format="random")
    return path


def timed_pair(fns: dict, steps: int, warmup: int = 2) -> dict:
    """Median seconds per call of each function (each must block until done), the calls alternating between
    the functions so that both sides see the same machine load (the machine this was built on is shared)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {k: [] for k in fns}
    for _ in range(steps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def jax_side(size: int, weights: str) -> dict:
    """The jaxstyle train step and apply as blocking callables (``train``, ``apply``)."""
    import jax

    import jaxstyle
    from jaxstyle.fast import config as config_lib, objective, train
    from jaxstyle.fast.inference import _jitted, prepare

    cfg = config_lib.FastConfig(image_size=size, style_size=size, batch_size=BATCH)
    rng = np.random.default_rng(0)
    vgg = jaxstyle.load_vgg(weights, arch="vgg16")
    obj = objective.make_objective(vgg, [rng.random((size, size, 3)).astype(np.float32)], cfg)
    net, mesh = train.network(cfg, 1), train.data_mesh()
    replicated, _ = train.shardings(mesh)
    obj = jax.device_put(obj, replicated)
    box = {"state": jax.device_put(train.init_state(net, cfg), replicated)}
    step = train.compile_step(net, cfg, mesh)
    batch = train.put_batch((rng.random((BATCH, size, size, 3)) * 255).astype(np.uint8), np.zeros(BATCH, np.int32), mesh)

    def train_once():
        box["state"], metrics = step(obj, box["state"], batch)
        jax.block_until_ready(metrics)

    x = jax.numpy.asarray(rng.random((BATCH, size, size, 3)).astype(np.float32))
    fwd = _jitted(net, False)
    w = jax.numpy.ones((1,), jax.numpy.float32)

    def apply_once():  # the current parameters (the step donates, so deletes, the state it is given), prepared
        # in every call as jaxstyle.fast.apply does (the Winograd kernels' transforms, a few ms)
        fwd(prepare(net, box["state"].params), x, w).block_until_ready()

    return {"train": train_once, "apply": apply_once}


def torch_side(size: int, weights: str) -> dict:
    import torch

    from benchmarks.torch_fast import JohnsonTrainer, TransformerNet
    from benchmarks.torch_gatys import TorchVGG

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    vgg = TorchVGG(weights)
    net = TransformerNet()
    style = torch.tensor(rng.random((1, 3, size, size)), dtype=torch.float32)
    trainer = JohnsonTrainer(net, vgg, style)
    x = torch.tensor(rng.random((BATCH, 3, size, size)), dtype=torch.float32)

    def apply_once():
        with torch.no_grad():
            net(x)

    return {"train": lambda: trainer.step(x), "apply": apply_once, "version": torch.__version__}


def measure(size: int, steps: int, weights: str) -> dict:
    j, t = jax_side(size, weights), torch_side(size, weights)
    row: dict = {"size": size, "jax": {}, "torch": {"torch": t["version"]}}
    for what in ("train", "apply"):
        sec = timed_pair({"jax": j[what], "torch": t[what]}, steps)
        for side in ("jax", "torch"):
            row[side][f"{what}_images_per_s"] = BATCH / sec[side]
            row[side]["train_step_s" if what == "train" else "apply_batch_s"] = sec[side]
        row[f"{what}_time_ratio"] = sec["jax"] / sec["torch"]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import jax

    weights = vgg16_file()
    load_before, rows = os.getloadavg()[0], []
    for size in args.sizes:
        rows.append(measure(size, args.steps, weights))
        j, t = rows[-1]["jax"], rows[-1]["torch"]
        print(f"{size}px  train img/s: jax {j['train_images_per_s']:.2f}  torch {t['train_images_per_s']:.2f}  "
              f"(jax time / torch time {rows[-1]['train_time_ratio']:.2f})   apply img/s: jax "
              f"{j['apply_images_per_s']:.2f}  torch {t['apply_images_per_s']:.2f}  "
              f"(ratio {rows[-1]['apply_time_ratio']:.2f})", flush=True)
    # glibc's allocator settings change both sides' speed (page faults of freshly mapped buffers; docs/fast.md)
    malloc_env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")]
    report = {"device": str(jax.devices()[0]), "backend": jax.default_backend(), "cpus": os.cpu_count(),
              "machine": platform.machine(), "jax": jax.__version__, "batch": BATCH, "steps": args.steps,
              "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
              "date": time.strftime("%Y-%m-%d"), "command": " ".join([*malloc_env, "python benchmarks/fast_bench.py", *sys.argv[1:]]),
              "rows": rows}
    if args.out:
        from jaxstyle.atomic import atomic_write

        with atomic_write(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
