"""Many stylizations at once: one ``jax.vmap``-ed, jitted optimisation over K settings, sharded over devices.

:func:`stylize_many` prepares the problem once (:func:`jaxstyle.gatys.prepare`: resizing, colour handling and
the content/style targets are computed once and shared by every run, never K times), stacks K
:class:`~jaxstyle.objective.LossWeights` (a pytree of arrays, so it vmaps) and K starting images, and runs the
same optimiser interface as :func:`~jaxstyle.gatys.run_stylize` under ``jax.vmap``. The K axis is sharded over
every device of a 1-D (or any) ``jax.sharding.Mesh``; the VGG parameters and the targets are replicated.

Why the default optimiser of a sweep is ``lbfgs-nols``: under ``vmap`` a ``lax.cond`` whose predicate differs
per lane becomes a ``select`` that runs both branches. optax's zoom line search has two such conds (the cached
value/gradient fetch and the search-interval/zoom branch), so one vmapped L-BFGS iteration with line search
executes about three loss-and-gradient evaluations per image where the single run executes about one (measured
by :func:`count_evaluations`, figures in docs/sweep.md). Unit-step L-BFGS, as in neural-style, has no cond
around the loss and costs exactly one evaluation per iteration in both cases.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from ..optim import optimizers as optim
from ..errors import UsageError
from ..nets.model import VGGModel
from ..objective.perceptual import loss_terms, total_loss
from .config import StyleConfig, loss_weights
from .problem import init_image, prepare
from .run import _compiled_step as _compiled_single_step
from .run import _finish, host_loop_default

# The sweep's one departure from StyleConfig's defaults (see the module docstring for the measurement).
SWEEP_OPTIMIZER = "lbfgs-nols"
DEFAULT_CONFIG = StyleConfig(optimizer=SWEEP_OPTIMIZER)
# What a sweep may vary per run: name -> (StyleConfig field, number of trailing axes after K).
SETTINGS = {
    "content_weight": 0,
    "style_weight": 0,
    "tv_weight": 0,
    "style_layer_weights": 1,  # (K, L)
    "style_blend_weights": 1,  # (K, S)
    "seed": 0,  # noise init only
}
AXIS = "runs"  # name of the mesh axis made when no mesh is given


@dataclasses.dataclass
class SweepProgress:
    """What :func:`stylize_many` tells its callback after each compiled chunk."""

    iteration: int  # iterations completed by the slowest live run
    iterations: int
    terms: dict  # name -> (K,) weighted loss terms at the current images
    seconds: float


@dataclasses.dataclass
class SweepResult:
    images: np.ndarray  # (K, H, W, 3) float32 in [0, 1]
    terms: dict  # "content" | "style" | "tv" | "total" -> (K,) final weighted loss terms
    settings: dict  # the per-run settings, each (K, ...) numpy, defaults filled in
    iterations: np.ndarray  # (K,) iterations completed
    evaluations: np.ndarray  # (K,) loss-and-gradient evaluations counted by the optimiser
    status: list  # per run: "done" | "nonfinite" | "interrupted"
    x: jax.Array  # raw final iterates, (K_padded, H, W, 3), sharded over the mesh (padding included)
    mesh: Mesh
    padded: int  # how many padding runs were appended to reach a multiple of the device count
    seconds: float


# ----------------------------------------------------------------------------------------------- settings


def normalize_settings(settings: Mapping[str, Any], config: StyleConfig, n_styles: int) -> dict:
    """Check ``settings`` and return every sweepable setting as a (K, ...) numpy array, defaults from ``config``.

    A 0-d value (1-D for the two vector settings) is shared by every run. Raises :class:`UsageError`.
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise UsageError(f"unknown sweep setting {unknown[0]!r}; expected some of {', '.join(SETTINGS)}")
    arrays = {k: np.asarray(v, np.int64 if k == "seed" else np.float64) for k, v in settings.items()}
    counts = {k: a.shape[0] for k, a in arrays.items() if a.ndim == SETTINGS[k] + 1}
    for k, a in arrays.items():
        if a.ndim not in (SETTINGS[k], SETTINGS[k] + 1):
            raise UsageError(f"sweep setting {k} must have shape (K{', n' * SETTINGS[k]}), got {a.shape}")
    if len(set(counts.values())) > 1:
        raise UsageError("sweep settings disagree on the number of runs K: "
                         + ", ".join(f"{k} has {n}" for k, n in counts.items()))
    k_runs = next(iter(counts.values()), 1)
    if k_runs < 1:
        raise UsageError("a sweep needs at least one run (K >= 1)")
    n_layers = len(config.style_layers)
    defaults = {
        "content_weight": config.content_weight, "style_weight": config.style_weight,
        "tv_weight": config.tv_weight, "seed": config.seed,
        # None in StyleConfig means "the paper's 1/L" and "equal blend"; loss_weights normalises the blend.
        "style_layer_weights": config.style_layer_weights or (1.0 / n_layers,) * n_layers,
        "style_blend_weights": config.style_blend_weights or (1.0,) * n_styles,
    }
    out = {}
    for k, default in defaults.items():
        a = arrays.get(k, np.asarray(default, np.int64 if k == "seed" else np.float64))
        if a.ndim == SETTINGS[k]:
            a = np.broadcast_to(a, (k_runs, *a.shape))
        out[k] = np.array(a)
    return out


