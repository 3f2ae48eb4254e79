"""The tiled driver: run_stylize's step and loss terms with the loss evaluated tile by tile, each tile its own
jitted call dispatched from the host (``StyleConfig(tile=...)``, ``jaxstyle stylize --tile PX``).

:mod:`jaxstyle.objective.tiled` holds the pure per-tile functions and the one loop over tiles; this module jits
them (the edge: one compiled program per distinct window and box shape, tiles of equal shapes share it) and
hands the loop to :func:`jaxstyle.optim.loop.apply`, jitted: the optimiser steps from the (value, gradient) the
host accumulated. Between calls only image-sized arrays live (the image, its gradient, the Grams, the targets)
besides the optimiser state, so the peak is one window's activations plus those (docs/highres.md). Every step
runs the host loop (:func:`jaxstyle.optim.loop.host_chunk`): a compiled while-loop would hold every tile again.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ..objective import tiled
from ..optim import loop
from ..optim.optimizers import Optimizer

_STATIC = ("plan_", "window", "box")


@functools.lru_cache(maxsize=16)
def _jitted(optimizer: Optimizer):
    """(the jitted per-tile functions, the jitted step from a value and gradient) for one optimiser (cached).
    The accumulators are donated: each call adds into the previous call's buffers."""
    parts = tiled.TileParts(
        forward=jax.jit(tiled.tile_forward, static_argnames=_STATIC, donate_argnames="acc"),
        pull=jax.jit(tiled.tile_pull, static_argnames=_STATIC, donate_argnames="grad"),
        style=jax.jit(tiled.style_value_and_grad, static_argnames="plan_"),
        tv=jax.jit(tiled.tv_value_and_grad, static_argnames="plan_"))

    def apply(value, grad, opt_state, rest):
        return loop.apply(optimizer, value, grad, rest._replace(opt_state=opt_state))

    return parts, jax.jit(apply, donate_argnums=(1, 2))


def step_and_terms(problem, model, weights, optimizer: Optimizer, tile: int) -> dict:
    """``{"step": state -> (state, value), "terms": x -> loss terms}`` evaluating ``problem`` tile by tile with
    tiles of ``tile`` pixels: the fields of :class:`~jaxstyle.optim.loop.Programs` that differ from the untiled
    run's."""
    parts, apply = _jitted(optimizer)
    targets = problem.targets
    plan = tiled.plan(model, problem.shape, targets, problem.spec, tile)

    def step(state: loop.RunState):
        value, grad = tiled.tiled_value_and_grad(state.x, model, targets, weights, plan, parts)
        return apply(value, grad, state.opt_state, state._replace(opt_state=None))

    def terms(x):
        return tiled.tiled_terms(jnp.asarray(x), model, targets, weights, plan, parts)

    return {"step": step, "terms": terms}
