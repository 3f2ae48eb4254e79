"""The Gatys optimisation driver for one image: :func:`run_stylize` and :func:`stylize`.

Built from the one run state machine (:mod:`jaxstyle.optim.loop`): this module only binds the objective to it,
jits its programs once per loss structure and optimiser (the edge), and turns the states it reaches into
progress reports and a :class:`StylizeResult`. The CLI's I/O lives in the callback, not here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import colour
from ..errors import NonFiniteLossError, UsageError
from ..nets import remat
from ..nets.model import VGGModel
from ..objective.perceptual import LossSpec, loss_terms, total_loss
from ..optim import loop
from ..optim import optimizers as optim
from ..optim.optimizers import make_optimizer
from . import tiled
from .config import StyleConfig, stage_configs
from .problem import Problem, init_image, prepare, resize

TERMS = ("content", "style", "tv")


@dataclasses.dataclass
class Progress:
    """What the driver tells its callback after each chunk."""

    iteration: int  # iterations completed so far
    iterations: int  # total requested
    image: np.ndarray  # current image, HWC float32 in [0, 1] (clipped copy, colours post-processed)
    terms: dict  # weighted loss terms at the current image (floats)
    values: np.ndarray  # total loss at the start of every iteration of this chunk
    evaluations: int  # loss-and-gradient evaluations so far
    seconds: float  # wall time since the start of the optimisation
    state: loop.RunState | None = None  # the run state (raw iterate, optimiser state), for checkpoints


@dataclasses.dataclass
class StylizeResult:
    image: np.ndarray  # final image, HWC float32 in [0, 1]
    iterations: int
    evaluations: int
    history: list  # one dict per chunk: iteration, total, content, style, tv, seconds
    status: str  # "done" | "interrupted" | "nonfinite"
    message: str = ""
    # Where to continue from (run_stylize(..., resume=state, history=history)); None when the state is unusable
    # (a hard interrupt inside a chunk consumed its optimiser state, or the loss became non-finite).
    state: loop.RunState | None = None


def optimizer_of(config: StyleConfig):
    """The optimiser ``config`` asks for."""
    return _optimizer(*_opt_key(config))


def _opt_key(config: StyleConfig) -> tuple:
    return config.optimizer, config.learning_rate, config.lbfgs_memory, config.average


@functools.lru_cache(maxsize=16)
def _optimizer(name: str, learning_rate: float, memory: int, average: float = 0.0):
    return make_optimizer(name, learning_rate=learning_rate, memory_size=memory, average=average)


def state_template(config: StyleConfig, shape) -> loop.RunState:
    """Shapes and dtypes of the run state of ``config`` for images of ``shape`` (what a checkpoint must hold)."""
    return jax.eval_shape(lambda x: loop.init(optimizer_of(config), x), jax.ShapeDtypeStruct(shape, jnp.float32))


def _split(state: loop.RunState):
    """(optimiser state, the rest): jitted programs donate the first, the big one, and nothing else, so the last
    completed chunk's image stays valid even if a hard interrupt lands inside the next one."""
    return state.opt_state, state._replace(opt_state=None)


@functools.lru_cache(maxsize=16)
def _programs(spec: LossSpec, opt_key: tuple):
    """The jitted step, chunk, terms and reject programs for one loss structure and optimiser (cached)."""
    opt = _optimizer(*opt_key)

    def fun(model, targets, weights):
        return lambda img: total_loss(img, model, targets, weights, spec)

    def one_step(model, targets, weights, opt_state, rest):
        return loop.step(opt, fun(model, targets, weights), rest._replace(opt_state=opt_state))

    def chunk(model, targets, weights, opt_state, rest, max_steps):
        return loop.run_chunk(opt, fun(model, targets, weights), rest._replace(opt_state=opt_state), max_steps)

    def terms(model, x, targets, weights):
        return loss_terms(x, model, targets, weights, spec)

    options = remat.compiler_options(spec.remat)
    return (jax.jit(one_step, donate_argnums=3, compiler_options=options),
            jax.jit(chunk, donate_argnums=3, static_argnames="max_steps", compiler_options=options),
            jax.jit(terms, compiler_options=options), jax.jit(loop.reject))


