"""One optimiser interface over optax L-BFGS (zoom line search or none), optax Adam and jax.scipy L-BFGS.

An :class:`Optimizer` is a pair of pure functions (optax style): ``init(x) -> state`` and
``run(fun, x, state, n) -> Chunk``, which performs up to ``n`` iterations of minimising the scalar ``fun``
inside one compiled loop (``lax.while_loop``, trip count dynamic so one compilation serves every chunk length)
and stops early at the first non-finite loss. Nothing here calls ``jax.jit``: the driver does, once.

Box constraint: the image must stay in [0, 1]. Adam projects (clips) after every step. L-BFGS runs
unconstrained and the driver clips once at the end: projecting inside L-BFGS would corrupt its curvature pairs
(neural-style does the same).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS = ("lbfgs", "lbfgs-nols", "adam", "scipy-lbfgs")


class Chunk(NamedTuple):
    """Result of one compiled chunk of iterations."""

    x: jax.Array  # finite: the next iterate; else the last iterate whose loss was finite (the image to keep)
    state: Any  # optimiser state matching ``x``
    values: jax.Array  # (max_steps,) loss at the start of each step; NaN-padded past ``steps``
    steps: jax.Array  # iterations completed in this chunk (int32)
    finite: jax.Array  # False if the chunk stopped at a non-finite loss
    x_last: jax.Array  # the last point evaluated: equals ``x`` unless ``finite`` is False
    evaluations: jax.Array  # loss-and-gradient evaluations used (line-search trials included)
    # The iterate before ``x`` (its loss was finite). The driver keeps it: if the next chunk's first loss, the
    # one at ``x``, is non-finite, this is the image to keep. None where the optimiser cannot tell.
    x_prev: Any = None


@dataclasses.dataclass(frozen=True)
class Optimizer:
    name: str
    init: Callable[[jax.Array], Any]
    run: Callable[..., Chunk]  # run(fun, x, state, n, max_steps) -> Chunk
    clips_each_step: bool
    # One iteration, loop-free: step(fun, x, state) -> (new_x, new_state, value_at_x, evaluations). ``run``
    # is this step inside a while_loop; a driver may instead dispatch jitted steps itself (XLA CPU runs
    # convolutions inside a loop body several times slower than the same program outside one, see
    # docs/benchmarks.md). None where the optimiser has no separable step (scipy-lbfgs).
    step: Callable[..., tuple] | None = None


def _while_chunk(step, x, state, n, max_steps):
    """Run ``step`` up to ``n`` times in a while_loop; stop at the first non-finite loss.

    ``step(x, state) -> (new_x, new_state, value_at_x, evaluations)``. When the loss at ``x`` is non-finite,
    ``x`` came from the previous step, so the previous iterate is the last good image.
    """

    def cond(carry):
        return (carry[0] < n) & carry[5]

    def body(carry):
        i, x, x_prev, state, values, _, evals = carry
        new_x, new_state, value, used = step(x, state)
        finite = jnp.isfinite(value)
        keep = lambda a, b: jax.tree.map(lambda u, v: jnp.where(finite, u, v), a, b)
        values = values.at[i].set(value)
        return (i + finite.astype(i.dtype), keep(new_x, x), keep(x, x_prev), keep(new_state, state), values,
                finite, evals + used)

    values = jnp.full((max_steps,), jnp.nan, jnp.float32)
    carry = (jnp.int32(0), x, x, state, values, jnp.bool_(True), jnp.int32(0))
    i, x, x_prev, state, values, finite, evals = jax.lax.while_loop(cond, body, carry)
    return Chunk(jnp.where(finite, x, x_prev), state, values, i, finite, x, evals, x_prev)


def host_chunk(step, x, state, n: int, max_steps: int) -> Chunk:
    """The same contract as ``run``, with the loop on the host: ``step(x, state)`` is an already-jitted single
    iteration, dispatched ``n`` times (one device round-trip per iteration).

    Used on CPU, where XLA executes a while_loop body's convolutions 2-5x slower than the same convolutions
    in a loop-free program (jax-ml/jax#12868; measured in docs/benchmarks.md); with evaluations of 0.1 s and
    more, one round-trip per iteration costs nothing measurable. The arithmetic is the same step function.
    """
    values = np.full((max_steps,), np.nan, np.float32)
    evaluations, x_prev = 0, x
    for i in range(n):
        new_x, new_state, value, used = step(x, state)
        evaluations += int(used)
        values[i] = value = float(value)
        if not math.isfinite(value):
            # ``x`` (made by the previous step) has a non-finite loss: keep the one before it. The state
            # passed in was donated to ``step``; ``new_state`` is valid (the run is not resumable anyway).
            return Chunk(x_prev, new_state, values, np.int32(i), np.bool_(False), x, np.int32(evaluations),
                         x_prev)
        x_prev, x, state = x, new_x, new_state
    return Chunk(x, state, values, np.int32(n), np.bool_(True), x, np.int32(evaluations), x_prev)


def _looped(step):
    """``run`` for an optimiser given its single ``step``: the step inside one compiled while_loop."""

    def run(fun, x, state, n, max_steps):
        return _while_chunk(lambda x, state: step(fun, x, state), x, state, n, max_steps)

    return run


def _optax_lbfgs(memory_size: int, linesearch: bool, max_linesearch_steps: int) -> Optimizer:
    ls = optax.scale_by_zoom_linesearch(max_linesearch_steps=max_linesearch_steps) if linesearch else None
    # Without a line search the step is the L-BFGS direction with unit step (the first one capped at 1/|g|).
    opt = optax.lbfgs(memory_size=memory_size, linesearch=ls)

    def step(fun, x, state):
        if linesearch:
            # With the zoom line search the value and gradient at the accepted point are cached in the state
            # and reused here, so each iteration costs only its line-search trials.
            value, grad = optax.value_and_grad_from_state(fun)(x, state=state)
        else:
            value, grad = jax.value_and_grad(fun)(x)
        updates, new_state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        used = jnp.int32(1)
        if linesearch:
            # The zoom line search evaluates ``fun`` (value and gradient) once per trial step; the
            # accepted trial's value/grad are reused by value_and_grad_from_state on the next step.
            # The very first iteration also evaluates at the starting point (nothing cached yet).
            info = optax.tree.get(new_state, "info")
            first = optax.tree.get(state, "count") == 0
            used = jnp.asarray(info.num_linesearch_steps, jnp.int32) + first.astype(jnp.int32)
        return optax.apply_updates(x, updates), new_state, value, used

    return Optimizer("lbfgs" if linesearch else "lbfgs-nols", opt.init, _looped(step), clips_each_step=False,
                     step=step)


def _optax_adam(learning_rate: float) -> Optimizer:
    opt = optax.adam(learning_rate)

    def step(fun, x, state):
        value, grad = jax.value_and_grad(fun)(x)
        updates, new_state = opt.update(grad, state, x)
        # Projected gradient: keep the image in [0, 1] after every step.
        return jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0), new_state, value, jnp.int32(1)

    return Optimizer("adam", opt.init, _looped(step), clips_each_step=True, step=step)


def _scipy_lbfgs(memory_size: int) -> Optimizer:
    """jax.scipy.optimize.minimize's L-BFGS on the flattened image.

    Each chunk is one call of ``minimize(maxiter=n)``; its history restarts at every chunk boundary (jax.scipy
    exposes no way to carry it), so use few, long chunks with this optimiser. ``values`` holds only the
    final loss of the chunk.
    """
    from jax.scipy.optimize import minimize

    def init(x):
        return jnp.zeros((), jnp.int32)

    def run(fun, x, state, n, max_steps):
        shape = x.shape

        def flat_fun(v):
            return fun(v.reshape(shape))

        # maxiter must be static for jax.scipy; the driver passes n == max_steps for this optimiser.
        # jax.scipy's L-BFGS checks ``k >= maxiter`` before counting the iteration it just did, so it runs
        # maxiter + 1 iterations; ask for one fewer to get exactly n (it always does at least one).
        res = minimize(flat_fun, x.reshape(-1), method="l-bfgs-experimental-do-not-rely-on-this",
                       options={"maxiter": max(max_steps - 1, 0), "maxcor": memory_size})
        finite = jnp.isfinite(res.fun)
        new_x = jnp.where(finite, res.x.reshape(shape), x)
        values = jnp.full((max_steps,), jnp.nan, jnp.float32).at[jnp.maximum(res.nit - 1, 0)].set(res.fun)
        # Non-finite: the chunk's start (whose loss was finite) is kept, so no iteration of this chunk counts.
        steps = jnp.where(finite, jnp.asarray(res.nit, jnp.int32), 0)
        return Chunk(new_x, state + res.nit, values, steps, finite, res.x.reshape(shape),
                     jnp.asarray(res.nfev, jnp.int32))

    return Optimizer("scipy-lbfgs", init, run, clips_each_step=False)


def make_optimizer(name: str = "lbfgs", *, learning_rate: float = 0.02, memory_size: int = 100,
                   max_linesearch_steps: int = 20) -> Optimizer:
    """Build an optimiser by name: ``lbfgs`` (optax, zoom line search), ``lbfgs-nols`` (optax, unit steps),
    ``adam`` (optax, projected to [0, 1]) or ``scipy-lbfgs`` (jax.scipy.optimize.minimize)."""
    if name == "lbfgs":
        return _optax_lbfgs(memory_size, True, max_linesearch_steps)
    if name == "lbfgs-nols":
        return _optax_lbfgs(memory_size, False, max_linesearch_steps)
    if name == "adam":
        return _optax_adam(learning_rate)
    if name == "scipy-lbfgs":
        return _scipy_lbfgs(memory_size)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
