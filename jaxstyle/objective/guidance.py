"""Spatial control (Gatys, Ecker, Bethge, Hertzmann & Shechtman, CVPR 2017, "Controlling Perceptual Factors in
Neural Style Transfer", section 4): guidance channels ``T_r`` that say which positions belong to region ``r``,
carried down to every layer, and the guided Gram matrices ``G_r = (F * T_r)^T (F * T_r)`` built from them.

Pure functions; the guides are numeric data (a pytree beside the targets), the way of carrying them down
(:data:`GUIDE_METHODS`) is static. Departures from the paper are marked where they are made.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..nets import vgg
from .losses import gram_matrix

# How a guide at the input becomes a guide at layer l (paper, section 4.1):
# "simple": downsampled with the feature maps (a 2x2 mean at each pooling);
# "inside": eroded: a position keeps only the smallest value in its receptive field (3x3 min at each conv, 2x2 min
#   at each pooling), so a neuron counts for a region only if everything it sees is inside it;
# "all": dilated (max instead of min): a neuron counts for every region its receptive field touches.
GUIDE_METHODS = ("simple", "inside", "all")


def _window(guides: jax.Array, size: int, stride: int, method: str) -> jax.Array:
    """One window reduction over ``(S, H, W)`` guides. Positions outside the image are ignored (padding with the
    reduction's identity), so the image border does not erode or dilate a region."""
    if method == "simple":
        if size == 1 or stride == 1:
            return guides  # convolutions keep the size: the simple method only follows the poolings
        total = jax.lax.reduce_window(guides, 0.0, jax.lax.add, (1, size, size), (1, stride, stride), "VALID")
        return total / (size * size)
    op, init = (jax.lax.min, jnp.inf) if method == "inside" else (jax.lax.max, -jnp.inf)
    padding = "SAME" if stride == 1 else "VALID"
    return jax.lax.reduce_window(guides, init, op, (1, size, size), (1, stride, stride), padding)


def layer_guides(arch: str, guides: jax.Array, layers, method: str = "simple") -> dict[str, jax.Array]:
    """The guides ``(S, H, W)`` (one channel per region, values in [0, 1], the input image's size) at each of
    ``layers``, carried down the network ``arch`` with ``method``: ``{layer: (S, H_l, W_l)}``."""
    if method not in GUIDE_METHODS:
        raise ValueError(f"guide method must be one of {', '.join(GUIDE_METHODS)}, not {method!r}")
    wanted, out = set(layers), {}
    g = jnp.asarray(guides, jnp.float32)
    for b, block in enumerate(vgg.ARCHITECTURES[arch], 1):
        for i in range(1, len(block) + 1):
            g = _window(g, 3, 1, method)  # conv b_i: a 3x3 receptive field, stride 1, "same" padding
            for name in (f"conv{b}_{i}", f"relu{b}_{i}"):
                if name in wanted:
                    out[name] = g
        g = _window(g, 2, 2, method)  # pool b: 2x2, stride 2 (VGG's floor for odd sizes, as "VALID")
        if f"pool{b}" in wanted:
            out[f"pool{b}"] = g
        if len(out) == len(wanted):
            break
    return out


def guided_gram(features: jax.Array, guide: jax.Array) -> jax.Array:
    """The guided Gram ``sum_k T_k^2 F_ki F_kj`` of ``(H, W, C)`` features and one ``(H, W)`` guide, divided by
    the guide's mass ``sum_k T_k^2``: the region's Gram per position (the paper's ``G_r`` over its M_l is what
    makes regions of different sizes comparable, as :func:`jaxstyle.objective.style_targets` does for images).
    An empty region (mass 0) gives zeros."""
    return gram_matrix(features * guide[..., None]) / jnp.maximum(guide_mass(guide), 1e-12)


def guide_mass(guide: jax.Array) -> jax.Array:
    """``sum_k T_k^2``: how many positions (fractionally) a region holds at one layer."""
    return jnp.sum(guide * guide)
