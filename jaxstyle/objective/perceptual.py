"""The perceptual objective of Gatys et al. (2016): which layers and weights (:class:`LossSpec`,
:class:`LossWeights`), and the weighted loss terms of one image (:func:`loss_terms`, :func:`total_loss`).

Pure functions over pytrees, shared by every method that optimises or trains against these losses. The one
departure from the paper's formulas, the normalisation of the terms, lives in :func:`loss_terms`, nowhere else.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..nets.model import VGGModel
from ..nets.model import extract_features
from .losses import content_loss, style_layer_loss, tv_loss
from .targets import Targets

_EPS = 1e-12
NORMALIZATIONS = ("relative", "size", "paper")

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