def run_configs(settings: dict, config: StyleConfig, arch: str, n_styles: int) -> list[StyleConfig]:
    """One validated :class:`StyleConfig` per run (the single-run equivalent of run k)."""
    k_runs = len(settings["seed"])
    configs = []
    for k in range(k_runs):
        c = dataclasses.replace(
            config, content_weight=float(settings["content_weight"][k]),
            style_weight=float(settings["style_weight"][k]), tv_weight=float(settings["tv_weight"][k]),
            style_layer_weights=tuple(float(v) for v in settings["style_layer_weights"][k]),
            style_blend_weights=tuple(float(v) for v in settings["style_blend_weights"][k]),
            seed=int(settings["seed"][k]))
        try:
            configs.append(c.validate(arch, n_styles))
        except UsageError as e:
            raise UsageError(f"sweep run {k}: {e}") from None
    return configs


# ----------------------------------------------------------------------------------------------- sharding


def default_mesh() -> Mesh:
    """A 1-D mesh named ``"runs"`` over every device (every host's, after ``jax.distributed.initialize``)."""
    return jax.make_mesh((jax.device_count(),), (AXIS,), axis_types=(AxisType.Auto,))


def _auto(mesh: Mesh) -> Mesh:
    """The same devices and axis names with Auto axes.

    ``jax.make_mesh`` makes Explicit axes by default, which asks every op to resolve its output sharding in its
    type; the optimiser code carries no sharding annotations (and must not: it is the single-run code), so the
    sweep lets the compiler (GSPMD) propagate the K-axis split instead.
    """
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def _batch_spec(mesh: Mesh) -> PartitionSpec:
    # The run axis is split over all mesh axes together (a 2-D mesh shards K over its product).
    return PartitionSpec(tuple(mesh.axis_names))


def _put(tree, sharding: NamedSharding):
    """Place host arrays (identical on every process) on ``sharding``; works single- and multi-host."""
    def one(a):
        if isinstance(a, jax.Array) and jax.process_count() == 1:
            # Already on a device (the VGG weights, the targets): no round trip through host memory, which
            # cost 0.3 s per sweep for VGG19's 80 MB. Jax arrays are immutable, so sharing a buffer is safe.
            return jax.device_put(a, sharding)
        a = np.asarray(a)
        # Copies: a device buffer must not alias host memory that the caller may reuse.
        return jax.make_array_from_callback(a.shape, sharding, lambda index: np.array(a[index]))

    return jax.tree.map(one, tree)


