"""The run state machine, written once: one :class:`RunState` pytree, a pure :func:`init` and :func:`step`, and
the loops every driver is built from.

:func:`step` advances a state by one optimiser step (:func:`apply`: the same from a loss and gradient the caller
evaluated). It is pure and jit-/vmap-able, so the single run, the
vmapped sweep, the host-dispatched loop and the compiled while-loop all run this one function:

- :func:`run_chunk` repeats it inside one ``lax.while_loop`` (GPU/TPU: many iterations per dispatch; under
  ``vmap`` every run stops on its own, the while-loop's batching keeps a stopped run's carry);
- :func:`host_chunk` repeats an already-jitted step from Python (CPU, where XLA runs a while-loop body's
  convolutions 2-5x slower than the same loop-free program, jax-ml/jax#12868; one round-trip per iteration
  costs nothing next to an evaluation);
- :func:`run_chunks` is the driver loop around either: chunk ends, the check of each chunk's last iterate,
  progress callbacks and clean stops. It works on one run or a batch of K runs alike.

Keep-last-finite, in one place (:func:`_next`): a step evaluates the loss at ``x``. Finite: ``x`` becomes
``x_prev`` and the step's result the new ``x``. Not finite: the run stops for good and goes back to ``x_prev``,
the last iterate whose loss was finite, and ``x_prev`` keeps the failing iterate (to say which term failed). So
``state.x`` is always the image to keep, or to continue from.

Nothing here calls ``jax.jit``: drivers jit :func:`step` and :func:`run_chunk` once, at the edge.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .optimizers import Optimizer, Update


class RunState(NamedTuple):
    """Everything a run needs to continue; a pytree (leading K axis when batched)."""

    x: jax.Array  # the current iterate: the image to keep, or to continue from
    x_prev: jax.Array  # the iterate before x (finite loss), x itself at the start; once stopped, the failing one
    opt_state: Any  # the optimiser state at x (meaningless once the run has stopped)
    iteration: jax.Array  # int32: iterations that made x
    iteration_prev: jax.Array  # int32: iterations that made x_prev
    stop_at: jax.Array  # int32: the iteration at which stepping stops (the end of the current chunk)
    evaluations: jax.Array  # int32: loss-and-gradient evaluations so far
    finite: jax.Array  # bool: every loss so far was finite; False stops the run for good


def init(optimizer: Optimizer, x) -> RunState:
    """The state of a run starting at the image ``x`` (pure)."""
    x = jnp.asarray(x, jnp.float32)
    # Fresh, strongly typed buffers: drivers donate the optimiser state, which must then not share a buffer with
    # x (optax's L-BFGS state holds x); and optax's weak-typed initial scalars would make the first step's
    # argument types differ from the later steps' (two compilations).
    opt_state = jax.tree.map(lambda a: jnp.array(a, dtype=jnp.asarray(a).dtype, copy=True), optimizer.init(x))
    zero = jnp.int32(0)
    return RunState(x, x, opt_state, zero, zero, zero, zero, jnp.bool_(True))


def restart(state: RunState, x, opt_state) -> RunState:
    """``state`` moved to the image ``x`` (another size: the next coarse-to-fine stage) with ``opt_state``; the
    counters go on (pure)."""
    x = jnp.asarray(x, jnp.float32)
    opt_state = jax.tree.map(lambda a: jnp.array(a, dtype=jnp.asarray(a).dtype, copy=True), opt_state)
    return state._replace(x=x, x_prev=x, opt_state=opt_state, iteration_prev=state.iteration)


def running(state: RunState) -> jax.Array:
    """Whether ``step`` would advance ``state``: all losses finite so far, and the chunk not done."""
    return state.finite & (state.iteration < state.stop_at)


def _next(state: RunState, update: Update, active, finite_value) -> RunState:
    """Keep-last-finite: the one place that decides what a step (or a finding of the caller) does to a state."""
    ok, bad = active & finite_value, active & ~finite_value
    pick = lambda on_ok, on_bad, otherwise: jnp.where(ok, on_ok, jnp.where(bad, on_bad, otherwise))
    # The optimiser state is the step's output even where the run did not advance: selecting the whole state
    # (L-BFGS: 2 x memory images) cost 8 % of a step at 128 px, and it is never used where the run did not
    # advance (a stopped run is over; a finished chunk is not stepped, and the while-loop's batching keeps the
    # carry of a vmapped run whose chunk is over).
    return RunState(
        x=pick(update.x, state.x_prev, state.x),
        x_prev=pick(state.x, state.x, state.x_prev),
        opt_state=update.opt_state,
        iteration=pick(state.iteration + update.iterations, state.iteration_prev, state.iteration),
        iteration_prev=pick(state.iteration, state.iteration, state.iteration_prev),
        stop_at=state.stop_at,
        evaluations=state.evaluations + jnp.where(active, update.evaluations, 0),
        finite=state.finite & ~bad,
    )


def step(optimizer: Optimizer, fun: Callable[[jax.Array], jax.Array], state: RunState) -> tuple[RunState, jax.Array]:
    """One optimiser step minimising ``fun`` (pure). Returns the next state and the loss at ``state.x``.

    A state that is not :func:`running` keeps its image and counters (its ``opt_state`` is not kept: see
    :func:`_next`). A non-finite loss stops the run at ``x_prev``.
    """
    return _advance(state, optimizer.step(fun, state.x, state.opt_state, state.stop_at - state.iteration))


def apply(optimizer: Optimizer, value, grad, state: RunState) -> tuple[RunState, jax.Array]:
    """:func:`step` from the loss ``value`` and its gradient ``grad`` at ``state.x``, computed by the caller (the
    tiled driver evaluates tile by tile on the host); ``optimizer.apply`` must exist. Pure; same transitions."""
    return _advance(state, optimizer.apply(value, grad, state.x, state.opt_state))


def _advance(state: RunState, update: Update) -> tuple[RunState, jax.Array]:
    """The state after ``update``, a step from ``state.x`` (keep-last-finite: :func:`_next`), and its loss."""
    return _next(state, update, running(state), jnp.isfinite(update.value)), update.value


def reject(state: RunState, bad) -> RunState:
    """Stop ``state`` where ``bad``: the caller found the loss at ``state.x`` non-finite (a chunk's last iterate
    is evaluated only by the caller). Pure; ``bad`` is a bool (one per run when batched)."""
    nothing = Update(state.x, state.opt_state, jnp.nan, jnp.int32(0), jnp.int32(0))
    return _next(state, nothing, state.finite & bad, jnp.bool_(False))


def run_chunk(optimizer: Optimizer, fun, state: RunState, max_steps: int) -> tuple[RunState, jax.Array]:
    """:func:`step` in one ``lax.while_loop`` until the state stops running, at most ``max_steps`` times.

    Returns the state and the loss at each step's input, ``(max_steps,)``, NaN after the last step.
    """
    def cond(carry):
        s, _, i = carry
        return running(s) & (i < max_steps)

    def body(carry):
        s, values, i = carry
        s, value = step(optimizer, fun, s)
        return s, values.at[i].set(value), i + 1

    values = jnp.full((max_steps,), jnp.nan, jnp.float32)
    state, values, _ = jax.lax.while_loop(cond, body, (state, values, jnp.int32(0)))
    return state, values


def host_chunk(step_fn, state: RunState, max_steps: int, to_host=np.asarray) -> tuple[RunState, np.ndarray]:
    """:func:`run_chunk`'s loop on the host: ``step_fn(state) -> (state, value)`` is an already-jitted
    :func:`step` (vmapped or not), dispatched until no run is running. Returns the losses as ``(..., max_steps)``.
    ``to_host`` reads a device array (a multi-host sweep passes an all-gather)."""
    values = []
    for _ in range(max_steps):
        if not to_host(running(state)).any():
            break
        state, value = step_fn(state)
        values.append(to_host(value))
    shape = np.shape(to_host(state.finite))
    out = np.full((*shape, max_steps), np.nan, np.float32)
    if values:
        out[..., :len(values)] = np.stack(values, axis=-1)
    return state, out


class Programs(NamedTuple):
    """The jitted functions :func:`run_chunks` drives (closed over the objective; one run or K runs)."""

    step: Callable  # state -> (state, value): jitted step (host loop), or None to use ``chunk``
    chunk: Callable  # (state, max_steps) -> (state, values): jitted run_chunk
    terms: Callable  # x -> dict of loss terms at the image(s) x, "total" among them
    reject: Callable  # (state, bad) -> state: jitted reject
    set_stop: Callable  # (state, stop_at) -> state with the new chunk end, placed as the driver needs it


def run_chunks(programs: Programs, state: RunState, iterations: int, chunk: int, *, on_chunk=None,
               should_stop=None, to_host=np.asarray) -> RunState:
    """Run ``state`` to ``iterations`` in chunks of ``chunk``; return the last state.

    After each chunk the loss terms at the chunk's last iterate are evaluated (it is only evaluated here): a
    non-finite one stops that run now (:func:`reject`). ``on_chunk(state, terms, values)`` sees every chunk's
    end; ``should_stop()`` is polled after each, and a True stops before the next chunk. Raises nothing of its
    own; a KeyboardInterrupt inside a chunk propagates (the previous chunk's state stays valid except for its
    donated optimiser state).
    """
    chunk = max(1, int(chunk))
    while True:
        iteration, finite = to_host(state.iteration), to_host(state.finite)
        if not (finite & (iteration < iterations)).any():
            return state
        state = programs.set_stop(state, np.minimum(iteration + chunk, iterations).astype(np.int32))
        if programs.step is not None:
            state, values = host_chunk(programs.step, state, chunk, to_host)
        else:
            state, values = programs.chunk(state, chunk)
        terms = programs.terms(state.x)
        bad = to_host(state.finite) & ~np.isfinite(to_host(terms["total"]))
        if bad.any():
            state = programs.reject(state, bad)
            terms = programs.terms(state.x)
        if on_chunk is not None:
            on_chunk(state, terms, values)
        if should_stop is not None and should_stop():
            return state
