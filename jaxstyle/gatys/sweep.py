"""Many stylizations at once: one ``jax.vmap``-ed, jitted optimisation over K settings, sharded over devices.

:func:`stylize_many` prepares the problem once (:func:`jaxstyle.gatys.prepare`: resizing, colour handling and
the content/style targets are computed once and shared by every run, never K times), stacks K
:class:`~jaxstyle.objective.LossWeights` (a pytree of arrays, so it vmaps) and K starting images, and runs the
same run state machine as :func:`~jaxstyle.gatys.run_stylize` (:mod:`jaxstyle.optim.loop`) under ``jax.vmap``. The K axis is sharded over
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

from ..errors import ConfigError, UsageError
from ..nets import remat
from ..nets.model import VGGModel
from ..objective.perceptual import loss_terms, total_loss
from ..optim import loop
from . import run as single
from .config import SWEEPABLE, StyleConfig, blend_weights, layer_weights, loss_weights
from .problem import init_image, prepare

# The sweep's one departure from StyleConfig's defaults (see the module docstring for the measurement).
SWEEP_OPTIMIZER = "lbfgs-nols"
DEFAULT_CONFIG = StyleConfig(optimizer=SWEEP_OPTIMIZER)
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


def _as_array(name: str, value) -> np.ndarray:
    return np.asarray(value, np.int64 if name == "seed" else np.float64)


def normalize_settings(settings: Mapping[str, Any], config: StyleConfig, n_styles: int) -> dict:
    """Check ``settings`` and return every sweepable setting as a (K, ...) numpy array, defaults from ``config``.

    A 0-d value (1-D for the two vector settings) is shared by every run. Raises :class:`UsageError`.
    """
    unknown = sorted(set(settings) - set(SWEEPABLE))
    if unknown:
        raise UsageError(f"unknown sweep setting {unknown[0]!r}; expected some of {', '.join(SWEEPABLE)}")
    arrays = {k: _as_array(k, v) for k, v in settings.items()}
    counts = {k: a.shape[0] for k, a in arrays.items() if a.ndim == SWEEPABLE[k] + 1}
    for k, a in arrays.items():
        if a.ndim not in (SWEEPABLE[k], SWEEPABLE[k] + 1):
            raise UsageError(f"sweep setting {k} must have shape (K{', n' * SWEEPABLE[k]}), got {a.shape}")
    if len(set(counts.values())) > 1:
        raise UsageError("sweep settings disagree on the number of runs K: "
                         + ", ".join(f"{k} has {n}" for k, n in counts.items()))
    k_runs = next(iter(counts.values()), 1)
    if k_runs < 1:
        raise UsageError("a sweep needs at least one run (K >= 1)")
    # None in StyleConfig means "the paper's 1/L" and "equal blend" (loss_weights normalises the blend).
    defaults = {k: getattr(config, k) for k in SWEEPABLE}
    defaults.update(style_layer_weights=layer_weights(config), style_blend_weights=blend_weights(config, n_styles))
    out = {}
    for k, default in defaults.items():
        a = arrays.get(k, _as_array(k, default))
        out[k] = np.array(np.broadcast_to(a, (k_runs, *a.shape)) if a.ndim == SWEEPABLE[k] else a)
    return out


def run_configs(settings: dict, config: StyleConfig, arch: str, n_styles: int) -> list[StyleConfig]:
    """One :class:`StyleConfig` per run (the single-run equivalent of run k), each checked; an invalid one raises
    :class:`~jaxstyle.errors.ConfigError` saying which run."""
    configs = []
    for k in range(len(settings["seed"])):
        values = {name: (tuple(a[k].tolist()) if SWEEPABLE[name] else a[k].item()) for name, a in settings.items()}
        try:
            configs.append(dataclasses.replace(config, **values))
            configs[-1].check_against(arch, n_styles)
        except ConfigError as e:
            raise e.within(f"sweep run {k}: ") from None
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
def _programs(spec, opt_key: tuple, mesh: Mesh):
    """The vmapped step, chunk, terms and reject programs, jitted once per loss structure, optimiser and mesh.

    Shardings as pytree prefixes: everything with a leading K axis is split over the mesh, the VGG parameters and
    the targets are replicated; every output has a leading K axis. The optimiser state is donated (not the
    images: the last completed chunk's images must survive a hard interrupt).
    """
    opt = single._optimizer(*opt_key)
    batched, replicated = NamedSharding(mesh, _batch_spec(mesh)), NamedSharding(mesh, PartitionSpec())

    def fun(model, targets, w):  # targets and model are closed over, not mapped: one copy shared by all K runs
        return lambda img: total_loss(img, model, targets, w, spec)

    def one_step(model, targets, weights, opt_state, rest):
        return jax.vmap(lambda w, o, r: loop.step(opt, fun(model, targets, w), r._replace(opt_state=o)))(
            weights, opt_state, rest)

    def chunk(model, targets, weights, opt_state, rest, max_steps):
        return jax.vmap(lambda w, o, r: loop.run_chunk(opt, fun(model, targets, w), r._replace(opt_state=o),
                                                       max_steps))(weights, opt_state, rest)

    def terms(model, xs, targets, weights):
        return jax.vmap(lambda x, w: loss_terms(x, model, targets, w, spec))(xs, weights)

    options = remat.compiler_options(spec.remat)
    shard = dict(in_shardings=(replicated, replicated, batched, batched, batched), out_shardings=batched,
                 compiler_options=options)
    return (jax.jit(one_step, donate_argnums=3, **shard),
            jax.jit(chunk, donate_argnums=3, static_argnums=5, **shard),
            jax.jit(terms, in_shardings=(replicated, batched, replicated, batched), out_shardings=batched,
                    compiler_options=options),
            jax.jit(jax.vmap(loop.reject), out_shardings=batched), batched, replicated)


def _batched_programs(problem, config, model, weights, mesh, host_loop: bool) -> loop.Programs:
    """:class:`~jaxstyle.optim.loop.Programs` of K vmapped runs sharded over ``mesh``."""
    step, chunk, terms, reject, batched, replicated = _programs(
        problem.spec, (config.optimizer, config.learning_rate, config.lbfgs_memory), mesh)
    model, targets = _put((model, problem.targets), replicated)
    split = single._split
    return loop.Programs(
        step=(lambda s: step(model, targets, weights, *split(s))) if host_loop else None,
        chunk=lambda s, n: chunk(model, targets, weights, *split(s), n),
        terms=lambda xs: terms(model, xs, targets, weights),
        reject=lambda s, bad: reject(s, _put(bad, batched)),
        set_stop=lambda s, stop_at: s._replace(stop_at=_put(stop_at, batched)))


def _initial_images(problem, config, configs) -> np.ndarray:
    """(K, H, W, 3): noise from each run's seed, or the same start for every run."""
    if config.init == "noise":
        return np.stack([np.asarray(init_image("noise", problem.shape, seed=c.seed)) for c in configs])
    style0 = problem.styles[0] if problem.styles else None
    x0 = np.asarray(init_image(config.init, problem.shape, content=problem.content, style=style0))
    return np.broadcast_to(x0, (len(configs), *x0.shape))


def _setup(problem, config, model, weights, xs, mesh, host_loop: bool):
    """The programs and the initial (K-batched, sharded) state; a sweep of one run on one device is the single
    run itself: no batch axis anywhere inside, so it is bit-identical to run_stylize (tested), and none of the
    batching rules' extra work (the compiled vmapped 128² step has 5 transposes and extra selects the single
    step has not) is paid."""
    opt = single.optimizer_of(config)
    if len(xs) == 1 and mesh.size == 1:
        w1 = jax.tree.map(lambda a: jnp.asarray(a[0]), weights)
        return single.programs(problem, config, model, w1, host_loop=host_loop), loop.init(opt, xs[0])
    # One optimiser state per run, made in fresh buffers (the state is donated to the first chunk), then placed.
    state = jax.vmap(functools.partial(loop.init, opt))(jnp.asarray(xs))
    batched = _programs(problem.spec, (config.optimizer, config.learning_rate, config.lbfgs_memory), mesh)[4]
    weights = _put(weights, batched)
    return _batched_programs(problem, config, model, weights, mesh, host_loop), _put(state, batched)


# ----------------------------------------------------------------------------------------------- driver


def _check_single_stage(config: StyleConfig) -> None:
    """Refuse what run_stylize does and a sweep does not (yet): stages, averages, tiles."""
    if config.scales or config.num_scales > 1 or config.average:  # run_stylize's, not (yet) vmapped here
        raise UsageError("a sweep runs one stage and outputs the last iterate: --scales, --num-scales and "
                         "--average are for stylize")
    if config.tile is not None:  # vmapped runs dispatch one program; tiles are host-dispatched calls
        raise UsageError("a sweep evaluates the whole image: --tile is for stylize")


def stylize_many(content, style, settings: Mapping[str, Any], *, model: VGGModel,
                 config: StyleConfig = DEFAULT_CONFIG, mesh: Mesh | None = None, chunk: int = 50,
                 callback: Callable[[SweepProgress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, host_loop: bool | None = None,
                 target_cache=None) -> SweepResult:
    """Run K stylizations of one content with one set of style images in a single vmapped optimisation.

    Args:
      content, style: as for :func:`~jaxstyle.gatys.run_stylize` (HWC arrays; ``style`` one or a list).
      settings: per-run values with a leading axis K, any of ``content_weight``, ``style_weight``,
        ``tv_weight`` (K,), ``style_layer_weights`` (K, L), ``style_blend_weights`` (K, S), ``seed`` (K,)
        (noise init). Anything not given comes from ``config``; a value without the K axis is shared.
      model: the VGG; its parameters are replicated on every device.
      config: everything else (sizes, layers, optimiser, iterations...). The default differs from
        ``StyleConfig()`` only in ``optimizer="lbfgs-nols"`` (see the module docstring).
      mesh: the devices to shard the K runs over (default: a 1-D mesh over all devices). K need not divide
        the device count: the last setting is repeated to fill the last device and those runs are dropped.
      chunk: iterations between reports; ``callback`` sees each chunk's end; ``should_stop`` is polled after
        every chunk for a clean stop (runs not finished are marked "interrupted"; so is Ctrl-C inside a chunk).
      host_loop: dispatch one jitted vmapped iteration at a time from Python instead of running each chunk in
        one compiled while_loop; default on CPU only, as for single runs (same step, about 2x faster on XLA
        CPU; see :mod:`jaxstyle.optim.loop`).
      target_cache: reuse stored targets (see :func:`jaxstyle.gatys.prepare`).

    Run k equals ``run_stylize(content, style, model, configs[k])`` up to float summation order (tested to
    1e-4), where ``configs = run_configs(...)``.
    """
    start = time.perf_counter()
    _check_single_stage(config)
    model = model.with_pooling(config.pooling)
    problem = prepare(model, content, style, config, target_cache)  # targets: once, shared by every run
    n_styles = max(len(problem.styles), 1)
    values = normalize_settings(settings, config, n_styles)
    configs = run_configs(values, config, model.arch, n_styles)
    k_runs = len(configs)
    weights = jax.tree.map(lambda *w: np.stack([np.asarray(v) for v in w]),
                           *[loss_weights(c, n_styles) for c in configs])
    mesh = default_mesh() if mesh is None else _auto(mesh)
    k_padded = math.ceil(k_runs / mesh.size) * mesh.size
    xs, weights = _pad((_initial_images(problem, config, configs), weights), k_padded)
    host_loop = single.host_loop_default() if host_loop is None else host_loop
    programs, state = _setup(problem, config, model, weights, xs, mesh, host_loop)
    last = state

    def on_chunk(s, terms, _values):
        nonlocal last
        last = s
        if callback is not None:
            done = np.reshape(_host(s.iteration), -1)[:k_runs]
            t = {k: np.reshape(_host(v), -1)[:k_runs] for k, v in terms.items()}
            callback(SweepProgress(int(done.min()), config.iterations, t, time.perf_counter() - start))

    try:
        state = loop.run_chunks(programs, state, config.iterations, chunk, on_chunk=on_chunk,
                                should_stop=should_stop, to_host=_host)
    except KeyboardInterrupt:
        state = last
    return _sweep_result(problem, config, programs, state, values, k_runs, mesh, time.perf_counter() - start)


def _sweep_result(problem, config, programs, state, settings, k_runs, mesh, seconds) -> SweepResult:
    terms = {k: np.reshape(_host(v), -1)[:k_runs] for k, v in programs.terms(state.x).items()}
    if np.ndim(_host(state.finite)) == 0:  # the single-run path: give it its K axis
        state = jax.tree.map(lambda a: a[None], state)
    finite, done = _host(state.finite), _host(state.iteration)
    status = ["done" if d >= config.iterations else "interrupted" for d in done]
    status = [s if f else "nonfinite" for s, f in zip(status, finite)]
    raw = _host(state.x)[:k_runs]
    images = np.stack([single.finish(problem, config, jnp.asarray(x)) for x in raw])
    return SweepResult(images, terms, settings, done[:k_runs], _host(state.evaluations)[:k_runs], status[:k_runs],
                       state.x, mesh, len(done) - k_runs, seconds)


# ----------------------------------------------------------------------------------------------- measurement


def count_evaluations(content, style, settings, *, model: VGGModel, config: StyleConfig, vmapped: bool) -> float:
    """Loss-and-gradient evaluations EXECUTED per image per iteration, counted at run time.

    A ``jax.debug.callback`` inside the loss increments a counter each time the loss body runs for one image
    (under ``vmap`` the callback fires once per lane, including lanes whose result a ``select`` discards, which
    is exactly the work a batched ``lax.cond`` costs). Each counted call is one VGG forward pass to the deepest
    loss layer plus its backward pass. ``vmapped=False`` runs the K settings one at a time instead. Uses a
    single chunk of ``config.iterations`` iterations (the compiled while-loop); a diagnostic, not for
    production runs.
    """
    problem = prepare(model, content, style, config)
    n_styles = max(len(problem.styles), 1)
    configs = run_configs(normalize_settings(settings, config, n_styles), config, model.arch, n_styles)
    opt = single.optimizer_of(config)
    calls = [0]

    def tick(value):  # under vmap the callback is unrolled: one call per lane
        calls[0] += 1

    def one(x, w):
        def fun(img):
            value = total_loss(img, model, problem.targets, w, problem.spec)
            jax.debug.callback(tick, value)
            return value

        state = loop.init(opt, x)._replace(stop_at=jnp.int32(config.iterations))
        return loop.run_chunk(opt, fun, state, config.iterations)[0].iteration

    xs = jnp.stack([init_image("noise", problem.shape, seed=c.seed) for c in configs])
    ws = jax.tree.map(lambda *a: jnp.stack(a), *[loss_weights(c, n_styles) for c in configs])
    if vmapped:
        steps = int(np.sum(jax.jit(jax.vmap(one))(xs, ws)))
    else:
        f = jax.jit(one)
        steps = sum(int(f(xs[k], jax.tree.map(lambda a: a[k], ws))) for k in range(len(configs)))
    jax.effects_barrier()
    return calls[0] / steps