def _host(a) -> np.ndarray:
    """A (possibly multi-host) array as a full numpy array on this process."""
    if getattr(a, "is_fully_addressable", True):
        return np.asarray(a)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def _pad(tree, k_padded: int):
    """Repeat the last run until the leading axis is ``k_padded`` (padding runs are dropped afterwards)."""
    def one(a):
        a = np.asarray(a)
        extra = k_padded - a.shape[0]
        return a if extra == 0 else np.concatenate([a, np.repeat(a[-1:], extra, axis=0)])

    return jax.tree.map(one, tree)


@functools.lru_cache(maxsize=16)
def _compiled(spec, opt_key: tuple, mesh: Mesh):
    """The vmapped chunk and terms functions, jitted once for one loss structure, optimiser and mesh."""
    opt = optim.make_optimizer(opt_key[0], learning_rate=opt_key[1], memory_size=opt_key[2])
    batched = NamedSharding(mesh, _batch_spec(mesh))
    replicated = NamedSharding(mesh, PartitionSpec())

    def chunk(model, xs, states, targets, weights, n, max_steps):
        def one(x, state, w, n):
            # Targets and model are closed over, not mapped: one copy shared by all K runs.
            return opt.run(lambda img: total_loss(img, model, targets, w, spec), x, state, n, max_steps)

        return jax.vmap(one)(xs, states, weights, n)

    def terms(model, xs, targets, weights):
        return jax.vmap(lambda x, w: loss_terms(x, model, targets, w, spec))(xs, weights)

    # Shardings as pytree prefixes: everything with a leading K axis is split over the mesh, the VGG parameters
    # and targets are replicated; every output has a leading K axis.
    run = jax.jit(chunk, static_argnums=(6,), donate_argnums=(2,),
                  in_shardings=(replicated, batched, batched, replicated, batched, batched), out_shardings=batched)
    terms_fn = jax.jit(terms, in_shardings=(replicated, batched, replicated, batched), out_shardings=batched)
    # Per-run choice between two (K, H, W, 3) arrays.
    select = jax.jit(lambda mask, a, b: jnp.where(mask[:, None, None, None], a, b), out_shardings=batched)

    step_fn = None
    if opt.step is not None:
        def step(model, xs, x_prevs, states, targets, weights, active):
            """One iteration of every run, loop-free (for the host-dispatched loop on CPU, see
            :func:`_host_chunk`). A run that is not ``active`` or whose loss at ``x`` is non-finite keeps its
            image and previous image, as in the body of ``optim._while_chunk``.

            Unlike that body, the optimiser state is not kept: a run is inactive only once it has stopped at a
            non-finite loss (every live run has the same iterations left), and a stopped run's state is never
            used again. Selecting the whole state per run (L-BFGS: 2 x memory images) cost 8 % of a K=1 step
            at 128 px.
            """
            def one(x, x_prev, state, w, a):
                new_x, new_state, value, used = opt.step(
                    lambda img: total_loss(img, model, targets, w, spec), x, state)
                ok = a & jnp.isfinite(value)
                return jnp.where(ok, new_x, x), jnp.where(ok, x, x_prev), new_state, value, jnp.where(a, used, 0)

            return jax.vmap(one)(xs, x_prevs, states, weights, active)

        # The state is donated (not the images: at a chunk's start ``x_prevs`` is ``xs``, one buffer).
        step_fn = jax.jit(step, donate_argnums=(3,),
                          in_shardings=(replicated, batched, batched, batched, replicated, batched, batched),
                          out_shardings=batched)
    # One optimiser state per run, made on the devices in the images' layout (init evaluates no loss).
    init = jax.jit(jax.vmap(opt.init), out_shardings=batched)
    return opt, run, terms_fn, select, batched, replicated, step_fn, init