def programs(problem: Problem, config: StyleConfig, model: VGGModel, weights=None, *,
             host_loop: bool) -> loop.Programs:
    """:class:`~jaxstyle.optim.loop.Programs` for one run of ``problem`` (``weights``: its own, if given)."""
    step, chunk, terms, reject = _programs(problem.spec, _opt_key(config))
    targets, weights = problem.targets, problem.weights if weights is None else weights
    progs = loop.Programs(
        step=(lambda s: step(model, targets, weights, *_split(s))) if host_loop else None,
        chunk=lambda s, n: chunk(model, targets, weights, *_split(s), max_steps=n),
        terms=lambda x: terms(model, x, targets, weights),
        reject=lambda s, bad: reject(s, jnp.asarray(bad)),
        set_stop=lambda s, stop_at: s._replace(stop_at=jnp.asarray(stop_at, jnp.int32)))
    if config.tile is None:
        return progs
    # Tiled: the step and the loss terms tile by tile, always from the host (a compiled chunk holds every tile).
    return progs._replace(chunk=None, **tiled.step_and_terms(problem, model, weights, optimizer_of(config),
                                                             config.tile))


def host_loop_default() -> bool:
    """Dispatch iterations from the host on CPU (XLA CPU is slow inside while_loop bodies), loop on device
    elsewhere (GPU/TPU: many iterations per round-trip)."""
    return jax.default_backend() == "cpu"


def finish(problem: Problem, config: StyleConfig, x) -> np.ndarray:
    """The output image of iterate ``x``: clipped to [0, 1], colours post-processed."""
    img = jnp.clip(x, 0.0, 1.0)
    if config.original_colors == "luminance" and problem.content_rgb is not None:
        img = colour.combine_luminance(img, problem.content_rgb)
    return np.asarray(img, np.float32)


def start_state(problem: Problem, config: StyleConfig, resume: loop.RunState | None, init) -> loop.RunState:
    """The state a run starts from: ``resume`` (checked against the problem), else ``init``/``config.init``."""
    if resume is None:
        style0 = problem.styles[0] if problem.styles else None
        x = init_image(config.init if init is None else init, problem.shape, content=problem.content,
                       style=style0, seed=config.seed)
        return loop.init(optimizer_of(config), x)
    want = state_template(config, problem.shape)
    for got, need in zip(jax.tree.leaves(resume), jax.tree.leaves(want), strict=True):
        if np.shape(got) != need.shape or np.asarray(got).dtype != need.dtype:
            raise UsageError(f"the state to resume holds {np.shape(got)} {np.asarray(got).dtype} where this run "
                             f"needs {need.shape} {need.dtype} — resume with the same inputs and settings")
    return jax.tree.map(lambda a: jnp.array(a, copy=True), resume)


def _message(programs_, state) -> str:
    """Why a run stopped at a non-finite loss: the iteration and the term that failed (at ``x_prev``)."""
    bad = {k: float(v) for k, v in programs_.terms(state.x_prev).items()}
    culprit = [k for k in TERMS if not math.isfinite(bad[k])] or ["total"]
    iteration = int(state.iteration)
    return (f"loss became non-finite at iteration {iteration + 1} ({', '.join(culprit)} term); "
            f"kept the image of iteration {iteration}")


def run_stylize(content, styles, model: VGGModel, config: StyleConfig = StyleConfig(), *,
                chunk: int = 50, callback: Callable[[Progress], None] | None = None,
                resume: loop.RunState | None = None, history=(), init=None,
                should_stop: Callable[[], bool] | None = None, host_loop: bool | None = None,
                target_cache=None, content_masks=None, style_masks=None) -> StylizeResult:
    """Optimise an image; return a :class:`StylizeResult` (also on Ctrl-C or a non-finite loss).

    ``chunk`` iterations run between reports (one compiled call, or ``chunk`` host-dispatched steps);
    ``callback`` sees each chunk's end. ``init`` (an array) overrides ``config.init``. ``resume`` (a result's
    ``state``, with its ``history``) continues a run exactly: the steps are the same whatever the chunk
    boundaries, so a resumed run ends on the same image. ``should_stop`` is polled after every chunk (the CLI
    sets it from its SIGINT handler) for a clean stop whose state can still be checkpointed; a
    KeyboardInterrupt inside a chunk keeps the last completed image. ``host_loop`` (default: on CPU only) runs
    each chunk as jitted single steps dispatched from Python instead of one compiled while_loop: same step,
    and 1.7-5x faster on XLA CPU (docs/benchmarks.md). ``target_cache``, ``content_masks`` and
    ``style_masks`` (spatial control): see :func:`prepare`. ``config.tile`` evaluates tile by tile on the host
    (:mod:`jaxstyle.gatys.tiled`; always the host loop; not with masks).
    """
    model = model.with_pooling(config.pooling)
    host_loop = host_loop_default() if host_loop is None else host_loop
    stages = stage_configs(config, _final_long(content, styles, config))
    if len(stages) > 1 and resume is not None:
        raise UsageError("a coarse-to-fine run (scales) cannot be resumed from a state; run it again")
    run = _Run(callback, config.total_iterations, [dict(h) for h in history])
    state = None
    for k, stage in enumerate(stages):
        problem = prepare(model, content, styles, stage, target_cache, content_masks=content_masks,
                          style_masks=style_masks)
        progs = programs(problem, stage, model, host_loop=host_loop)
        if state is None:
            state = start_state(problem, stage, resume, init)
        else:  # the next stage starts from the previous result, upsampled; the optimiser state carried over
            x = resize(optim.output(state.opt_state, state.x), problem.shape[:2])
            state = loop.restart(state, x, optim.rescale_state(optimizer_of(stage), state.opt_state, x))
        state, ended = run.stage(problem, stage, progs, state, chunk, should_stop)
        if ended is not None or k == len(stages) - 1:
            return ended or _result(problem, stage, state, run.history,
                                    "done" if int(state.iteration) >= stage.iterations else "interrupted")
    raise AssertionError("unreachable: a run has at least one stage")


