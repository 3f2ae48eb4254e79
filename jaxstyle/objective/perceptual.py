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
from .guidance import guide_mass
from .losses import content_loss, gram_matrix, style_layer_loss_of_gram, tv_loss
from .targets import Targets

_EPS = 1e-12
# How the loss terms are scaled (docs/algorithm.md): "relative" (each content and style layer term divided by its
# target's own energy), "size" (content and TV as means), "paper" (Gatys et al.'s sums), "neural-style" (the
# formulas of jcjohnson/neural-style and ProGamerGov/neural-style-pt, so their documented weights mean the same).
NORMALIZATIONS = ("relative", "size", "paper", "neural-style")


class LossSpec(NamedTuple):
    """The static (hashable) part of the loss: which layers, which normalisation, precision, TV and whether the
    network's blocks are recomputed in the backward pass (``remat``, :mod:`jaxstyle.nets.remat`)."""

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    normalization: str = "relative"
    precision: str = "float32"
    tv_norm: str = "l2"  # "l2" (squared differences) or "l1" (absolute: neural-style-pt's)
    remat: bool = False


class LossWeights(NamedTuple):
    """The numeric part of the loss: a pytree of arrays, so a sweep can ``vmap`` over any of them."""

    content: jax.Array  # alpha
    style: jax.Array  # beta
    tv: jax.Array  # gamma
    style_layers: jax.Array  # (L,) w_l
    blend: jax.Array  # (S,) style blend weights, summing to 1


def content_term(features: jax.Array, target: jax.Array, normalization: str) -> jax.Array:
    """One content layer's term: the paper's ``L_content``, scaled by ``normalization``."""
    return content_loss(features, target) * content_scale(target, normalization)  # 1/2 sum (F - P)^2 x scale


def content_scale(target: jax.Array, normalization: str) -> jax.Array:
    """The factor ``normalization`` puts on the paper's content loss for ``target`` (it depends on the target
    only, so a tiled evaluation can apply it to each tile's share of the sum)."""
    if normalization == "size":  # mean instead of sum over N_l * M_l
        return jnp.float32(1.0 / target.size)
    if normalization == "relative":  # relative squared error: / (1/2 sum P^2)
        return 1.0 / (content_loss(target, jnp.zeros_like(target)) + _EPS)
    if normalization == "neural-style":  # nn.MSECriterion / nn.MSELoss: mean (F - P)^2
        return jnp.float32(2.0 / target.size)
    return jnp.float32(1.0)


def style_term(features: jax.Array, target_gram: jax.Array, normalization: str) -> jax.Array:
    """One style layer's term: the paper's ``E_l`` for the Gram ``target_gram`` (at this M_l), scaled."""
    n, m = features.shape[-1], features.shape[0] * features.shape[1]
    return style_term_of_gram(gram_matrix(features), target_gram, n, m, normalization)


def style_term_of_gram(gram: jax.Array, target_gram: jax.Array, n: int, m: int, normalization: str) -> jax.Array:
    """:func:`style_term` from the generated image's Gram ``G`` (N_l = ``n`` channels, M_l = ``m`` positions): a
    tiled evaluation (objective.tiled) sums ``G`` over tiles first.

    neural-style divides both Grams by the layer's element count N_l M_l and takes their mean squared error over
    the N_l^2 entries: ``sum (G - A)^2 / (N_l^4 M_l^2) = 4 E_l / N_l^2``.
    """
    term = style_layer_loss_of_gram(gram, target_gram, n, m)  # sum (G - A)^2 / (4 N^2 M^2)
    if normalization == "relative":  # sum (G - A)^2 / sum A^2
        return term / (jnp.sum(target_gram * target_gram) / (4.0 * n**2 * m**2) + _EPS)
    if normalization == "neural-style":
        return 4.0 * term / n**2
    return term


def guided_style_term(features: jax.Array, grams: jax.Array, guides: jax.Array, blend: jax.Array,
                      spec: LossSpec) -> jax.Array:
    """Spatial control (Gatys et al. 2017): one style layer's term summed over regions, region ``r`` (the guide
    ``guides[r]``, ``(H_l, W_l)``) matched to style image ``r``'s (guided) Gram ``grams[r]``.

    Each region's term is :func:`style_term` of the guided features ``F * T_r`` against the target Gram brought
    to the region's mass ``sum T_r^2`` (as the unguided term brings it to M_l). Departure: the paper sums the
    region terms; here each is weighted by its style's blend weight times the number of styles (equal blend
    weights: 1 each, the paper's sum), so ``--style-blend-weights`` still balances the styles.
    """
    def region(guide, gram):
        return style_term(features * guide[..., None], gram * guide_mass(guide), spec.normalization)

    terms = jax.vmap(region)(guides, grams)
    return jnp.sum(terms * blend) * blend.shape[0]


def tv_term(image: jax.Array, model: VGGModel, spec: LossSpec) -> jax.Array:
    """The TV term of one HWC image in [0, 1]: a mean over pixels and channels ("relative", "size"), the sum
    ("paper"), or, as neural-style(-pt), the sum over the network's input (their TVLoss is the first module of
    the network: on Caffe weights the image x 255, here, x 256 there)."""
    if spec.normalization == "neural-style":
        return tv_loss(model.preprocess(image[None])[0], spec.tv_norm)
    tv = tv_loss(image, spec.tv_norm)
    return tv if spec.normalization == "paper" else tv / image.size


def loss_terms(image: jax.Array, model: VGGModel, targets: Targets, weights: LossWeights,
               spec: LossSpec) -> dict[str, jax.Array]:
    """The weighted terms ``{"content", "style", "tv", "total"}`` for one HWC image (pure).

    ``content_weight * sum_l content_term + style_weight * sum_l w_l style_term + tv_weight * tv_term``; the
    normalisation (a documented departure from the paper) is applied in the three ``*_term`` functions only.
    """
    # Content-only reconstruction has no style images: no style targets, no style layers to run.
    style_layers = spec.style_layers if targets.grams else ()
    feats = extract_features(model, image, spec.content_layers + style_layers, spec.precision, spec.remat)
    content = jnp.float32(0.0)
    for layer in spec.content_layers:
        content = content + content_term(feats[layer], targets.content[layer], spec.normalization)
    style = jnp.float32(0.0)
    for i, layer in enumerate(style_layers):
        f = feats[layer]
        if targets.guides is not None:
            style = style + weights.style_layers[i] * guided_style_term(f, targets.grams[layer],
                                                                        targets.guides[layer], weights.blend, spec)
            continue
        # The blended Gram of the style images, each brought to this image's M_l (see targets.style_targets).
        blended = jnp.tensordot(weights.blend, targets.grams[layer], axes=1) * (f.shape[0] * f.shape[1])
        style = style + weights.style_layers[i] * style_term(f, blended, spec.normalization)
    tv = tv_term(image, model, spec)
    terms = {"content": weights.content * content, "style": weights.style * style, "tv": weights.tv * tv}
    terms["total"] = terms["content"] + terms["style"] + terms["tv"]
    return terms


def total_loss(image, model, targets, weights, spec) -> jax.Array:
    """``alpha L_content + beta sum_l w_l E_l + gamma TV`` for one HWC image: what the optimiser minimises."""
    return loss_terms(image, model, targets, weights, spec)["total"]
