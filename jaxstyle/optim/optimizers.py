"""Optimisers as pairs of pure functions (optax style) over optax L-BFGS (zoom line search or none), optax Adam
and jax.scipy L-BFGS.

An :class:`Optimizer` is ``init(x) -> opt_state`` and ``step(fun, x, opt_state, budget) -> Update``: one update
of the image ``x`` minimising the scalar ``fun``, and the loss at ``x`` (so a caller learns whether ``x`` was a
finite point). Optimisers whose step evaluates ``fun`` once, at ``x`` (Adam, unit-step L-BFGS), also have
``apply(value, grad, x, opt_state) -> Update``: the same step from a loss and gradient computed elsewhere (tile by
tile on the host, :mod:`jaxstyle.objective.tiled`); their ``step`` is written with it. A line search evaluates
``fun`` at points of its own choosing, so ``lbfgs`` and ``scipy-lbfgs`` have no ``apply``. Every optax optimiser
advances one iteration per step; jax.scipy's L-BFGS advances up to ``budget`` iterations in one call (it exposes
no single step). Nothing here loops, keeps the last finite image or calls ``jax.jit``: :mod:`jaxstyle.optim.loop`
is the one state machine built on ``step`` (and ``apply``), and drivers jit it.

Box constraint: the image must stay in [0, 1]. Adam projects (clips) after every step. L-BFGS runs
unconstrained and the driver clips once at the end: projecting inside L-BFGS would corrupt its curvature pairs
(neural-style does the same).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("lbfgs", "lbfgs-nols", "adam", "scipy-lbfgs")


class Update(NamedTuple):
    """What one optimiser step returns."""

    x: jax.Array  # the next iterate
    opt_state: Any  # the optimiser state matching it
    value: jax.Array  # the loss at the step's input ``x``
    evaluations: jax.Array  # int32: loss-and-gradient evaluations the step used (line-search trials included)
    iterations: jax.Array  # int32: iterations the step advanced (1, except jax.scipy's L-BFGS: up to budget)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    name: str
    init: Callable[[jax.Array], Any]
    step: Callable[..., Update]  # step(fun, x, opt_state, budget) -> Update; pure
    # The state for the image ``x`` of another size (coarse-to-fine) from a state at the previous size, or None:
    # start afresh (``init(x)``), as L-BFGS does (its curvature pairs belong to the old pixels).
    rescale: Callable[[Any, jax.Array], Any] | None = None
    # apply(value, grad, x, opt_state) -> Update: the step from the loss and gradient at ``x`` (pure), or None
    # where a step must evaluate ``fun`` elsewhere too (a line search).
    apply: Callable[..., Update] | None = None

# The optimisers that can step from a given (value, gradient): those with ``apply`` (tiled evaluation needs one).
EVALUATE_ONCE = ("lbfgs-nols", "adam")


def _step_via(apply) -> Callable[..., Update]:
    """The ``step`` of an optimiser that evaluates ``fun`` once, at ``x``: value and gradient there, then
    ``apply`` (one implementation of the update for both entry points)."""
    def step(fun, x, state, budget=1):
        del budget  # one iteration per step
        value, grad = jax.value_and_grad(fun)(x)
        return apply(value, grad, x, state)
    return step


def rescale_state(optimizer: Optimizer, opt_state, x: jax.Array):
    """``opt_state`` carried to the image ``x`` (another size): :attr:`Optimizer.rescale`, else a fresh state."""
    return optimizer.init(x) if optimizer.rescale is None else optimizer.rescale(opt_state, x)


def _resize_like(x: jax.Array):
    """Resize every leaf of an image's shape (old size) to ``x``'s: bilinear, so non-negative stays so."""
    def resize(a):
        if getattr(a, "ndim", 0) == x.ndim and a.shape[-1] == x.shape[-1] and a.shape != x.shape:
            return jax.image.resize(a, x.shape, method="linear", antialias=True).astype(a.dtype)
        return a
    return resize


def _optax_lbfgs(memory_size: int, linesearch: bool, max_linesearch_steps: int) -> Optimizer:
    ls = optax.scale_by_zoom_linesearch(max_linesearch_steps=max_linesearch_steps) if linesearch else None
    # Without a line search the step is the L-BFGS direction with unit step (the first one capped at 1/|g|).
    opt = optax.lbfgs(memory_size=memory_size, linesearch=ls)

    if not linesearch:
        def apply(value, grad, x, state):
            updates, new_state = opt.update(grad, state, x, value=value, grad=grad)  # no value_fn: no line search
            return Update(optax.apply_updates(x, updates), new_state, value, jnp.int32(1), jnp.int32(1))

        return Optimizer("lbfgs-nols", opt.init, _step_via(apply), apply=apply)

    def step(fun, x, state, budget=1):
        del budget  # one iteration per step
        # With the zoom line search the value and gradient at the accepted point are cached in the state and
        # reused here, so each iteration costs only its line-search trials.
        value, grad = optax.value_and_grad_from_state(fun)(x, state=state)
        updates, new_state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        # The zoom line search evaluates ``fun`` (value and gradient) once per trial step; the accepted trial's
        # value/grad are reused by value_and_grad_from_state on the next step. The very first iteration also
        # evaluates at the starting point (nothing cached yet).
        info = optax.tree.get(new_state, "info")
        first = optax.tree.get(state, "count") == 0
        used = jnp.asarray(info.num_linesearch_steps, jnp.int32) + first.astype(jnp.int32)
        return Update(optax.apply_updates(x, updates), new_state, value, used, jnp.int32(1))

    return Optimizer("lbfgs", opt.init, step)


def _optax_adam(learning_rate: float) -> Optimizer:
    opt = optax.adam(learning_rate)

    def apply(value, grad, x, state):
        updates, new_state = opt.update(grad, state, x)
        # Projected gradient: keep the image in [0, 1] after every step.
        x_new = jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0)
        return Update(x_new, new_state, value, jnp.int32(1), jnp.int32(1))

    # Coarse-to-fine: the moments (mu, nu) resized to the new image, the step count kept, as
    # crowsonkb/style-transfer-pytorch's scale_adam does.
    return Optimizer("adam", opt.init, _step_via(apply),
                     rescale=lambda state, x: jax.tree.map(_resize_like(x), state), apply=apply)


class Averaged(NamedTuple):
    """The state of :func:`averaged`: the inner optimiser's, and the running mean of the iterates."""

    inner: Any
    mean: jax.Array  # the bias-corrected exponential moving average of the iterates so far
    count: jax.Array  # int32: iterates averaged


