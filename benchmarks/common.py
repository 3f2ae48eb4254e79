"""Shared set-up for the benchmarks and their smoke test: one weights file, one pair of images, both sides.

The random VGG19 (``jaxstyle.nets.weights.random_params``) is written once to a jaxstyle ``.npz``; jaxstyle loads it
with ``load_vgg(path)`` and the PyTorch side (``benchmarks/torch_gatys.py``) reads the same file itself.
"""

from __future__ import annotations

import os
import tempfile
import types

import numpy as np

RANDOM_WEIGHTS_NAME = "vgg19_random_seed0.npz"


def core():
    """The parts of jaxstyle the benchmarks drive directly: the objective, the Gatys problem preparation and the
    driver's compiled programs (``problem`` and ``run`` are the modules, for the variants that patch them)."""
    from jaxstyle import gatys, objective
    from jaxstyle.gatys import problem, run
    from jaxstyle.optim import loop

    return types.SimpleNamespace(StyleConfig=gatys.StyleConfig, prepare=gatys.prepare, init_image=gatys.init_image,
                                 total_loss=objective.total_loss, content_targets=objective.content_targets,
                                 style_targets=objective.style_targets, problem=problem, run=run, loop=loop)


def weights_file(directory: str | None = None) -> str:
    """Path of the shared random-VGG19 ``.npz`` (written on first use)."""
    from jaxstyle.nets import vgg, weights

    directory = directory or os.path.join(tempfile.gettempdir(), "jaxstyle-bench")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, RANDOM_WEIGHTS_NAME)
    if not os.path.exists(path):
        params = weights.random_params("vgg19")["params"]
        convs = {name: (p["kernel"], p["bias"]) for name, p in params.items()}
        weights.save_converted(path, "vgg19", convs, vgg.PRESETS["torchvision"], source="random_params(vgg19)",
                               source_sha256="", source_format="random")
    return path


def images(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic content image (smooth shapes) and style image (coloured strokes), HWC float32 [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    content = np.stack([0.5 + 0.4 * np.sin(6 * xx + 2 * yy), 0.5 + 0.4 * np.cos(5 * yy),
                        ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.08).astype(np.float32) * 0.8 + 0.1], -1)
    style = np.clip(0.5 + 0.3 * np.sin(40 * (xx + 0.3 * yy))[..., None] * rng.uniform(0.5, 1.0, 3)
                    + 0.15 * rng.standard_normal((size, size, 3)), 0, 1)
    return content.astype(np.float32), style.astype(np.float32)


def jax_problem(size: int, weights_path: str, config=None):
    """(model, problem, config) for jaxstyle's defaults at ``size`` with the shared weights, without the TV term
    (default 1 since the real-weights review): the torch side is the paper's loss, and the recorded figures
    were measured without it (TV costs ~1 % of an evaluation)."""
    import warnings

    import jaxstyle

    stylize = core()
    config = config or stylize.StyleConfig(image_size=size, tv_weight=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = jaxstyle.load_vgg(weights_path)
    content, style = images(size)
    return model, stylize.prepare(model, content, [style], config), config


def jax_loss_and_grad(spec):
    """Jitted ``(model, x, targets, weights) -> (loss, dloss/dx)`` of jaxstyle's total loss (compiled as the
    driver compiles it: with the options a rematerialising ``spec`` needs)."""
    import jax

    from jaxstyle.nets import remat

    stylize = core()

    def f(model, x, targets, weights):
        return jax.value_and_grad(lambda img: stylize.total_loss(img, model, targets, weights, spec))(x)

    return jax.jit(f, compiler_options=remat.compiler_options(spec.remat))


def torch_problem(size: int, weights_path: str):
    from benchmarks import torch_gatys

    content, style = images(size)
    vgg = torch_gatys.TorchVGG(weights_path)
    return vgg, torch_gatys.GatysLoss(vgg, content, style)


def init_noise(size: int, seed: int = 0) -> np.ndarray:
    """The same white-noise start for both sides (jaxstyle's own init for ``seed``)."""
    stylize = core()
    return np.asarray(stylize.init_image("noise", (size, size, 3), seed=seed))


def adam_chunk(problem, model, *, donate: bool = True):
    """run_stylize's compiled while_loop chunk (the GPU/TPU program) for Adam at lr 0.02: ``(x, n)`` -> the image
    after ``n`` iterations from ``x``. ``donate=False``: the same program without donating the optimiser state."""
    import jax
    import jax.numpy as jnp

    from jaxstyle.gatys import run
    from jaxstyle.optim import loop

    key = ("adam", 0.02, 100)
    opt, chunk = run._optimizer(*key), run._programs(problem.spec, key)[1]
    if not donate:
        chunk = jax.jit(chunk.__wrapped__, static_argnames=("max_steps",))

    def go(x, n):
        state = loop.init(opt, x)._replace(stop_at=jnp.int32(n))
        return chunk(model, problem.targets, problem.weights, *run._split(state), max_steps=n)[0].x

    return go


def step_memory(model, problem, config, state):
    """``compiled.memory_analysis()`` of the jitted step run_stylize runs for ``problem`` (compiled, never run)."""
    from jaxstyle.gatys.run import _opt_key, _programs, _split

    step = _programs(problem.spec, _opt_key(config))[0]
    return step.lower(model, problem.targets, problem.weights, *_split(state)).compile().memory_analysis()
