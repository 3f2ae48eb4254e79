"""Stylise images with a trained network in one forward pass: :func:`apply`.

``stylize_batch`` is the pure core (jit-able, any batch and size); :func:`apply` is the driver: it batches
images of the same size, jits once per shape, and optionally keeps the content's colours (Gatys et al. 2017,
luminance transfer, :func:`jaxstyle.colour.combine_luminance`).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import colour
from ..errors import UsageError
from . import tiled
from .net import WINOGRAD, FastModel, TransformerNet, style_weights, variant_fields

MIN_SIZE = 4  # the network's reflection padding needs more than 2 px after two stride-2 layers
# Whole-image inference needs ~480 bytes of temporary buffers per pixel (paper width, float32; XLA's
# memory_analysis, one image, 512 to 2048 px; smaller images add a fixed ~30 MB, mostly Winograd-transformed
# kernels when the parameters are not prepared, see prepare): above 16 Mpx (4096 x 4096, ~8 GB per image) images
# go through in tiles by default. The result is the same either way (jaxstyle/fast/tiled.py).
AUTO_TILE_PIXELS = 4096 * 4096
AUTO_TILE = 1024


# On CPU a batch goes through the network PASS_PIXELS at a time (lax.map inside the one compiled call): working
# memory then stays that of ~PASS_PIXELS pixels whatever the batch size, and one image per pass is faster:
# 1038 instead of 1354 ms at 512 px, batch 4, with glibc's default allocator (fewer fresh pages to fault in),
# 1272 instead of 1413 with page faults taken out (a smaller working set); at 256 px, batch 4, 397 instead of 431
# ms in one measurement, equal in later ones (within the machine's drift); 128 px, batch 8 in two passes: 204
# against 197 ms (docs/fast.md, "Speed"). Accelerators keep the whole batch in one pass, which is what fills them.
PASS_PIXELS = 256 * 256


def images_per_pass(shape, backend: str | None = None) -> int:
    """How many images of a ``(B, H, W, 3)`` batch one pass of the network takes (see :data:`PASS_PIXELS`)."""
    if (backend or jax.default_backend()) != "cpu":
        return shape[0]
    return max(1, min(shape[0], PASS_PIXELS // (shape[1] * shape[2])))


def stylize_batch(net: TransformerNet, params, images: jax.Array, mix: jax.Array,
                  original_colors: bool = False) -> jax.Array:
    """Pure: ``(B, H, W, 3)`` in [0, 1] -> stylised ``(B, H, W, 3)`` in [0, 1]; ``mix`` is ``(n_styles,)``.
    Each image's result is its own (instance norm): the batch runs :func:`images_per_pass` images at a time."""

    def run(x):
        out = jnp.clip(net.apply(params, x, jnp.broadcast_to(mix, (x.shape[0], net.n_styles))), 0.0, 1.0)
        return colour.combine_luminance(out, x) if original_colors else out

    per_pass = images_per_pass(images.shape)
    if per_pass >= images.shape[0]:
        return run(images)
    return jax.lax.map(lambda image: run(image[None])[0], images, batch_size=per_pass)


def prepare(net: TransformerNet, params) -> dict:
    """``params`` with every Winograd layer's transformed kernel added (the :data:`~jaxstyle.fast.net.WINOGRAD`
    collection), for calls of :func:`stylize_batch` with the same parameters: the same result, with the kernel
    transforms computed once here instead of in every call, where XLA kept them all alive as temporaries (at 256
    px, batch 4: 35 instead of 89 MB, 376 instead of 450 ms, median of 11; docs/fast.md, "Speed")."""
    return _jitted_prepare(net)(params)


@functools.lru_cache(maxsize=8)
def _jitted_prepare(net: TransformerNet):
    def prepare_(params):
        # The forward pass only carries the layers' shapes to them: jit drops its arithmetic (64 px: larger than
        # any imported variant's start padding).
        x, style = jnp.zeros((1, 64, 64, 3), jnp.float32), style_weights(net.n_styles)[None]
        _, transformed = net.apply(params, x, style, mutable=[WINOGRAD])
        return {**params, **transformed}

    return jax.jit(prepare_)


@functools.lru_cache(maxsize=8)
def _jitted(net: TransformerNet, original_colors: bool):
    return jax.jit(functools.partial(stylize_batch, net, original_colors=original_colors))


