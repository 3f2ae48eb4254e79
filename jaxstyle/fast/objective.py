"""Johnson et al.'s perceptual losses for training a transformation network, as pure functions.

With ``phi_j`` the loss network's features at layer j (``C_j x H_j x W_j``):

- feature reconstruction ``||phi_j(y_hat) - phi_j(y)||^2 / (C_j H_j W_j)`` (paper eq. 2), averaged over the batch;
- Gram ``G_j = phi_j^T phi_j / (C_j H_j W_j)`` (paper eq. 3) and style reconstruction ``||G_j(y_hat) - G_j(y_s)||^2``
  (eq. 4), summed over the style layers;
- optional pixel loss ``||y_hat - y||^2 / (CHW)`` and total variation.

Departures, each shared with the anchors: the style term is the *mean* over the C x C Gram entries
(``||.||_F^2 / C_j^2``), as in jcjohnson/fast-neural-style and pytorch/examples (both use an MSE criterion), so
their weights (content 1e5, style 1e10) mean what they meant there; and features are scaled to the input range
pytorch/examples fed its VGG (torchvision normalisation), see :func:`feature_gain`, so those weights carry over to
loss networks with other preprocessing (the real VGG16 uses Caffe's 0-255 BGR input, ~58x larger features).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from . import perceptual
from .config import FastConfig

# Input gain of torchvision's normalisation (x - mean) / std, the preprocessing pytorch/examples' weights assume.
_REFERENCE_GAIN = float(np.mean([1.0 / s for s in perceptual.PRESETS["torchvision"].std]))


def feature_gain(preprocess: perceptual.Preprocess) -> float:
    """Factor that puts a loss network's features on the scale torchvision-normalised input gives them.

    VGG is piecewise linear in its input apart from biases, so a network fed ``k x`` has features ~``k`` times
    larger; the style term grows as ``k^4``. Dividing by the preprocessing's own gain keeps the default weights
    meaningful for any converted weights (a departure from the paper, which fixed one network).
    """
    gain = preprocess.scale * float(np.mean([1.0 / s for s in preprocess.std]))
    return _REFERENCE_GAIN / gain


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """The part of :class:`FastConfig` the loss depends on (so other fields never cause a recompilation)."""

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    content_weight: float
    style_weight: float
    tv_weight: float
    pixel_weight: float

    @classmethod
    def of(cls, config: FastConfig) -> "LossSettings":
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


@flax.struct.dataclass
class Objective:
    """The fixed part of the training loss: loss network, per-style Gram targets, weights (static)."""

    vgg: perceptual.VGGModel
    style_grams: dict  # layer -> (n_styles, C, C)
    config: LossSettings = flax.struct.field(pytree_node=False)
    gain: float = flax.struct.field(pytree_node=False, default=1.0)


def gram(features: jax.Array) -> jax.Array:
    """Johnson's normalised Gram ``phi^T phi / (C H W)``: ``(..., H, W, C) -> (..., C, C)``."""
    h, w, c = features.shape[-3:]
    return perceptual.gram_matrix(features) / (c * h * w)


def mean(x: jax.Array) -> jax.Array:
    """The mean of all of ``x``, over the last axis first. Without YNNPACK fusions (as the train step is compiled)
    XLA:CPU sums a whole array in one float32 accumulator: the content term of a 4 x 32 x 32 x 64 batch came out
    3.7e-5 from its float64 value, 5e-7 this way (1.4e-7 with fusions). The value only: the gradient is the same."""
    return jnp.mean(jnp.mean(x, axis=-1))


def features(objective: Objective, images: jax.Array, layers: Sequence[str]) -> dict:
    out = perceptual.extract_features(objective.vgg, images, layers)
    return {name: f.astype(jnp.float32) * objective.gain for name, f in out.items()}


def make_objective(vgg: perceptual.VGGModel, styles: Sequence, config: FastConfig) -> Objective:
    """Compute the Gram targets of each style image (HWC in [0, 1], already at its training size)."""
    perceptual.validate_layers(vgg.arch, (*config.content_layers, *config.style_layers))
    probe = Objective(vgg=vgg, style_grams={}, config=LossSettings.of(config), gain=feature_gain(vgg.preprocess))
    per_style = [features(probe, jnp.asarray(s)[None], config.style_layers) for s in styles]
    grams = {name: jnp.concatenate([gram(f[name]) for f in per_style]) for name in config.style_layers}
    return probe.replace(style_grams=grams)


def loss_terms(objective: Objective, outputs: jax.Array, contents: jax.Array, style: jax.Array) -> dict:
    """The weighted loss terms and their sum ``"loss"`` for a batch; ``style`` holds each image's style index."""
    cfg = objective.config
    layers = tuple(dict.fromkeys((*cfg.content_layers, *cfg.style_layers)))
    f_out = features(objective, outputs, layers)
    f_in = features(objective, contents, cfg.content_layers)
    content = sum(mean(jnp.square(f_out[n] - f_in[n])) for n in cfg.content_layers)
    style_terms = [mean(jnp.square(gram(f_out[n]) - objective.style_grams[n][style])) for n in cfg.style_layers]
    terms = {"content": cfg.content_weight * content, "style": cfg.style_weight * sum(style_terms)}
    if cfg.tv_weight:
        terms["tv"] = cfg.tv_weight * perceptual.tv_loss(outputs) / outputs.shape[0]
    if cfg.pixel_weight:
        terms["pixel"] = cfg.pixel_weight * mean(jnp.square(outputs - contents))
    terms["loss"] = sum(terms.values())
    return terms