def averaged(optimizer: Optimizer, decay: float) -> Optimizer:
    """``optimizer`` that also keeps the exponential moving average of its iterates (Polyak-style averaging, as
    crowsonkb/style-transfer-pytorch's EMA): ``mean_t = mean_{t-1} + (1 - d) / (1 - d^t) (x_t - mean_{t-1})``,
    the bias-corrected EMA (``mean_1 = x_1``). The steps are the inner optimiser's; :func:`output` reads the
    mean. A rescale keeps the inner state's rule and restarts the mean at the new image."""
    def init(x):
        return Averaged(optimizer.init(x), jnp.asarray(x, jnp.float32), jnp.int32(0))

    def with_mean(u: Update, state: Averaged) -> Update:
        t = state.count + 1
        rate = (1.0 - decay) / (1.0 - jnp.float32(decay) ** t.astype(jnp.float32))
        mean = state.mean + rate * (u.x - state.mean)
        return u._replace(opt_state=Averaged(u.opt_state, mean, t))

    def step(fun, x, state, budget=1):
        return with_mean(optimizer.step(fun, x, state.inner, budget), state)

    def apply(value, grad, x, state):
        return with_mean(optimizer.apply(value, grad, x, state.inner), state)

    def rescale(state, x):
        return Averaged(rescale_state(optimizer, state.inner, x), jnp.asarray(x, jnp.float32), jnp.int32(0))

    return Optimizer(f"{optimizer.name}+average", init, step, rescale,
                     apply if optimizer.apply is not None else None)


def output(opt_state, x: jax.Array) -> jax.Array:
    """The image to show or keep for the iterate ``x``: the average of iterates under :func:`averaged`, else
    ``x`` itself."""
    if isinstance(opt_state, Averaged):
        return jnp.where(opt_state.count > 0, opt_state.mean, x)
    return x


def _scipy_lbfgs(memory_size: int) -> Optimizer:
    """jax.scipy.optimize.minimize's L-BFGS on the flattened image, up to ``budget`` iterations per step.

    jax.scipy exposes no single step, so one step is one ``minimize`` call (the loop gives it the iterations left
    in the chunk); its history restarts at every call, so use few, long chunks with this optimiser. The loss at
    the step's input, which the run state needs, costs one extra forward pass per call (no gradient).
    """
    from jax.scipy.optimize import minimize

    def init(x):
        return jnp.zeros((), jnp.int32)  # iterations done

    def step(fun, x, state, budget=1):
        shape = x.shape
        # jax.scipy's L-BFGS checks ``k >= maxiter`` before counting the iteration it just did, so it runs
        # maxiter + 1 iterations (always at least one); ask for one fewer to get exactly ``budget``.
        res = minimize(lambda v: fun(v.reshape(shape)), x.reshape(-1),
                       method="l-bfgs-experimental-do-not-rely-on-this",
                       options={"maxiter": jnp.maximum(budget, 1) - 1, "maxcor": memory_size})
        nit = jnp.asarray(res.nit, jnp.int32)
        return Update(res.x.reshape(shape), state + nit, fun(x), jnp.asarray(res.nfev, jnp.int32), nit)

    return Optimizer("scipy-lbfgs", init, step)


def make_optimizer(name: str = "lbfgs", *, learning_rate: float = 0.02, memory_size: int = 100,
                   max_linesearch_steps: int = 20, average: float = 0.0) -> Optimizer:
    """Build an optimiser by name: ``lbfgs`` (optax, zoom line search), ``lbfgs-nols`` (optax, unit steps),
    ``adam`` (optax, projected to [0, 1]) or ``scipy-lbfgs`` (jax.scipy.optimize.minimize); with ``average``
    > 0, :func:`averaged` with that decay."""
    if average > 0:
        return averaged(make_optimizer(name, learning_rate=learning_rate, memory_size=memory_size,
                                       max_linesearch_steps=max_linesearch_steps), average)
    if name == "lbfgs":
        return _optax_lbfgs(memory_size, True, max_linesearch_steps)
    if name == "lbfgs-nols":
        return _optax_lbfgs(memory_size, False, max_linesearch_steps)
    if name == "adam":
        return _optax_adam(learning_rate)
    if name == "scipy-lbfgs":
        return _scipy_lbfgs(memory_size)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
