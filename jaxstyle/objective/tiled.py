"""Tiled evaluation of the perceptual loss, for images whose activations do not fit at once.

A Gram matrix is a sum over positions, so ``G = sum_tiles G_tile`` exactly, provided each tile's features are
the full image's: every tile is run with a halo of input around it at least the receptive-field radius of the
deepest layer (:func:`halo`), its origin aligned to that layer's stride (so the poolings see the same windows),
and only its own positions are counted. At the image's border the tile's padding is the full image's.

The gradient follows by linearity: pass 1 sums the tiles' Grams; ``dL/dG`` of the style terms is taken from
those sums; pass 2 pulls ``dL/dG`` (and the content term, a per-position sum) back through each tile and adds
each tile's input gradient into the image's. Two forward passes and one backward pass per tile instead of one of
each. Pure (Python loops over static tiles). Exact (tests/test_tiled.py), but not yet a memory saving: jitted
whole, XLA CPU does not free one tile's buffers before the next, even with the optimization_barrier below
(compiled temporaries at 384 px, relu1_1..relu3_1, 96-px tiles: 488 MB tiled against 357 MB untiled;
docs/highres.md). Bounding memory needs each tile dispatched as its own jitted call from the host, which is not
built. Spatial control (guides) is not tiled: ``targets.guides`` must be None.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..nets import vgg
from ..nets.model import VGGModel, extract_features
from .losses import content_loss, gram_matrix
from .perceptual import LossSpec, LossWeights, content_scale, style_term_of_gram, tv_term
from .targets import Targets


def halo(arch: str, layers) -> tuple[int, int]:
    """(receptive-field radius in input pixels, stride) of the deepest of ``layers``: a 3x3 conv widens the
    field by one position at its resolution, a 2x2 pooling by one and doubles the stride."""
    names = vgg.layer_names(arch)
    deepest = max(names.index(name) for name in layers)
    radius, stride = 0, 1
    for name in names[: deepest + 1]:
        if name.startswith("conv") or name.startswith("pool"):
            radius += stride
        if name.startswith("pool"):
            stride *= 2
    return radius, stride


def tiles(h: int, w: int, tile: int, align: int) -> list[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` covering an ``h x w`` image, origins multiples of ``align``."""
    step = max(align, tile // align * align)
    return [(y, min(y + step, h), x, min(x + step, w)) for y in range(0, h, step) for x in range(0, w, step)]


def _crop(box, h, w, radius, align):
    """The input window of a tile: its box widened by ``radius`` (the origin kept on the ``align`` grid), and
    to the network's minimum size where an edge tile is smaller."""
    y0, y1, x0, x1 = box
    pad = math.ceil(radius / align) * align

    def side(a0, a1, n):
        lo, hi = max(0, a0 - pad), min(n, a1 + radius)
        if hi - lo < vgg.MIN_SIZE:
            lo = min(lo, max(0, (hi - vgg.MIN_SIZE) // align * align))
            hi = max(hi, min(n, lo + vgg.MIN_SIZE))
        return lo, hi

    return (*side(y0, y1, h), *side(x0, x1, w))


def _tile_features(model, crop, box, window, layers, precision):
    """The features of the tile ``box`` at ``layers`` from ``crop``, the image's pixels in ``window``: exactly
    the full image's features at the tile's positions."""
    cy0, _, cx0, _ = window
    y0, y1, x0, x1 = box
    out = {}
    for layer, f in extract_features(model, crop, layers, precision).items():
        s = 2 ** _pools_before(model.arch, layer)
        out[layer] = f[(y0 - cy0) // s:(y1 - cy0) // s, (x0 - cx0) // s:(x1 - cx0) // s]
    return out


def _pools_before(arch: str, layer: str) -> int:
    names = vgg.layer_names(arch)
    return sum(1 for name in names[: names.index(layer)] if name.startswith("pool"))


def tiled_grams(model: VGGModel, image: jax.Array, layers, tile: int, precision: str = "float32") -> dict:
    """``{layer: G}``, the Gram of the HWC ``image``'s features at each layer, summed over tiles of ``tile``
    pixels (exact apart from float rounding: see the module)."""
    layers = tuple(layers)
    h, w = image.shape[:2]
    radius, align = halo(model.arch, layers)
    total = {}
    for box in tiles(h, w, tile, align):
        window = _crop(box, h, w, radius, align)
        crop = image[window[0]:window[1], window[2]:window[3]]
        feats = _tile_features(model, crop, box, window, layers, precision)
        for layer, f in feats.items():
            total[layer] = total.get(layer, 0.0) + gram_matrix(f)
    return total


def tiled_value_and_grad(image: jax.Array, model: VGGModel, targets: Targets, weights: LossWeights,
                         spec: LossSpec, tile: int):
    """The total loss of :func:`jaxstyle.objective.total_loss` and its gradient, tile by tile (see the module).
    Unguided targets only."""
    if targets.guides is not None:
        raise ValueError("tiled evaluation does not handle guides (spatial control); use the untiled loss")
    style_layers = spec.style_layers if targets.grams else ()
    layers = tuple(spec.content_layers) + tuple(style_layers)
    h, w = image.shape[:2]
    radius, align = halo(model.arch, layers)
    boxes = [(box, _crop(box, h, w, radius, align)) for box in tiles(h, w, tile, align)]
    shapes = jax.eval_shape(lambda x: extract_features(model, x, layers, spec.precision), image)

    def style_of(grams):
        style = jnp.float32(0.0)
        for i, layer in enumerate(style_layers):
            hl, wl, n = shapes[layer].shape
            blended = jnp.tensordot(weights.blend, targets.grams[layer], axes=1) * (hl * wl)
            style = style + weights.style_layers[i] * style_term_of_gram(grams[layer], blended, n, hl * wl,
                                                                         spec.normalization)
        return weights.style * style

    def tile_parts(crop, box, window):  # (the tile's Grams, its weighted share of the content term)
        feats = _tile_features(model, crop, box, window, layers, spec.precision)
        content = jnp.float32(0.0)
        for layer in spec.content_layers:
            s = 2 ** _pools_before(model.arch, layer)
            y0, y1, x0, x1 = box
            f = feats[layer]
            p = targets.content[layer][y0 // s:y0 // s + f.shape[0], x0 // s:x0 // s + f.shape[1]]
            content = content + content_loss(f, p) * content_scale(targets.content[layer], spec.normalization)
        return {l: gram_matrix(feats[l]) for l in style_layers}, weights.content * content

    # optimization_barrier ties each tile's input to the previous tile's result, so XLA runs the tiles in order.
    # Measured: it did not lower the compiled peak (see the module's docstring), which only host dispatch would.
    grams = {l: jnp.zeros(2 * shapes[l].shape[-1:], jnp.float32) for l in style_layers}
    for box, win in boxes:  # pass 1: the Grams
        grams, crop = jax.lax.optimization_barrier((grams, image[win[0]:win[1], win[2]:win[3]]))
        g, _ = tile_parts(crop, box, win)
        grams = {l: grams[l] + g[l] for l in style_layers}
    style, d_grams = jax.value_and_grad(style_of)(grams)
    grad, content = jnp.zeros_like(image), jnp.float32(0.0)
    for box, win in boxes:  # pass 2: each tile's gradient
        grad, crop = jax.lax.optimization_barrier((grad, image[win[0]:win[1], win[2]:win[3]]))
        (_, c), pull = jax.vjp(lambda x: tile_parts(x, box, win), crop)
        content = content + c
        grad = grad.at[win[0]:win[1], win[2]:win[3]].add(pull((d_grams, jnp.float32(1.0)))[0])
    tv, d_tv = jax.value_and_grad(lambda x: weights.tv * tv_term(x, model, spec))(image)
    return content + style + tv, grad + d_tv


def tiled_total_loss(image: jax.Array, model: VGGModel, targets: Targets, weights: LossWeights, spec: LossSpec,
                     tile: int) -> jax.Array:
    """:func:`jaxstyle.objective.total_loss` whose gradient is :func:`tiled_value_and_grad`'s (a ``custom_vjp``),
    so any optimiser's ``jax.value_and_grad`` runs tile by tile. Gradients flow to the image only (the network's
    weights never get one; targets and loss weights get zeros)."""

    @jax.custom_vjp
    def loss(x, model_, targets_, weights_):
        return tiled_value_and_grad(x, model_, targets_, weights_, spec, tile)[0]

    def forward(x, model_, targets_, weights_):
        value, grad = tiled_value_and_grad(x, model_, targets_, weights_, spec, tile)
        return value, (grad, model_, targets_, weights_)

    def backward(residuals, cotangent):
        grad, *rest = residuals
        return (cotangent * grad, *(jax.tree.map(jnp.zeros_like, r) for r in rest))

    loss.defvjp(forward, backward)
    return loss(image, model, targets, weights)