def _final_long(content, styles, config: StyleConfig) -> int:
    """The output's long side (for the stage sizes): ``image_size``, else the content's (style mode: style's)."""
    if config.image_size is not None:
        return config.image_size
    source = content if content is not None else (styles[0] if isinstance(styles, (list, tuple)) else styles)
    return int(max(np.shape(source)[:2]))


class _Run:
    """The reports of one run across its stages: history records, callbacks, the last completed state."""

    def __init__(self, callback, total: int, history: list):
        self.callback, self.total, self.history = callback, total, history
        self.start = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
        self.last = None

    def stage(self, problem, config, progs, state, chunk, should_stop):
        """Run one stage to ``config.iterations``: (state, None), or (state, the result) where the run ended."""
        self.last = state

        def on_chunk(s, terms, values):
            self.last = s
            t = {k: float(v) for k, v in terms.items()}
            record = {"iteration": int(s.iteration), **t, "seconds": time.perf_counter() - self.start}
            self.history.append(record)
            if self.callback is not None:
                self.callback(Progress(record["iteration"], self.total, finish(problem, config, image_of(s)), t,
                                       _finite_prefix(np.asarray(values)), int(s.evaluations), record["seconds"],
                                       s))

        try:
            state = loop.run_chunks(progs, state, config.iterations, chunk, on_chunk=on_chunk,
                                    should_stop=should_stop)
        except KeyboardInterrupt:  # inside a chunk: its donated optimiser state is gone, the last chunk's image
            # is not
            return state, _result(problem, config, self.last, self.history, "interrupted", resumable=False)
        if not bool(state.finite):
            return state, _result(problem, config, state, self.history, "nonfinite", _message(progs, state))
        if int(state.iteration) < config.iterations:
            return state, _result(problem, config, state, self.history, "interrupted")
        return state, None


def image_of(state: loop.RunState, usable: bool = True) -> jax.Array:
    """The image a state stands for: the average of iterates when the optimiser keeps one (``usable``: its
    state was not donated away), else the iterate."""
    return optim.output(state.opt_state, state.x) if usable and state.finite else state.x


def _finite_prefix(values) -> np.ndarray:
    """The losses of a chunk's steps up to its first non-finite one (the rest is that one and NaN padding)."""
    values = np.asarray(values)
    return values[:int(np.argmin(np.isfinite(np.append(values, np.nan))))]


def _result(problem, config, state, history, status, message="", resumable=True) -> StylizeResult:
    iteration = int(state.iteration)
    if status == "interrupted":
        message = f"interrupted after {iteration} iterations; kept the last good image"
    keep = resumable and status != "nonfinite"
    return StylizeResult(finish(problem, config, image_of(state, resumable)), iteration, int(state.evaluations),
                         history, status, message, state if keep else None)


def stylize(content, style, *, model: VGGModel | None = None, content_masks=None, style_masks=None,
            **options) -> np.ndarray:
    """Stylize ``content`` (an HWC array in [0, 1]) with one or more ``style`` images; return the image.

    ``options`` are :class:`StyleConfig` fields (e.g. ``style_weight=1e5, iterations=300``). Without ``model``
    the random VGG is used (with its warning). ``content_masks`` (one HW array in [0, 1] per style image: where
    it goes) and ``style_masks`` assign styles to regions (Gatys et al. 2017, see :func:`prepare`). Raises
    :class:`NonFiniteLossError` if the loss diverges.
    """
    from ..nets.model import load_vgg

    config = StyleConfig(**options)
    model = model if model is not None else load_vgg("random", pooling=config.pooling)
    result = run_stylize(content, style, model, config, content_masks=content_masks, style_masks=style_masks)
    if result.status == "nonfinite":
        raise NonFiniteLossError(result.message)
    if result.status == "interrupted":
        raise KeyboardInterrupt(result.message)
    return result.image
