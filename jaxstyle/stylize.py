"""Gatys et al. style transfer: configuration, targets, the total loss, and the optimisation driver.

The core (:func:`content_targets`, :func:`style_targets`, :func:`total_loss`) is pure. :func:`run_stylize` is the
driver: the only place here that calls ``jax.jit`` (once per configuration), runs the optimiser in compiled
chunks of many iterations, and hands progress to an optional callback (the CLI's I/O lives there, not here).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import colour, optim, vgg
from . import precision as precision_lib
from .errors import NonFiniteLossError, UsageError
from .losses import content_loss, gram_matrix, style_layer_loss, tv_loss
from .model import VGGModel
# Precision-aware feature extraction (float32 by default): the one name the core calls, so tests and
# benchmarks can instrument it in one place.
from .precision import extract_features

INITS = ("noise", "content", "style")
_EPS = 1e-12
NORMALIZATIONS = ("relative", "size", "paper")
ORIGINAL_COLORS = ("none", "luminance", "histogram")
MODES = ("transfer", "content", "style")


@dataclasses.dataclass(frozen=True)
class StyleConfig:
    """Every hyperparameter of a stylization, with its one default. The CLI reads its defaults from here.

    Weights follow the paper: total = content_weight * L_content + style_weight * sum_l w_l E_l
    + tv_weight * TV (see ``normalization`` for the one departure, on by default).
    """

    content_weight: float = 1.0  # alpha
    # beta: with "relative" normalisation, 10 leaves a content relative error of ~0.3 and a style relative error
    # of ~0.01 after 100 L-BFGS iterations (measured at 64 px; see docs/algorithm.md).
    style_weight: float = 10.0
    # gamma. Departure: the paper has no TV term. With real weights, from noise, gamma = 1 brings the result's own
    # total variation down to the painting's (192 px, 150 iterations: 0.234 -> 0.026; starry_night 0.026) at no
    # visible cost (content and style relative errors within 2 %); 100 smooths brushwork away (docs/algorithm.md).
    tv_weight: float = 1.0
    content_layers: tuple[str, ...] = ("relu4_2",)  # Gatys et al.: "conv4_2" (post-ReLU in Caffe)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    style_layer_weights: tuple[float, ...] | None = None  # w_l; None = 1/L each (paper: 1/5)
    style_blend_weights: tuple[float, ...] | None = None  # one per style image; None = equal; normalised to sum 1
    # How the loss terms are normalised, in one place (loss_terms); see docs/algorithm.md.
    # "relative" (default): every content and style layer term is divided by its target's own energy
    #   (sum P^2 for content, sum A^2 / (4 N^2 M^2) for style), so each is a relative squared error: the
    #   same weights work at every image size AND for every weights source (Caffe 0-255 features are ~50x
    #   larger than torchvision's, which scales the paper's content term by ~2500 and style by ~6e6).
    # "size": content and TV are means instead of sums (size-independent; still depends on feature scale).
    # "paper": the exact formulas of Gatys et al.; weights then depend on image size and weights source.
    normalization: str = "relative"
    image_size: int | None = 512  # long side of the output in pixels; None keeps the content's size
    style_scale: float = 1.0  # style image long side = style_scale * image_size
    init: str = "noise"  # noise | content | style
    seed: int = 0
    iterations: int = 500
    # lbfgs-nols (default) | lbfgs | adam | scipy-lbfgs. Unit-step L-BFGS, as neural-style's default: at 64 px it
    # reached PyTorch strong-Wolfe L-BFGS's 300-evaluation loss in 250 evaluations (optax's zoom line search did
    # not, within 300), costs one evaluation per iteration (also under vmap) and needs no loop inside a step,
    # which XLA CPU runs 2x slower (docs/benchmarks.md). ``lbfgs`` (zoom line search) is the paper-like choice.
    optimizer: str = "lbfgs-nols"
    learning_rate: float = 0.02  # Adam only (image in [0, 1] units)
    lbfgs_memory: int = 100  # history size, as neural-style
    original_colors: str = "none"  # none | luminance | histogram (Gatys et al. 2017)
    color_match: str = "pca"  # pca | chol | sym, for original_colors="histogram"
    mode: str = "transfer"  # transfer | content (reconstruct content only) | style (texture synthesis)
    pooling: str = "max"
    # Convolution precision (jaxstyle.precision): float32 | tf32 | bfloat16 activations. Gram matrices and
    # losses always accumulate in float32.
    precision: str = "float32"

    def validate(self, arch: str = "vgg19", n_styles: int | None = None) -> "StyleConfig":
        """Raise :class:`UsageError` (one line) for any invalid value; return self."""
        for name in ("content_weight", "style_weight", "tv_weight", "style_scale", "learning_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number >= 0, not {value!r}")
        if self.style_scale <= 0:
            raise UsageError(f"--style-scale must be > 0, not {self.style_scale}")
        if self.iterations < 0:
            raise UsageError(f"--iterations must be >= 0, not {self.iterations}")
        if self.image_size is not None and self.image_size < vgg.MIN_SIZE:
            raise UsageError(f"--image-size must be >= {vgg.MIN_SIZE}, not {self.image_size}")
        if self.lbfgs_memory < 1:
            raise UsageError(f"--lbfgs-memory must be >= 1, not {self.lbfgs_memory}")
        for name, allowed in (("init", INITS), ("normalization", NORMALIZATIONS), ("optimizer", optim.OPTIMIZERS),
                              ("original_colors", ORIGINAL_COLORS), ("color_match", colour.COLOR_MATCH_METHODS),
                              ("mode", MODES), ("pooling", vgg.POOLINGS),
                              ("precision", precision_lib.PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise UsageError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                 f"not {getattr(self, name)!r}")
        for name in ("content_layers", "style_layers"):
            layers = getattr(self, name)
            try:
                vgg.validate_layers(arch, layers)
            except ValueError as e:
                raise UsageError(f"--{name.replace('_', '-')}: {e}") from None
        for name, count in (("style_layer_weights", len(self.style_layers)), ("style_blend_weights", n_styles)):
            values = getattr(self, name)
            if values is None or count is None:
                continue
            if len(values) != count:
                what = "style layers" if name == "style_layer_weights" else "style images"
                raise UsageError(f"--{name.replace('_', '-')} has {len(values)} values but there are "
                                 f"{count} {what}")
            if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be finite, >= 0 and not all zero")
        return self


class LossSpec(NamedTuple):
    """The static (hashable) part of the loss: which layers, which normalisation."""

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    normalization: str = "relative"
    precision: str = "float32"


class LossWeights(NamedTuple):
    """The numeric part of the loss: a pytree of arrays, so a sweep can ``vmap`` over any of them."""

    content: jax.Array  # alpha
    style: jax.Array  # beta
    tv: jax.Array  # gamma
    style_layers: jax.Array  # (L,) w_l
    blend: jax.Array  # (S,) style blend weights, summing to 1


class Targets(NamedTuple):
    """Computed once per run, outside the optimisation loop."""

    content: dict  # layer -> P^l, (H, W, C) features of the content image
    grams: dict  # layer -> (S, C, C): Gram of each style image divided by its M_l (see style_targets)


def loss_spec(config: StyleConfig) -> LossSpec:
    return LossSpec(tuple(config.content_layers), tuple(config.style_layers), config.normalization,
                    config.precision)


def loss_weights(config: StyleConfig, n_styles: int) -> LossWeights:
    layers = config.style_layer_weights or (1.0,) * len(config.style_layers)
    layers = np.asarray(layers, np.float32)
    if config.style_layer_weights is None:
        layers = layers / layers.sum()  # paper: w_l = 1/5 on each of five layers
    blend = np.asarray(config.style_blend_weights or (1.0,) * n_styles, np.float32)
    content_w, style_w = config.content_weight, config.style_weight
    if config.mode == "content":
        style_w = 0.0
    elif config.mode == "style":
        content_w = 0.0
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    return LossWeights(f32(content_w), f32(style_w), f32(config.tv_weight), f32(layers), f32(blend / blend.sum()))


def content_targets(model: VGGModel, content: jax.Array, layers: Sequence[str],
                    precision: str = "float32") -> dict:
    """P^l for each content layer. ``content`` is one HWC image."""
    return extract_features(model, content, tuple(layers), precision)


def style_targets(model: VGGModel, styles: Sequence[jax.Array], layers: Sequence[str],
                  precision: str = "float32") -> dict:
    """Per-layer stacks of the style images' Grams, each divided by that image's M_l.

    Departure from the paper, on purpose: the paper's A^l assumes the style image has the same M_l as the
    generated one. Storing A^l / M_l^style and multiplying by the generated image's M_l in the loss makes style
    images of any size (and several of different sizes) comparable; with equal sizes it is exactly the paper.
    """
    per_style = []
    for s in styles:
        feats = extract_features(model, s, tuple(layers), precision)
        per_style.append({l: gram_matrix(f) / (f.shape[0] * f.shape[1]) for l, f in feats.items()})
    return {l: jnp.stack([g[l] for g in per_style]) for l in layers}


# The targets in one compiled call each instead of op-by-op dispatch (each eager op compiles separately and too
# quickly for the persistent cache): warm start-up prepare 2.9 s -> 1.4 s at 64 px on the loaded 2-core CPU,
# see docs/benchmarks.md ("Compile time").
_content_targets_jit = jax.jit(content_targets, static_argnums=(2, 3))
_style_targets_jit = jax.jit(style_targets, static_argnums=(2, 3))


def loss_terms(image: jax.Array, model: VGGModel, targets: Targets, weights: LossWeights,
               spec: LossSpec) -> dict[str, jax.Array]:
    """The weighted terms ``{"content", "style", "tv", "total"}`` for one HWC image (pure)."""
    # The paper's formulas are computed first; the chosen normalisation (departure, documented) divides each
    # term by a constant of its target, here and nowhere else.
    # Content-only reconstruction has no style images: no style targets, no style layers to run.
    style_layers = spec.style_layers if targets.grams else ()
    feats = extract_features(model, image, spec.content_layers + style_layers, spec.precision)
    content = jnp.float32(0.0)
    for layer in spec.content_layers:
        target = targets.content[layer]
        term = content_loss(feats[layer], target)
        if spec.normalization == "size":  # mean instead of sum over N_l * M_l
            term = term / target.size
        elif spec.normalization == "relative":  # relative squared error: / (1/2 sum P^2)
            term = term / (content_loss(target, jnp.zeros_like(target)) + _EPS)
        content = content + term
    style = jnp.float32(0.0)
    for i, layer in enumerate(style_layers):
        f = feats[layer]
        blended = jnp.tensordot(weights.blend, targets.grams[layer], axes=1) * (f.shape[0] * f.shape[1])
        term = style_layer_loss(f, blended)
        if spec.normalization == "relative":  # sum (G - A)^2 / sum A^2
            term = term / (jnp.sum(blended * blended) / (4.0 * f.shape[-1] ** 2 * (f.shape[0] * f.shape[1]) ** 2)
                           + _EPS)
        style = style + weights.style_layers[i] * term
    tv = tv_loss(image)
    if spec.normalization != "paper":  # mean over pixels and channels instead of a sum
        tv = tv / image.size
    terms = {"content": weights.content * content, "style": weights.style * style, "tv": weights.tv * tv}
    terms["total"] = terms["content"] + terms["style"] + terms["tv"]
    return terms


def total_loss(image, model, targets, weights, spec) -> jax.Array:
    """``alpha L_content + beta sum_l w_l E_l + gamma TV`` for one HWC image: what the optimiser minimises."""
    return loss_terms(image, model, targets, weights, spec)["total"]


def init_image(kind, shape, *, content=None, style=None, seed: int = 0) -> jax.Array:
    """Starting image: white noise in [0, 1] (from ``seed``), the content, the style resized, or an array."""
    if not isinstance(kind, str):
        return jnp.clip(resize(jnp.asarray(kind, jnp.float32), shape[:2]), 0.0, 1.0)
    if kind == "noise":
        return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)
    if kind == "content":
        if content is None:
            raise UsageError("--init content needs a content image (style mode has none); use noise or style")
        return jnp.asarray(content, jnp.float32)
    if kind == "style":
        return resize(jnp.asarray(style, jnp.float32), shape[:2])
    raise UsageError(f"--init must be one of {', '.join(INITS)} or an image, not {kind!r}")


def resize(image: jax.Array, hw: Sequence[int]) -> jax.Array:
    """Antialiased resize of an HWC image to ``hw``."""
    hw = tuple(int(v) for v in hw)
    if tuple(image.shape[:2]) == hw:
        return image
    return jax.image.resize(image, (*hw, image.shape[2]), method="lanczos3", antialias=True)


def long_side_shape(hw: Sequence[int], long_side: int) -> tuple[int, int]:
    """Height and width with the long side set to ``long_side``, aspect ratio kept (min 16 px)."""
    h, w = hw
    s = long_side / max(h, w)
    return max(vgg.MIN_SIZE, round(h * s)), max(vgg.MIN_SIZE, round(w * s))


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


class Problem(NamedTuple):
    """Everything a run needs, prepared once: sizes, preprocessed images, targets, weights."""

    content: jax.Array | None  # HWC, what VGG sees (luminance-only mode: grey)
    content_rgb: jax.Array | None  # HWC, the original-colour content at output size
    styles: list
    shape: tuple
    targets: Targets
    weights: LossWeights
    spec: LossSpec


def _as_image(x, what: str) -> jax.Array:
    if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"):
        from .images import load_image  # I/O only when the caller passes paths

        return jnp.asarray(load_image(x, role=what))
    a = jnp.asarray(x, jnp.float32)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise UsageError(f"{what} image must be an HWC RGB array, got shape {a.shape}")
    return a


def prepare(model: VGGModel, content, styles, config: StyleConfig, target_cache=None) -> Problem:
    """Resize, colour-preprocess and compute targets once (the only part that sees the raw inputs).

    ``target_cache`` (a :class:`jaxstyle.target_cache.TargetCache`, used by the CLI) reuses the targets of an
    earlier run on the same pixels, network, layers and precision instead of recomputing them.
    """
    styles = [_as_image(s, "style") for s in (styles if isinstance(styles, (list, tuple)) else [styles])]
    if not styles and config.mode != "content":
        raise UsageError("at least one style image is needed")
    config.validate(model.arch, len(styles) or None)
    if config.mode == "style":
        if content is not None:
            hw = _as_image(content, "content").shape[:2]
        else:
            hw = styles[0].shape[:2]
        shape = (*long_side_shape(hw, config.image_size or max(hw)), 3)
        content_rgb = None
    else:
        if content is None:
            raise UsageError("a content image is needed (or use mode='style')")
        c = _as_image(content, "content")
        hw = c.shape[:2] if config.image_size is None else long_side_shape(c.shape[:2], config.image_size)
        content_rgb = resize(c, hw)
        shape = (*hw, 3)
    style_long = round((config.image_size or max(shape[:2])) * config.style_scale)
    styles = [resize(s, long_side_shape(s.shape[:2], style_long)) for s in styles]
    content_seen = content_rgb
    if config.original_colors == "histogram" and content_rgb is not None:
        styles = [colour.match_color_histogram(s, content_rgb, config.color_match) for s in styles]
    elif config.original_colors == "luminance" and content_rgb is not None:
        cy = colour.luminance(content_rgb)
        styles = [colour.grey(colour.match_luminance(colour.luminance(s), cy)) for s in styles]
        content_seen = colour.grey(cy)
    spec = loss_spec(config)
    weights = loss_weights(config, max(len(styles), 1))
    content_layers = spec.content_layers if content_seen is not None else ()
    style_layers = spec.style_layers if styles else ()
    key = cached = None
    if target_cache is not None:
        key = target_cache.key(model, content_seen, styles, content_layers, style_layers, spec.precision)
        cached = target_cache.load(key, content_layers, style_layers, len(styles))
    if cached is not None:
        content_t, grams = (jax.tree.map(jnp.asarray, d) for d in cached)
    else:
        content_t = (_content_targets_jit(model, content_seen, spec.content_layers, spec.precision)
                     if content_seen is not None else {})
        grams = _style_targets_jit(model, styles, spec.style_layers, spec.precision) if styles else {}
        if target_cache is not None:
            target_cache.save(key, content_t, grams)
    if content_seen is None:  # style mode: the content term has weight 0; zeros of the right shape keep the
        # loss structure (shapes from tracing alone, no forward pass)
        like = jax.eval_shape(lambda x: extract_features(model, x, spec.content_layers), jnp.zeros(shape))
        content_t = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), like)
    return Problem(content_seen, content_rgb, styles, shape, Targets(content_t, grams), weights, spec)


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
        from .checkpoint import CheckpointError, restore_state

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
    from .model import load_vgg

    config = StyleConfig(**options)
    model = model if model is not None else load_vgg("random", pooling=config.pooling)
    result = run_stylize(content, style, model, config)
    if result.status == "nonfinite":
        raise NonFiniteLossError(result.message)
    if result.status == "interrupted":
        raise KeyboardInterrupt(result.message)
    return result.image