def parse_mix(model: FastModel, mix) -> np.ndarray:
    """The style weight row for ``mix``: None (style 0; the only one for single-style networks), an int index,
    or one non-negative weight per style (normalised to sum 1, as Dumoulin et al. interpolate)."""
    n = model.n_styles
    if mix is None:
        return np.asarray(style_weights(n, 0))
    if isinstance(mix, (int, np.integer)):
        if not 0 <= mix < n:
            raise UsageError(f"style index {mix} out of range: the network has {n} style(s)")
        return np.asarray(style_weights(n, int(mix)))
    mix = np.asarray(mix, np.float64).ravel()
    if mix.size != n:
        raise UsageError(f"style mix has {mix.size} weight(s) but the network has {n} style(s)")
    if not np.all(np.isfinite(mix)) or np.any(mix < 0) or mix.sum() <= 0:
        raise UsageError(f"style mix weights must be non-negative with a positive sum, got {mix.tolist()}")
    return np.asarray(style_weights(n, mix=mix))


def check_tile(tile: int | None) -> None:
    """``tile`` is None (automatic), 0 (whole image) or a window side of at least :data:`MIN_SIZE` px."""
    if tile is not None and (tile < 0 or 0 < tile < MIN_SIZE):
        raise UsageError(f"tile must be 0 (whole image) or at least {MIN_SIZE} px, got {tile}")


def use_tiles(net: TransformerNet, shape, tile: int | None) -> int:
    """The tile side for images of ``shape`` (``(..., H, W, 3)``): ``tile`` itself, 0 (whole image), or for
    ``None`` :data:`AUTO_TILE` when the image has more than :data:`AUTO_TILE_PIXELS` pixels (and the network is
    jaxstyle's own layout, which the tiled executor knows)."""
    if tile is None:
        large = shape[-3] * shape[-2] > AUTO_TILE_PIXELS
        return AUTO_TILE if large and not variant_fields(net) else 0
    check_tile(tile)
    return tile


def apply(model: FastModel, images, *, mix=None, original_colors: bool = False, batch_size: int = 8,
          tile: int | None = None):
    """Stylise ``images``: one HWC array, an NHWC batch, or a list of HWC arrays of any sizes (float in [0, 1]).

    Returns the same form (array, batch, or list). Images of the same size go through the network together,
    ``batch_size`` at a time; each shape compiles once. ``tile``: compute every layer in ``tile`` x ``tile``
    windows with whole-image statistics (:mod:`jaxstyle.fast.tiled`, same result, bounded device memory); 0
    never; None (default) only for images over :data:`AUTO_TILE_PIXELS` pixels.
    """
    if isinstance(images, (list, tuple)):
        arrays = [np.asarray(im, np.float32) for im in images]
        out: list = [None] * len(arrays)
        for shape, idx in _group_by_shape(arrays).items():
            batch = apply(model, np.stack([arrays[i] for i in idx]), mix=mix, original_colors=original_colors,
                          batch_size=batch_size, tile=tile)
            for i, image in zip(idx, batch):
                out[i] = image
        return out
    x = jnp.asarray(images, jnp.float32)
    single = x.ndim == 3
    x = x[None] if single else x
    if x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[1:3]) < MIN_SIZE:
        raise UsageError(f"images must be RGB, HWC or NHWC, at least {MIN_SIZE} px a side; got {tuple(x.shape)}")
    fn, w = _jitted(model.net, bool(original_colors)), jnp.asarray(parse_mix(model, mix))
    side = use_tiles(model.net, x.shape, tile)
    if side:
        fn = functools.partial(_stylize_tiled, model, tile=side, original_colors=bool(original_colors))
    params = model.params if side else prepare(model.net, model.params)
    chunks = [fn(params, x[i:i + batch_size], w) for i in range(0, x.shape[0], max(1, batch_size))]
    y = np.asarray(jnp.concatenate(chunks)) if len(chunks) > 1 else np.asarray(chunks[0])
    return y[0] if single else y


def _stylize_tiled(model: FastModel, params, images, mix, *, tile: int, original_colors: bool):
    out = tiled.apply_tiled(model.replace(params=params), np.asarray(images), np.asarray(mix), tile)
    return colour.combine_luminance(out, images) if original_colors else out


def _group_by_shape(arrays: Sequence[np.ndarray]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault(a.shape, []).append(i)
    return groups