def _host_chunk(step_fn, select, put, model, xs, states, targets, weights, n: np.ndarray,
                max_steps: int) -> optim.Chunk:
    """The vmapped chunk (same contract and arithmetic as the compiled ``run``), its loop on the host.

    On CPU XLA runs convolutions inside a while_loop body about 2x slower than the same program without a loop
    (jax-ml/jax#12868, see :func:`jaxstyle.gatys.run.host_loop_default`); single runs already dispatch one jitted
    step per iteration there, and so does a sweep: iteration i steps every run with ``i < n[k]`` whose losses
    have all been finite, and the host reads the K losses (one round-trip per iteration, negligible next to an
    evaluation). Per run the result equals ``optim._while_chunk``'s: a run stops at its first non-finite loss
    and keeps the iterate before it. Every run with ``n[k] > 0`` must have the same ``n[k]`` (as in
    :func:`stylize_many`, where all live runs have done the same iterations): the step does not keep the
    optimiser state of a run it skips.
    """
    live = n[n > 0]
    if live.size and (live != live[0]).any():
        raise ValueError(f"_host_chunk needs one iteration count for every live run, got {sorted(set(live))}")
    k = len(n)
    values = np.full((k, max_steps), np.nan, np.float32)
    steps = np.zeros(k, np.int32)
    evaluations = np.zeros(k, np.int32)
    alive = n > 0
    x_prevs = xs
    placed = {}  # the device copy of each distinct ``active`` mask (it changes only when a run stops)
    for i in range(int(n.max(initial=0))):
        active = alive & (i < n)
        if not active.any():
            break
        if active.tobytes() not in placed:
            placed[active.tobytes()] = put(active)
        xs, x_prevs, states, value, used = step_fn(model, xs, x_prevs, states, targets, weights,
                                                   placed[active.tobytes()])
        value, used = (_host(a) for a in (value, used))
        values[active, i] = value[active]
        evaluations += used.astype(np.int32)
        ok = active & np.isfinite(value)
        steps += ok
        alive &= ~(active & ~np.isfinite(value))
    finite = (n == 0) | alive
    # A run stopped at a non-finite loss keeps the iterate before the one that made it (x_prevs).
    x_good = select(put(finite), xs, x_prevs)
    return optim.Chunk(x_good, states, values, steps, finite, xs, evaluations, x_prevs)


# ----------------------------------------------------------------------------------------------- driver


