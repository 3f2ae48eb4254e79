"""Tiled evaluation of the perceptual loss, for images whose activations do not fit at once.

A Gram matrix is a sum over positions, so ``G = sum_tiles G_tile`` exactly, provided each tile's features are
the full image's: every tile is run with a halo of input around it at least the receptive-field radius of the
deepest layer (:func:`halo`), its origin aligned to that layer's stride (so the poolings see the same windows),
and only its own positions are counted. At the image's border the tile's padding is the full image's.

The gradient follows by linearity: pass 1 sums the tiles' Grams; ``dL/dG`` of the style terms is taken from
those sums; pass 2 pulls ``dL/dG`` (and the content term, a per-position sum) back through each tile and adds
each tile's input gradient into the image's. Two forward passes and one backward pass per tile instead of one of
each. Exact (tests/test_tiled.py).

One loop, two ways to run it. The per-tile functions (:class:`TileParts`: a tile's forward pass, a tile's
pull-back, the style term of the summed Grams, the TV term) are pure and take the tile's corner as data and its
window and box sizes as static arguments. :func:`tiled_value_and_grad` and :func:`tiled_terms` call them in a
Python loop: called with the plain functions (:data:`PURE`, as :func:`tiled_total_loss` does), the whole thing is
one traced program, which XLA CPU does not free tile by tile (compiled temporaries at 384 px, relu1_1..relu3_1,
96-px tiles: 488 MB against 357 MB untiled; docs/highres.md); called with jitted ones (the driver,
:mod:`jaxstyle.gatys.tiled`), every tile is its own call dispatched from the host, one compiled program per
distinct (window, box) shape, and only one window's activations exist at a time: that bounds the memory.
Spatial control (guides) is not tiled: ``targets.guides`` must be None.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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


def _pools_before(arch: str, layer: str) -> int:
    names = vgg.layer_names(arch)
    return sum(1 for name in names[: names.index(layer)] if name.startswith("pool"))


class Plan(NamedTuple):
    """The static part of a tiled evaluation of one image size (hashable: jit's static argument)."""

    spec: LossSpec
    style_layers: tuple  # the style layers run (none in content-only reconstruction)
    positions: tuple  # M_l of each style layer over the whole image
    tiles: tuple  # ((box, window), ...): (y0, y1, x0, x1) of each tile and of its input window


def plan(model: VGGModel, shape, targets: Targets, spec: LossSpec, tile: int) -> Plan:
    """The tiles of an HWC image of ``shape`` and what the loss needs of the whole image (see the module)."""
    if targets.guides is not None:
        raise ValueError("tiled evaluation does not handle guides (spatial control); use the untiled loss")
    style_layers = tuple(spec.style_layers) if targets.grams else ()
    layers = tuple(spec.content_layers) + style_layers
    shapes = jax.eval_shape(lambda x: extract_features(model, x, style_layers, spec.precision),
                            jax.ShapeDtypeStruct(tuple(shape), jnp.float32)) if style_layers else {}
    positions = tuple(shapes[l].shape[0] * shapes[l].shape[1] for l in style_layers)
    return Plan(spec, style_layers, positions, tile_windows(model.arch, layers, shape[:2], tile))


def tile_windows(arch: str, layers, hw, tile: int) -> tuple:
    """``((box, window), ...)``: the tiles of an image of ``hw`` for ``layers`` of ``arch`` and the input window
    each runs on (the memory estimate sizes a tiled evaluation by the largest window)."""
    h, w = hw
    radius, align = halo(arch, layers)
    return tuple((box, _crop(box, h, w, radius, align)) for box in tiles(h, w, tile, align))


def _sizes(box, window) -> dict:
    """The static sizes of a tile's programs: its window's and its box's (height, width)."""
    return {"window": (window[1] - window[0], window[3] - window[2]), "box": (box[1] - box[0], box[3] - box[2])}


def _corner(box, window) -> np.ndarray:
    """A tile's data (its programs are shared by every tile of the same sizes): the box's and the window's
    origins in the image."""
    return np.asarray([box[0], box[2], window[0], window[2]], np.int32)


def _window(image, corner, window):
    return jax.lax.dynamic_slice(image, (corner[2], corner[3], 0), (*window, image.shape[2]))


def _box_features(model, crop, corner, layers, precision, box, remat=False) -> dict:
    """``{layer: features}`` at the tile's own positions (its box), from ``crop``, its window's pixels: the full
    image's features there."""
    oy, ox = corner[0] - corner[2], corner[1] - corner[3]
    feats = {}
    for layer, f in extract_features(model, crop, layers, precision, remat).items():
        s = 2 ** _pools_before(model.arch, layer)  # the window's origin is on the deepest layer's stride grid
        feats[layer] = jax.lax.dynamic_slice(f, (oy // s, ox // s, 0), (box[0] // s, box[1] // s, f.shape[2]))
    return feats


def _crop_parts(model, crop, corner, targets, weights, plan_: Plan, box):
    """(the tile's Grams, its weighted share of the content term) from ``crop``, its window's pixels: the full
    image's features at the tile's positions, counted once."""
    spec = plan_.spec
    y0, x0 = corner[0], corner[1]
    feats = _box_features(model, crop, corner, tuple(spec.content_layers) + plan_.style_layers, spec.precision, box,
                          spec.remat)
    content = jnp.float32(0.0)
    for layer in spec.content_layers:
        s, f, target = 2 ** _pools_before(model.arch, layer), feats[layer], targets.content[layer]
        p = jax.lax.dynamic_slice(target, (y0 // s, x0 // s, 0), f.shape)
        content = content + content_loss(f, p) * content_scale(target, spec.normalization)
    return {l: gram_matrix(feats[l]) for l in plan_.style_layers}, weights.content * content


def tile_forward(model, image, targets, weights, corner, acc, *, plan_: Plan, window, box):
    """Pass 1 for one tile: ``acc`` (the Grams and content share summed so far) plus this tile's."""
    grams, content = _crop_parts(model, _window(image, corner, window), corner, targets, weights, plan_, box)
    return {l: acc[0][l] + grams[l] for l in plan_.style_layers}, acc[1] + content


def tile_pull(model, image, targets, weights, d_grams, corner, grad, *, plan_: Plan, window, box):
    """Pass 2 for one tile: ``grad`` plus the pull-back of ``dL/dG`` (and the content term) through the tile,
    added over its window."""
    parts = lambda crop: _crop_parts(model, crop, corner, targets, weights, plan_, box)
    _, pull = jax.vjp(parts, _window(image, corner, window))
    g = pull((d_grams, jnp.float32(1.0)))[0]
    start = (corner[2], corner[3], 0)
    return jax.lax.dynamic_update_slice(grad, jax.lax.dynamic_slice(grad, start, g.shape) + g, start)


def tile_features(model, image, corner, *, layers, precision, window, box) -> dict:
    """One tile's features at ``layers``, its box's positions only (content targets, tile by tile)."""
    return _box_features(model, _window(image, corner, window), corner, layers, precision, box)


def style_value_and_grad(grams, targets, weights, *, plan_: Plan):
    """The weighted style term of the whole image's Grams (summed over tiles) and its gradient ``dL/dG``."""
    def style_of(g):
        style = jnp.float32(0.0)
        for i, (layer, m) in enumerate(zip(plan_.style_layers, plan_.positions)):
            blended = jnp.tensordot(weights.blend, targets.grams[layer], axes=1) * m
            style = style + weights.style_layers[i] * style_term_of_gram(g[layer], blended, g[layer].shape[0], m,
                                                                         plan_.spec.normalization)
        return weights.style * style
    return jax.value_and_grad(style_of)(grams)


def tv_value_and_grad(image, model, weights, *, plan_: Plan):
    """The weighted TV term (a whole-image, per-pixel sum: not tiled) and its gradient."""
    return jax.value_and_grad(lambda x: weights.tv * tv_term(x, model, plan_.spec))(image)


class TileParts(NamedTuple):
    """The per-tile functions the tiled loops call: :data:`PURE`, or the driver's jitted versions of them."""

    forward: Callable
    pull: Callable
    style: Callable
    tv: Callable
    features: Callable


PURE = TileParts(tile_forward, tile_pull, style_value_and_grad, tv_value_and_grad, tile_features)


def _pass1(image, model, targets, weights, plan_: Plan, parts: TileParts):
    """The Grams summed over tiles and the content term."""
    acc = ({l: jnp.zeros(targets.grams[l].shape[-2:], jnp.float32) for l in plan_.style_layers}, jnp.float32(0.0))
    for box, window in plan_.tiles:
        acc = parts.forward(model, image, targets, weights, _corner(box, window), acc, plan_=plan_,
                            **_sizes(box, window))
    return acc


def tiled_terms(image, model, targets, weights, plan_: Plan, parts: TileParts = PURE) -> dict:
    """:func:`jaxstyle.objective.loss_terms`, tile by tile (pass 1 only: no gradient)."""
    grams, content = _pass1(image, model, targets, weights, plan_, parts)
    style, _ = parts.style(grams, targets, weights, plan_=plan_)
    tv, _ = parts.tv(image, model, weights, plan_=plan_)
    return {"content": content, "style": style, "tv": tv, "total": content + style + tv}


def tiled_value_and_grad(image, model, targets, weights, plan_: Plan, parts: TileParts = PURE):
    """The total loss of :func:`jaxstyle.objective.total_loss` and its gradient, tile by tile (see the module):
    pass 1 sums the tiles' Grams, pass 2 pulls ``dL/dG`` back through each tile into the image's gradient."""
    grams, content = _pass1(image, model, targets, weights, plan_, parts)
    style, d_grams = parts.style(grams, targets, weights, plan_=plan_)
    tv, grad = parts.tv(image, model, weights, plan_=plan_)  # the accumulator starts from the TV gradient
    for box, window in plan_.tiles:
        grad = parts.pull(model, image, targets, weights, d_grams, _corner(box, window), grad, plan_=plan_,
                          **_sizes(box, window))
    return content + style + tv, grad


def _gram_pass(model: VGGModel, shape, layers, tile: int, precision: str):
    """(targets, weights, plan) of a pass 1 that only sums Grams over an image of ``shape``: no content term."""
    spec = LossSpec((), tuple(layers), precision=precision)
    channels = {l: f.shape[-1] for l, f in jax.eval_shape(
        lambda x: extract_features(model, x, tuple(layers), precision),
        jax.ShapeDtypeStruct(tuple(shape), jnp.float32)).items()}
    targets = Targets({}, {l: jnp.zeros((1, n, n), jnp.float32) for l, n in channels.items()})
    zero = jnp.float32(0.0)
    weights = LossWeights(zero, zero, zero, jnp.zeros(len(channels), jnp.float32), jnp.ones(1, jnp.float32))
    return targets, weights, plan(model, shape, targets, spec, tile)


def tiled_grams(model: VGGModel, image: jax.Array, layers, tile: int, precision: str = "float32",
                parts: TileParts = PURE) -> dict:
    """``{layer: G}``, the Gram of the HWC ``image``'s features at each layer, summed over tiles of ``tile``
    pixels (exact apart from float rounding: see the module)."""
    targets, weights, plan_ = _gram_pass(model, image.shape, layers, tile, precision)
    return _pass1(image, model, targets, weights, plan_, parts)[0]


def tiled_style_targets(model: VGGModel, styles, layers, tile: int, precision: str = "float32",
                        parts: TileParts = PURE) -> dict:
    """:func:`jaxstyle.objective.targets.style_targets` (no guides), tile by tile: each style image's Grams
    summed over its tiles and divided by its M_l, stacked."""
    per_style = []
    for image in styles:
        targets, weights, plan_ = _gram_pass(model, image.shape, layers, tile, precision)
        grams = _pass1(image, model, targets, weights, plan_, parts)[0]
        per_style.append({l: grams[l] / m for l, m in zip(plan_.style_layers, plan_.positions)})
    return {l: jnp.stack([g[l] for g in per_style]) for l in layers}


def tiled_features(model: VGGModel, image: jax.Array, layers, tile: int, precision: str = "float32",
                   parts: TileParts = PURE) -> dict:
    """:func:`jaxstyle.objective.targets.content_targets`, tile by tile: each tile's features at its own
    positions, put together (the tiles are a row-major grid)."""
    layers = tuple(layers)
    rows = {}
    for box, window in tile_windows(model.arch, layers, image.shape[:2], tile):
        rows.setdefault(box[0], []).append(parts.features(model, image, _corner(box, window), layers=layers,
                                                          precision=precision, **_sizes(box, window)))
    return {l: jnp.concatenate([jnp.concatenate([t[l] for t in row], axis=1) for row in rows.values()], axis=0)
            for l in layers}


def tiled_total_loss(image: jax.Array, model: VGGModel, targets: Targets, weights: LossWeights, spec: LossSpec,
                     tile: int) -> jax.Array:
    """:func:`jaxstyle.objective.total_loss` whose gradient is :func:`tiled_value_and_grad`'s (a ``custom_vjp``),
    so any optimiser's ``jax.value_and_grad`` runs tile by tile. Gradients flow to the image only (the network's
    weights never get one; targets and loss weights get zeros)."""
    plan_ = plan(model, image.shape, targets, spec, tile)

    @jax.custom_vjp
    def loss(x, model_, targets_, weights_):
        return tiled_value_and_grad(x, model_, targets_, weights_, plan_)[0]

    def forward(x, model_, targets_, weights_):
        value, grad = tiled_value_and_grad(x, model_, targets_, weights_, plan_)
        return value, (grad, model_, targets_, weights_)

    def backward(residuals, cotangent):
        grad, *rest = residuals
        return (cotangent * grad, *(jax.tree.map(jnp.zeros_like, r) for r in rest))

    loss.defvjp(forward, backward)
    return loss(image, model, targets, weights)
