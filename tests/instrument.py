"""Instrumented runs for the tests: host-side counters fed by callbacks compiled into the objective and the
feature extraction, patched where the driver and the objective look them up."""

from __future__ import annotations

import contextlib
import importlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback


class Probe:
    """Host-side counters fed by callbacks compiled into a patched total_loss / extract_features."""

    def __init__(self):
        self.evals = 0  # calls of the objective at run time
        self.nan_after = None  # evaluations (1-based) from this one on return NaN
        self.seen = []  # images extract_features ran on at run time

    def objective_hook(self):
        self.evals += 1
        return np.float32(np.nan if self.nan_after is not None and self.evals >= self.nan_after else 0.0)


# Where the driver looks up the objective, and where the objective and the targets look up the features.
RUN = importlib.import_module("jaxstyle.gatys.run")
FEATURE_USERS = (importlib.import_module("jaxstyle.objective.perceptual"),
                 importlib.import_module("jaxstyle.objective.targets"))
PROBLEM = importlib.import_module("jaxstyle.gatys.problem")


@contextlib.contextmanager
def instrumented(probe):
    real_total, real_extract = RUN.total_loss, FEATURE_USERS[0].extract_features

    def total_loss(image, *args):
        # io_callback (not pure): must run exactly once per evaluation. Takes no traced input, so it needs no JVP.
        flag = io_callback(probe.objective_hook, jax.ShapeDtypeStruct((), jnp.float32))
        return real_total(image, *args) + flag

    def extract_features(model, images, layers, *args, **kwargs):  # precision, remat: as the real one
        # ordered: every call is delivered before the computation returns, in program order
        jax.debug.callback(lambda a: probe.seen.append(np.asarray(a)), images, ordered=True)
        return real_extract(model, images, layers, *args, **kwargs)

    def retrace():
        # Compiled code closes over the module's functions: make every cached jit retrace with the current ones.
        RUN._programs.cache_clear()
        for name in ("_content_targets_jit", "_style_targets_jit"):  # prepare's jitted targets
            getattr(PROBLEM, name).clear_cache()

    def patch(total, extract):
        RUN.total_loss = total
        for module in FEATURE_USERS:
            module.extract_features = extract

    retrace()
    patch(total_loss, extract_features)
    try:
        yield probe
    finally:
        patch(real_total, real_extract)
        retrace()
