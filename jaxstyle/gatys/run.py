"""The Gatys optimisation driver: :func:`run_stylize` and :func:`stylize`.

The only place of a single run that calls ``jax.jit`` (once per configuration); it runs the optimiser in chunks of
many iterations and hands progress to an optional callback (the CLI's I/O lives there, not here).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import colour
from ..errors import NonFiniteLossError
from ..nets.model import VGGModel
from ..objective.perceptual import LossSpec, loss_terms, total_loss
from ..optim import optimizers as optim
from .config import StyleConfig
from .problem import Problem, init_image, prepare

# ----------------------------------------------------------------------------------------------------------
# The driver


@dataclasses.dataclass
class Progress:
    """What the driver tells its callback after each compiled chunk."""

    iteration: int  # iterations completed so far
    iterations: int  # total requested
    image: np.ndarray  # current image, HWC float32 in [0, 1] (clipped copy, colours post-processed)
    terms: dict  # weighted loss terms at the current image (floats)
    values: np.ndarray  # total loss at the start of every iteration of this chunk
    evaluations: int  # loss-and-gradient evaluations so far
    seconds: float  # wall time since the start of the optimisation
    x: Any = None  # raw optimiser iterate (unclipped), for checkpoints
    opt_state: Any = None  # optimiser state, for checkpoints


@dataclasses.dataclass
class StylizeResult:
    image: np.ndarray  # final image, HWC float32 in [0, 1]
    iterations: int
    evaluations: int
    history: list  # one dict per chunk: iteration, total, content, style, tv, seconds
    status: str  # "done" | "interrupted" | "nonfinite"
    message: str = ""
    # Where to continue from (raw iterate and optimiser state after the last completed chunk); None when the
    # state is unusable (a hard interrupt inside a chunk, or a non-finite loss).
    resume: "ResumeState | None" = None


@functools.lru_cache(maxsize=16)
def _compiled(spec: LossSpec, opt_key: tuple):
    """Jitted chunk and terms functions for one loss structure and optimiser (cached across runs)."""
    opt = optim.make_optimizer(opt_key[0], learning_rate=opt_key[1], memory_size=opt_key[2])

    def chunk(model, x, state, targets, weights, n, max_steps):
        fun = lambda img: total_loss(img, model, targets, weights, spec)
        return opt.run(fun, x, state, n, max_steps)

    def terms(model, x, targets, weights):
        return loss_terms(x, model, targets, weights, spec)

    # Donate the optimiser state (the big buffers: L-BFGS keeps 2 x memory images); each chunk consumes it and
    # returns its successor. The image is not donated, so the last completed chunk's image stays valid even
    # if a hard interrupt lands while the next chunk runs.
    run = jax.jit(chunk, static_argnames=("max_steps",), donate_argnums=(2,))
    return opt, run, jax.jit(terms)


@functools.lru_cache(maxsize=16)
def _compiled_step(spec: LossSpec, opt_key: tuple):
    """One jitted, loop-free optimiser iteration (for host-dispatched loops, see ``optim.host_chunk``)."""
    opt = optim.make_optimizer(opt_key[0], learning_rate=opt_key[1], memory_size=opt_key[2])

    def step(model, x, state, targets, weights):
        return opt.step(lambda img: total_loss(img, model, targets, weights, spec), x, state)

    return jax.jit(step, donate_argnums=(2,))


def host_loop_default() -> bool:
    """Dispatch iterations from the host on CPU (XLA CPU is slow inside while_loop bodies), loop on device
    elsewhere (GPU/TPU: many iterations per round-trip)."""
    return jax.default_backend() == "cpu"


def _finish(problem: Problem, config: StyleConfig, x) -> np.ndarray:
    img = jnp.clip(x, 0.0, 1.0)
    if config.original_colors == "luminance" and problem.content_rgb is not None:
        img = colour.combine_luminance(img, problem.content_rgb)
    return np.asarray(img, np.float32)


class ResumeState(NamedTuple):
    x: Any
    opt_state: Any
    iteration: int
    evaluations: int
    history: list


def run_stylize(content, styles, model: VGGModel, config: StyleConfig = StyleConfig(), *,
                chunk: int = 50, callback: Callable[[Progress], None] | None = None,
                resume: ResumeState | None = None, init=None,
                should_stop: Callable[[], bool] | None = None, host_loop: bool | None = None,
                target_cache=None) -> StylizeResult:
    """Optimise an image; return a :class:`StylizeResult` (also on Ctrl-C or a non-finite loss).

    ``chunk`` iterations run per compiled call (one host round-trip); ``callback`` sees each chunk's end.
    ``init`` (an array) overrides ``config.init``. ``resume`` continues a checkpointed run exactly: the
    compiled loop is the same whatever the chunk boundaries, so a resumed run ends on the same image.
    ``should_stop`` is polled after every chunk (the CLI sets it from its SIGINT handler) for a clean stop
    whose state can still be checkpointed; a KeyboardInterrupt inside a chunk keeps the last completed image.
    ``host_loop`` (default: on CPU only) runs each chunk as jitted single steps dispatched from Python instead
    of one compiled while_loop: same arithmetic, and 1.7-5x faster on XLA CPU (docs/benchmarks.md).
    ``target_cache``: see :func:`prepare`.
    """
    if model.pooling != config.pooling:
        model = model.replace(module=model.module.clone(pooling=config.pooling))
    problem = prepare(model, content, styles, config, target_cache)
    style0 = problem.styles[0] if problem.styles else None
    opt_key = (config.optimizer, config.learning_rate, config.lbfgs_memory)
    opt, run, terms_fn = _compiled(problem.spec, opt_key)
    host_loop = host_loop_default() if host_loop is None else host_loop
    step_fn = _compiled_step(problem.spec, opt_key) if host_loop and opt.step is not None else None
    if resume is not None:
        from ..io.checkpoint import CheckpointError, restore_state

        x = jnp.asarray(resume.x, jnp.float32)
        if tuple(x.shape) != tuple(problem.shape):
            raise CheckpointError("checkpoint", f"image is {tuple(x.shape)}, this run makes {problem.shape}",
                                  "resume with the same inputs and --image-size")
        # Accepts the state pytree itself or the flat list of leaves a checkpoint file holds.
        state = restore_state(opt.init(x), jax.tree.leaves(resume.opt_state))
        iteration, evaluations, history = resume.iteration, resume.evaluations, list(resume.history)
    else:
        x = init_image(config.init if init is None else init, problem.shape, content=problem.content,
                       style=style0, seed=config.seed)
        # Copy: optax states may hold ``x`` itself, and one buffer cannot be donated twice. The explicit dtype
        # also makes optax's weak-typed initial scalars strong, as they are after a chunk: otherwise the second
        # chunk's argument types differ from the first's and the loop compiles twice.
        state = jax.tree.map(lambda a: jnp.array(a, dtype=jnp.asarray(a).dtype, copy=True), opt.init(x))
        iteration, evaluations, history = 0, 0, []
    chunk = max(1, int(chunk))
    start = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    status, message = "done", ""
    x_good, x_before, resumable = x, None, True
    try:
        while iteration < config.iterations:
            n = min(chunk, config.iterations - iteration)
            # jax.scipy's maxiter is static, so that optimiser compiles per distinct chunk length.
            max_steps = n if opt.name == "scipy-lbfgs" else chunk
            if step_fn is not None:
                out = optim.host_chunk(lambda xi, si: step_fn(model, xi, si, problem.targets, problem.weights),
                                       x, state, n, max_steps)
            else:
                out = run(model, x, state, problem.targets, problem.weights, jnp.int32(n), max_steps=max_steps)
            x, state = out.x, out.state
            steps, finite = int(out.steps), bool(out.finite)
            evaluations += int(out.evaluations)
            # ``steps`` counts the steps that started from a finite loss; when the chunk stopped, its last
            # counted step produced the iterate with the non-finite loss and ``out.x`` is the one before it.
            if finite:
                iteration += steps
                x_before = out.x_prev
            elif steps > 0:
                iteration += steps - 1
            elif x_before is not None:
                # The loss at this chunk's start (the previous chunk's last iterate) is non-finite although the
                # end-of-chunk evaluation below found it finite (borderline overflow): keep the one before it.
                x, iteration = x_before, iteration - 1
            t = {k: float(v) for k, v in terms_fn(model, x, problem.targets, problem.weights).items()}
            if finite and not math.isfinite(t["total"]):
                # The chunk's last iterate is only evaluated here: stop now rather than one chunk later.
                bad, finite, x, iteration = t, False, out.x_prev, iteration - 1
                t = {k: float(v) for k, v in terms_fn(model, x, problem.targets, problem.weights).items()}
            elif not finite:
                bad = {k: float(v) for k, v in terms_fn(model, out.x_last, problem.targets, problem.weights).items()}
            x_good = x
            if not finite:
                culprit = [k for k in ("content", "style", "tv") if not math.isfinite(bad[k])] or ["total"]
                status = "nonfinite"
                message = (f"loss became non-finite at iteration {iteration + 1} ({', '.join(culprit)} term); "
                           f"kept the image of iteration {iteration}")
            record = {"iteration": iteration, **t, "seconds": time.perf_counter() - start}
            history.append(record)
            if callback is not None:
                callback(Progress(iteration, config.iterations, _finish(problem, config, x), t,
                                  np.asarray(out.values)[:steps], evaluations, record["seconds"], x, state))
            if status != "done":
                resumable = False
                break
            if should_stop is not None and should_stop() and iteration < config.iterations:
                status, message = "interrupted", f"interrupted after {iteration} iterations; kept the last good image"
                break
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted after {iteration} iterations; kept the last good image"
        resumable = False  # the donated optimiser state of the interrupted chunk is gone
    resume_out = ResumeState(x_good, state, iteration, evaluations, history) if resumable else None
    return StylizeResult(_finish(problem, config, x_good), iteration, evaluations, history, status, message,
                         resume_out)


def stylize(content, style, *, model: VGGModel | None = None, **options) -> np.ndarray:
    """Stylize ``content`` (HWC array in [0, 1] or a path) with one or more ``style`` images; return the image.

    ``options`` are :class:`StyleConfig` fields (e.g. ``style_weight=1e5, iterations=300``). Without ``model``
    the random VGG is used (with its warning). Raises :class:`NonFiniteLossError` if the loss diverges.
    """
    from ..nets.model import load_vgg

    config = StyleConfig(**options)
    model = model if model is not None else load_vgg("random", pooling=config.pooling)
    result = run_stylize(content, style, model, config)
    if result.status == "nonfinite":
        raise NonFiniteLossError(result.message)
    if result.status == "interrupted":
        raise KeyboardInterrupt(result.message)
    return result.image
