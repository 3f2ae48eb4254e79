"""The Gatys method's configuration: :class:`StyleConfig`, every hyperparameter with its one default, checked once,
when it is made, in the field names (:class:`~jaxstyle.errors.ConfigError`); the fields a sweep may vary."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from .. import colour
from ..errors import ConfigError
from ..nets import precision as precision_lib
from ..nets import vgg
from ..objective.guidance import GUIDE_METHODS
from ..objective.losses import TV_NORMS
from ..objective.perceptual import NORMALIZATIONS, LossSpec, LossWeights
from ..optim import optimizers as optim

INITS = ("noise", "content", "style")
ORIGINAL_COLORS = ("none", "luminance", "histogram")
MODES = ("transfer", "content", "style")
# The fields a sweep may vary per run (jaxstyle.gatys.sweep, the sweep CLI), with the axes one run's value has:
# 0 for a number, 1 for a vector (one weight per style layer, or per style image).
SWEEPABLE = {"content_weight": 0, "style_weight": 0, "tv_weight": 0, "style_layer_weights": 1,
             "style_blend_weights": 1, "seed": 0}

@dataclasses.dataclass(frozen=True)
class StyleConfig:
    """Every hyperparameter of a stylization, with its one default. The CLI reads its defaults from here.

    Checked when made (also by ``dataclasses.replace``): an invalid value raises :class:`ConfigError` naming the
    field, so every StyleConfig in existence is valid. Lists become tuples.

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
    # "neural-style": jcjohnson/neural-style's and neural-style-pt's formulas (mean squared errors, Grams divided
    #   by N_l M_l, every style layer weighted 1, TV on the network's input), so their documented weights
    #   (content 5, style 100, tv 1e-3) mean the same here with the same (Caffe) weights.
    normalization: str = "relative"
    tv_norm: str = "l2"  # l2: sum of squared differences; l1: sum of absolute ones (neural-style-pt's TVLoss)
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
    # Convolution precision (jaxstyle.nets.precision): float32 | tf32 | bfloat16 activations. Gram matrices and
    # losses always accumulate in float32.
    precision: str = "float32"
    # Rematerialisation (jaxstyle.nets.remat, docs/highres.md): keep only each VGG block's input for the backward
    # pass and recompute the block there: the same gradient up to rounding, about 40 % less peak memory per pixel
    # for one evaluation on CPU (RSS 1.15 against 1.94 MiB per 1000 px), about 25 % more time.
    remat: bool = False
    # Spatial control (Gatys et al. 2017, with content/style masks): how a mask is carried down to each layer,
    # simple (downsampled), inside (eroded to the neurons that see only the region) or all (dilated).
    mask_method: str = "simple"
    # Coarse-to-fine (docs/highres.md): the long sides of the stages, smallest first; each stage starts from the
    # previous result upsampled. Given, its last entry is the output size (image_size is set to it). Or
    # num_scales stages ending at image_size, each half the next one's size.
    scales: tuple[int, ...] | None = None
    num_scales: int = 1
    scale_iterations: tuple[int, ...] | None = None  # iterations of each stage; None: `iterations` each
    # Average of iterates (as crowsonkb/style-transfer-pytorch): the output is the bias-corrected exponential
    # moving average of the iterates with this decay (0: off, the last iterate), restarted at every stage.
    average: float = 0.0
    # High resolution within memory (docs/highres.md): compute the targets, the loss and its gradient in tiles of
    # about this many pixels a side, each dispatched on its own from the host (jaxstyle.gatys.tiled), so one tile
    # window's activations exist at a time; None: the whole image at once. Exact (Grams are sums over positions);
    # costs a second forward pass per tile plus the receptive-field halo (about 2x the compute). Needs an
    # optimiser that evaluates once per step; no masks.
    tile: int | None = None

    def __post_init__(self):
        # Sequences from Python lists or JSON become tuples: the config is hashable and compares equal.
        for name in ("content_layers", "style_layers", "style_layer_weights", "style_blend_weights", "scales",
                     "scale_iterations"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))
        self._check_numbers()
        self._check_choices()
        self._check_layers("vgg19")  # vgg16's layers are a subset; check_against checks the real network's
        _check_weights("style_layer_weights", self.style_layer_weights, len(self.style_layers), "style layers")
        self._check_scales()
        if self.scales:
            object.__setattr__(self, "image_size", self.scales[-1])
        self._check_tile()

    def _check_tile(self) -> None:
        if self.tile is None:
            return
        if self.tile < vgg.MIN_SIZE:
            raise ConfigError("tile", f" must be >= {vgg.MIN_SIZE} pixels, not {self.tile}")
        if self.optimizer not in optim.EVALUATE_ONCE:
            raise ConfigError("tile", f" needs an optimizer that evaluates the loss once per step "
                              f"({' or '.join(optim.EVALUATE_ONCE)}); {self.optimizer!r} has a line search")

    def _check_scales(self) -> None:
        if not 0.0 <= self.average < 1.0:
            raise ConfigError("average", f" must be in [0, 1) (0: off), not {self.average}")
        if self.num_scales < 1:
            raise ConfigError("num_scales", f" must be >= 1, not {self.num_scales}")
        if self.scales is not None:
            if self.num_scales != 1:
                raise ConfigError("num_scales", " and scales both set the stages — give one of them")
            if not self.scales or any(b <= a for a, b in zip(self.scales, self.scales[1:])) or \
                    min(self.scales) < vgg.MIN_SIZE:
                raise ConfigError("scales", f" must be increasing sizes >= {vgg.MIN_SIZE}, not {self.scales}")
        if self.scale_iterations is not None:
            n = len(self.scales) if self.scales else self.num_scales
            if len(self.scale_iterations) != n or min(self.scale_iterations) < 0:
                raise ConfigError("scale_iterations", f" needs {n} numbers >= 0 (one per stage), not "
                                  f"{self.scale_iterations}")

    @property
    def total_iterations(self) -> int:
        """Iterations of the whole run, every stage of a coarse-to-fine run included."""
        n = len(self.scales) if self.scales else self.num_scales
        return sum(self.scale_iterations) if self.scale_iterations else self.iterations * n

    def _check_numbers(self) -> None:
        for name in ("content_weight", "style_weight", "tv_weight", "style_scale", "learning_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(name, f" must be a finite number >= 0, not {value!r}")
        if self.style_scale <= 0:
            raise ConfigError("style_scale", f" must be > 0, not {self.style_scale}")
        if self.iterations < 0:
            raise ConfigError("iterations", f" must be >= 0, not {self.iterations}")
        if self.image_size is not None and self.image_size < vgg.MIN_SIZE:
            raise ConfigError("image_size", f" must be >= {vgg.MIN_SIZE}, not {self.image_size}")
        if self.lbfgs_memory < 1:
            raise ConfigError("lbfgs_memory", f" must be >= 1, not {self.lbfgs_memory}")
        if not isinstance(self.remat, bool):
            raise ConfigError("remat", f" must be True or False, not {self.remat!r}")

    def _check_choices(self) -> None:
        for name, allowed in (("init", INITS), ("normalization", NORMALIZATIONS), ("tv_norm", TV_NORMS),
                              ("optimizer", optim.OPTIMIZERS),
                              ("original_colors", ORIGINAL_COLORS), ("color_match", colour.COLOR_MATCH_METHODS),
                              ("mode", MODES), ("pooling", vgg.POOLINGS),
                              ("precision", precision_lib.PRECISIONS), ("mask_method", GUIDE_METHODS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(name, f" must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")

    def _check_layers(self, arch: str) -> None:
        for name in ("content_layers", "style_layers"):
            try:
                vgg.validate_layers(arch, getattr(self, name))
            except ValueError as e:
                raise ConfigError(name, f": {e}") from None

    def check_against(self, arch: str, n_styles: int | None) -> None:
        """Raise :class:`ConfigError` unless the layers exist in the network ``arch`` and there is one blend
        weight per style image (the config's own values are checked when it is made)."""
        self._check_layers(arch)
        _check_weights("style_blend_weights", self.style_blend_weights, n_styles, "style images")


def _check_weights(name: str, values, count: int | None, what: str) -> None:
    if values is None or count is None:
        return
    if len(values) != count:
        raise ConfigError(name, f" has {len(values)} values but there are {count} {what}")
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise ConfigError(name, " must be finite, >= 0 and not all zero")


def stage_sizes(config: StyleConfig, final_long: int) -> tuple[int, ...]:
    """The long side of each coarse-to-fine stage (one entry: a single stage) for an output of ``final_long``."""
    if config.scales:
        return config.scales
    return tuple(max(vgg.MIN_SIZE, round(final_long / 2 ** k)) for k in reversed(range(config.num_scales)))


def stage_configs(config: StyleConfig, final_long: int) -> list[StyleConfig]:
    """One config per stage: its image size, and as ``iterations`` the iteration count at its end (the run's
    iteration counter goes on across stages); one stage: ``[config]`` itself."""
    sizes = stage_sizes(config, final_long)
    if len(sizes) == 1:
        return [config]
    per_stage = config.scale_iterations or (config.iterations,) * len(sizes)
    ends = np.cumsum(per_stage).tolist()
    return [dataclasses.replace(config, scales=None, num_scales=1, scale_iterations=None, image_size=int(size),
                                iterations=int(end)) for size, end in zip(sizes, ends)]


def loss_spec(config: StyleConfig) -> LossSpec:
    """The static part of the loss for ``config``."""
    return LossSpec(tuple(config.content_layers), tuple(config.style_layers), config.normalization,
                    config.precision, config.tv_norm, config.remat)


def layer_weights(config: StyleConfig) -> tuple[float, ...]:
    """w_l, one per style layer: the configured ones, else the paper's 1/L each (1/5 on five layers); with the
    neural-style normalisation 1 each, as there the style weight multiplies every layer's loss."""
    n = len(config.style_layers)
    return config.style_layer_weights or ((1.0 if config.normalization == "neural-style" else 1.0 / n),) * n


def blend_weights(config: StyleConfig, n_styles: int) -> tuple[float, ...]:
    """One weight per style image, as configured (``loss_weights`` normalises them to sum 1), else equal."""
    return config.style_blend_weights or (1.0,) * n_styles


def loss_weights(config: StyleConfig, n_styles: int) -> LossWeights:
    """The numeric pytree of the loss for ``config`` with ``n_styles`` style images."""
    layers = np.asarray(layer_weights(config), np.float32)
    blend = np.asarray(blend_weights(config, n_styles), np.float32)
    content_w, style_w = config.content_weight, config.style_weight
    if config.mode == "content":
        style_w = 0.0
    elif config.mode == "style":
        content_w = 0.0
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    return LossWeights(f32(content_w), f32(style_w), f32(config.tv_weight), f32(layers), f32(blend / blend.sum()))

