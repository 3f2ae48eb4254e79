"""The tiled driver: run_stylize's targets, step and loss terms evaluated tile by tile, each tile its own
jitted call dispatched from the host (``StyleConfig(tile=...)``, ``jaxstyle stylize --tile PX``).

:mod:`jaxstyle.objective.tiled` holds the pure per-tile functions and the one loop over tiles; this module jits
them (the edge: one compiled program per distinct window and box shape, tiles of equal shapes share it) and
hands the loop to :func:`jaxstyle.optim.loop.apply`, jitted: the optimiser steps from the (value, gradient) the
host accumulated. Between calls only image-sized arrays live (the image, its gradient, the Grams, the targets)
besides the optimiser state, so the peak is one window's activations plus those (docs/highres.md). Every step
runs the host loop (:func:`jaxstyle.optim.loop.host_chunk`): a compiled while-loop would hold every tile again.
The targets (content features, style Grams) are computed tile by tile too, so no step of the run holds a whole
image's activations.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ..nets import remat
from ..objective import tiled
from ..optim import loop
from ..optim.optimizers import Optimizer

_STATIC = ("plan_", "window", "box")


@functools.lru_cache(maxsize=2)
def _parts(rematerialise: bool = False) -> tiled.TileParts:
    """The jitted per-tile functions. The accumulators are donated: each call adds into the previous call's
    buffers. ``rematerialise``: compiled as a loss whose spec has ``remat`` needs (jaxstyle.nets.remat)."""
    options = remat.compiler_options(rematerialise)
    return tiled.TileParts(
        forward=jax.jit(tiled.tile_forward, static_argnames=_STATIC, donate_argnames="acc",
                        compiler_options=options),
        pull=jax.jit(tiled.tile_pull, static_argnames=_STATIC, donate_argnames="grad", compiler_options=options),
        style=jax.jit(tiled.style_value_and_grad, static_argnames="plan_"),
        tv=jax.jit(tiled.tv_value_and_grad, static_argnames="plan_"),
        features=jax.jit(tiled.tile_features, static_argnames=("layers", "precision", "window", "box"),
                         compiler_options=options))


@functools.lru_cache(maxsize=16)
def _apply(optimizer: Optimizer):
    """The jitted step from a value and gradient for one optimiser (cached); the gradient and the optimiser
    state are donated."""
    def apply(value, grad, opt_state, rest):
        return loop.apply(optimizer, value, grad, rest._replace(opt_state=opt_state))

    return jax.jit(apply, donate_argnums=(1, 2))


def targets(model, content, styles, spec, tile: int) -> tuple[dict, dict]:
    """(content features, style Grams) as :func:`jaxstyle.objective.targets.content_targets` and
    ``style_targets`` compute them, tile by tile: a whole-image forward pass would otherwise set a tiled run's
    peak (at 2048 px it holds several times one window's activations)."""
    content_t = ({} if content is None else
                 tiled.tiled_features(model, content, spec.content_layers, tile, spec.precision, _parts(spec.remat)))
    grams = (tiled.tiled_style_targets(model, styles, spec.style_layers, tile, spec.precision, _parts(spec.remat))
             if styles else {})
    return content_t, grams


def step_and_terms(problem, model, weights, optimizer: Optimizer, tile: int) -> dict:
    """``{"step": state -> (state, value), "terms": x -> loss terms}`` evaluating ``problem`` tile by tile with
    tiles of ``tile`` pixels: the fields of :class:`~jaxstyle.optim.loop.Programs` that differ from the untiled
    run's."""
    parts, apply = _parts(problem.spec.remat), _apply(optimizer)
    targets = problem.targets
    plan = tiled.plan(model, problem.shape, targets, problem.spec, tile)

    def step(state: loop.RunState):
        value, grad = tiled.tiled_value_and_grad(state.x, model, targets, weights, plan, parts)
        return apply(value, grad, state.opt_state, state._replace(opt_state=None))

    def terms(x):
        return tiled.tiled_terms(jnp.asarray(x), model, targets, weights, plan, parts)

    return {"step": step, "terms": terms}
