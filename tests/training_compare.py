"""Comparing two training runs that should differ only in float32 summation order (device layout, processes).

Adam's first steps divide each gradient element by its own size, so an element whose true gradient is near zero,
and whose rounding therefore dominates it, moves by a good fraction of the learning rate in either run, and the
next steps carry such differences on. Measured with the width-4 test network after 3 steps (4 devices in 2
processes, 4 devices in 1, 1 device): most kernel elements agree to ~1e-3 x lr, a few differ by up to 0.13 x lr,
and which ones, and how many, depends on the initial values (a change of the initialisation's last bit took the
largest relative difference from 5e-6 to 3.5e-4). A bug that changes the gradient (rows lost or repeated, a
gradient not averaged over the devices) moves nearly every element by about lr: training on half of the batch
instead gave a mean of 1.0 x lr and a maximum of 5.9 x lr. So the runs are compared in units of the learning rate.

Biases whose effect a later instance norm cancels (the convolutions' biases; the last residual block's shift, a
per-channel constant before u1's convolution and norm) have an exactly-zero gradient up to rounding, which Adam's
sign-like first steps turn into +-lr in any run: they change nothing and are left out.
"""

from __future__ import annotations

import jax
import numpy as np

MEAN_BOUND = 0.02  # x lr; measured 0.001-0.003 between device layouts, 1.0 for half a batch
MAX_BOUND = 0.5  # x lr; measured 0.07-0.13 between device layouts, 5.9 for half a batch


def kernels(params) -> list[np.ndarray]:
    """Every parameter of a network but its biases (see the module docstring)."""
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]
    return [np.asarray(a) for p, a in flat if p[-1].key != "bias"]


def assert_same_training(a: list, b: list, learning_rate: float) -> None:
    """``a`` and ``b`` (from :func:`kernels`) are the same training up to rounding, as the module docstring says."""
    assert len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b))
    d = np.concatenate([np.abs(x - y).ravel() for x, y in zip(a, b)]) / learning_rate
    assert d.mean() < MEAN_BOUND and d.max() < MAX_BOUND, f"mean {d.mean():.4f} x lr, max {d.max():.4f} x lr"
