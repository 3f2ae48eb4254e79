"""Fast style transfer speed: jaxstyle vs PyTorch (pytorch/examples' network and losses), same machine, one run.

For each size (256, 512 by default) and side: train images/s (one Adam step on a batch of 4 crops: network
forward, VGG16 features of output and content, Johnson's losses, backward, update) and apply images/s (network
forward on a batch of 4). Both sides use the same random VGG16 ``.npz``, all CPU threads, float32, warm-up steps
excluded. ``python benchmarks/fast_bench.py [--sizes 256 512] [--steps 5] [--out benchmarks/results/fast.json]``
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


def timed(fn, steps: int, warmup: int = 2) -> float:
    """Median seconds per call of ``fn`` (which must block until its work is done)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def jax_side(size: int, steps: int, weights: str) -> dict:
    import jax

    import jaxstyle
    from jaxstyle.fast import config as config_lib, objective, train
    from jaxstyle.fast.inference import _jitted

    cfg = config_lib.FastConfig(image_size=size, style_size=size, batch_size=BATCH)
    rng = np.random.default_rng(0)
    vgg = jaxstyle.load_vgg(weights, arch="vgg16")
    obj = objective.make_objective(vgg, [rng.random((size, size, 3)).astype(np.float32)], cfg)
    net, mesh = train.network(cfg, 1), train.data_mesh()
    replicated, _ = train.shardings(mesh)
    obj = jax.device_put(obj, replicated)
    box = {"state": jax.device_put(train.create_state(net, cfg), replicated)}
    step = train.compile_step(net, cfg, mesh)
    batch = train.put_batch((rng.random((BATCH, size, size, 3)) * 255).astype(np.uint8), np.zeros(BATCH, np.int32), mesh)

    def train_once():
        box["state"], metrics = step(obj, box["state"], batch)
        jax.block_until_ready(metrics)

    x = jax.numpy.asarray(rng.random((BATCH, size, size, 3)).astype(np.float32))
    fwd = _jitted(net, False)
    w = jax.numpy.ones((1,), jax.numpy.float32)
    t_train = timed(train_once, steps)
    params = box["state"].params  # after training: the step donates (deletes) the state it is given
    t_apply = timed(lambda: fwd(params, x, w).block_until_ready(), steps)
    return {"train_images_per_s": BATCH / t_train, "apply_images_per_s": BATCH / t_apply,
            "train_step_s": t_train, "apply_batch_s": t_apply}


def torch_side(size: int, steps: int, weights: str) -> dict:
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

    t_train = timed(lambda: trainer.step(x), steps)
    t_apply = timed(apply_once, steps)
    return {"train_images_per_s": BATCH / t_train, "apply_images_per_s": BATCH / t_apply,
            "train_step_s": t_train, "apply_batch_s": t_apply, "torch": torch.__version__}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import jax

    weights = vgg16_file()
    rows = []
    for size in args.sizes:
        j, t = jax_side(size, args.steps, weights), torch_side(size, args.steps, weights)
        rows.append({"size": size, "jax": j, "torch": t,
                     "train_time_ratio": j["train_step_s"] / t["train_step_s"],
                     "apply_time_ratio": j["apply_batch_s"] / t["apply_batch_s"]})
        print(f"{size}px  train img/s: jax {j['train_images_per_s']:.2f}  torch {t['train_images_per_s']:.2f}  "
              f"(jax time / torch time {rows[-1]['train_time_ratio']:.2f})   apply img/s: jax "
              f"{j['apply_images_per_s']:.2f}  torch {t['apply_images_per_s']:.2f}  "
              f"(ratio {rows[-1]['apply_time_ratio']:.2f})", flush=True)
    report = {"device": str(jax.devices()[0]), "backend": jax.default_backend(), "cpus": os.cpu_count(),
              "machine": platform.machine(), "jax": jax.__version__, "batch": BATCH, "steps": args.steps,
              "rows": rows}
    if args.out:
        from jaxstyle.atomic import atomic_write

        with atomic_write(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