def stylize_many(content, style, settings: Mapping[str, Any], *, model: VGGModel,
                 config: StyleConfig = DEFAULT_CONFIG, mesh: Mesh | None = None, chunk: int = 50,
                 callback: Callable[[SweepProgress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, host_loop: bool | None = None,
                 target_cache=None) -> SweepResult:
    """Run K stylizations of one content with one set of style images in a single vmapped optimisation.

    Args:
      content, style: as for :func:`~jaxstyle.gatys.run_stylize` (arrays or paths; ``style`` one or a list).
      settings: per-run values with a leading axis K, any of ``content_weight``, ``style_weight``,
        ``tv_weight`` (K,), ``style_layer_weights`` (K, L), ``style_blend_weights`` (K, S), ``seed`` (K,)
        (noise init). Anything not given comes from ``config``; a value without the K axis is shared.
      model: the VGG; its parameters are replicated on every device.
      config: everything else (sizes, layers, optimiser, iterations...). The default differs from
        ``StyleConfig()`` only in ``optimizer="lbfgs-nols"`` (see the module docstring).
      mesh: the devices to shard the K runs over (default: a 1-D mesh over all devices). K need not divide
        the device count: the last setting is repeated to fill the last device and those runs are dropped.
      chunk: iterations per compiled call; ``callback`` sees each chunk's end; ``should_stop`` is polled after
        every chunk for a clean stop (runs not finished are marked "interrupted"; so is Ctrl-C inside a chunk).
      host_loop: dispatch one jitted vmapped iteration at a time from Python instead of running each chunk in
        one compiled while_loop; default on CPU only, as for single runs (same arithmetic, about 2x faster on
        XLA CPU; see :func:`_host_chunk`).
      target_cache: reuse stored targets (see :func:`jaxstyle.gatys.prepare`).

    Run k equals ``run_stylize(content, style, model, configs[k])`` up to float summation order (tested to
    1e-4), where ``configs = run_configs(...)``.
    """
    start = time.perf_counter()
    if model.pooling != config.pooling:
        model = model.replace(module=model.module.clone(pooling=config.pooling))
    problem = prepare(model, content, style, config, target_cache)  # targets: once, shared by every run
    n_styles = max(len(problem.styles), 1)
    values = normalize_settings(settings, config, n_styles)
    configs = run_configs(values, config, model.arch, n_styles)
    k_runs = len(configs)
    weights = jax.tree.map(lambda *w: np.stack([np.asarray(v) for v in w]),
                           *[loss_weights(c, n_styles) for c in configs])
    style0 = problem.styles[0] if problem.styles else None
    if config.init == "noise":
        xs = np.stack([np.asarray(init_image("noise", problem.shape, seed=c.seed)) for c in configs])
    else:  # the same start for every run
        x0 = np.asarray(init_image(config.init, problem.shape, content=problem.content, style=style0))
        xs = np.broadcast_to(x0, (k_runs, *x0.shape))

    mesh = default_mesh() if mesh is None else _auto(mesh)
    k_padded = math.ceil(k_runs / mesh.size) * mesh.size
    opt_key = (config.optimizer, config.learning_rate, config.lbfgs_memory)
    opt, run, terms_fn, select, batched, replicated, step_fn, init = _compiled(problem.spec, opt_key, mesh)
    host_loop = host_loop_default() if host_loop is None else host_loop
    if not host_loop:
        step_fn = None
    xs, weights = _pad((xs, weights), k_padded)
    xs, weights = _put((xs, weights), batched)
    # One optimiser state per run, made on the devices in the images' layout (init evaluates no loss). Fresh
    # device buffers, never views of host memory: the state is donated to the first chunk.
    states = init(xs)
    model_r, targets_r = _put((model, problem.targets), replicated)
    one_run = None
    if step_fn is not None and k_padded == 1:
        # A sweep of one run on one device runs the single-run program itself (no batch axis anywhere inside):
        # the run is then bit-identical to run_stylize (tested), and none of the batching rules' extra work
        # (the compiled vmapped 128² step has 5 transposes and extra selects the single step has not) is
        # paid. The state is kept without its K axis between chunks; only the driver below sees it.
        one_run = _compiled_single_step(problem.spec, opt_key), jax.tree.map(lambda a: a[0], weights)
        states = jax.tree.map(lambda a: jnp.array(a[0], copy=True), states)

    chunk = max(1, int(chunk))
    done = np.zeros(k_padded, np.int64)
    evaluations = np.zeros(k_padded, np.int64)
    alive = np.ones(k_padded, bool)
    status = ["done"] * k_padded
    # Per run, as run_stylize: the iterate before the current one (whose loss was finite), kept across chunks in
    # case the next chunk's first loss, the one at the current iterate, is already non-finite.
    x_before, has_before = xs, np.zeros(k_padded, bool)
    x_good = xs
    try:
        while alive.any() and done[alive].min() < config.iterations:
            n = np.where(alive, np.minimum(chunk, config.iterations - done), 0).astype(np.int32)
            max_steps = int(n.max()) if opt.name == "scipy-lbfgs" else chunk
            if one_run is not None:
                step1, weights1 = one_run
                o = optim.host_chunk(lambda xi, si: step1(model_r, xi, si, targets_r, weights1), xs[0], states,
                                     int(n[0]), max_steps)
                out = optim.Chunk(o.x[None], o.state, o.values[None], np.asarray([o.steps]),
                                  np.asarray([o.finite]), o.x_last[None], np.asarray([o.evaluations]),
                                  o.x_prev[None])
            elif step_fn is not None:
                out = _host_chunk(step_fn, select, lambda a: _put(a, batched), model_r, xs, states, targets_r,
                                  weights, n, max_steps)
            else:
                out = run(model_r, xs, states, targets_r, weights, _put(n, batched), max_steps)
            xs, states = out.x, out.state
            steps, finite = _host(out.steps), _host(out.finite)
            evaluations += _host(out.evaluations)
            stopped = alive & ~finite
            # Non-finite after ``steps`` > 0 iterations: the last of them made the iterate with the non-finite
            # loss, and ``out.x`` is the one before it. Non-finite at the chunk's first loss: go back one more.
            done += np.where(finite, steps, np.maximum(steps - 1, 0))
            back = stopped & (steps == 0) & has_before
            if back.any():
                xs = select(_put(back, batched), x_before, xs)
                done -= back
            if out.x_prev is not None:
                x_before = select(_put(alive & finite, batched), out.x_prev, x_before)
                has_before |= alive & finite
            x_good = xs
            for k in np.flatnonzero(stopped):
                status[k] = "nonfinite"
            alive &= finite
            if callback is not None:
                t = {k: _host(v)[:k_runs] for k, v in terms_fn(model_r, xs, targets_r, weights).items()}
                callback(SweepProgress(int(done[:k_runs].min()), config.iterations, t,
                                       time.perf_counter() - start))
            if should_stop is not None and should_stop():
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        for k in np.flatnonzero(alive & (done < config.iterations)):
            status[k] = "interrupted"
    terms = {k: _host(v)[:k_runs] for k, v in terms_fn(model_r, x_good, targets_r, weights).items()}
    raw = _host(x_good)[:k_runs]
    images = np.stack([_finish(problem, config, jnp.asarray(x)) for x in raw])
    return SweepResult(images, terms, values, done[:k_runs], evaluations[:k_runs], status[:k_runs], x_good,
                       mesh, k_padded - k_runs, time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------- measurement


def count_evaluations(content, style, settings, *, model: VGGModel, config: StyleConfig, vmapped: bool) -> float:
    """Loss-and-gradient evaluations EXECUTED per image per iteration, counted at run time.

    A ``jax.debug.callback`` inside the loss increments a counter each time the loss body runs for one image
    (under ``vmap`` the callback fires once per lane, including lanes whose result a ``select`` discards, which
    is exactly the work a batched ``lax.cond`` costs). Each counted call is one VGG forward pass to the deepest
    loss layer plus its backward pass. ``vmapped=False`` runs the K settings one at a time instead. Uses a
    single chunk of ``config.iterations`` iterations; a diagnostic, not for production runs.
    """
    problem = prepare(model, content, style, config)
    n_styles = max(len(problem.styles), 1)
    configs = run_configs(normalize_settings(settings, config, n_styles), config, model.arch, n_styles)
    opt = optim.make_optimizer(config.optimizer, learning_rate=config.learning_rate,
                               memory_size=config.lbfgs_memory)
    calls = [0]

    def tick(value):  # under vmap the callback is unrolled: one call per lane
        calls[0] += 1

    def one(x, state, w, n):
        def fun(img):
            value = total_loss(img, model, problem.targets, w, problem.spec)
            jax.debug.callback(tick, value)
            return value

        return opt.run(fun, x, state, n, config.iterations)

    xs = jnp.stack([init_image("noise", problem.shape, seed=c.seed) for c in configs])
    ws = jax.tree.map(lambda *a: jnp.stack(a), *[loss_weights(c, n_styles) for c in configs])
    n = jnp.full((len(configs),), config.iterations, jnp.int32)
    if vmapped:
        out = jax.jit(jax.vmap(one))(xs, jax.vmap(opt.init)(xs), ws, n)
        steps = int(np.sum(out.steps))
    else:
        f = jax.jit(one)
        steps = 0
        for k in range(len(configs)):
            out = f(xs[k], opt.init(xs[k]), jax.tree.map(lambda a: a[k], ws), n[k])
            steps += int(out.steps)
    jax.effects_barrier()
    return calls[0] / steps
