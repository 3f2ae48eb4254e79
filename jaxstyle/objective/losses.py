"""Loss functions of Gatys, Ecker & Bethge (CVPR 2016), as pure functions.

Features are ``(..., H, W, C)`` arrays: ``F^l`` of the paper is the ``C x (H*W)`` matrix ``N_l x M_l``.
These are the exact formulas of the paper and the reference definition of jaxstyle. The normalisations of the
terms (so that default weights behave the same at every image size, or as another implementation's do) live in
:func:`jaxstyle.objective.loss_terms`, nowhere else.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


def gram_matrix(features: jax.Array) -> jax.Array:
    """Gram matrix ``G_ij = sum_k F_ik F_jk`` per image: ``(..., H, W, C) -> (..., C, C)``.

    Always float32 at HIGHEST precision, even where activations are bfloat16 or the default matmul precision
    is lower (TF32): the Gram sums M_l products and its error feeds the style loss squared.
    """
    return _gram(features.reshape(*features.shape[:-3], -1, features.shape[-1]))


@jax.custom_vjp
def _gram(f: jax.Array) -> jax.Array:
    """``F^T F`` over the positions of ``(..., K, C)`` features, float32."""
    return jnp.einsum("...ki,...kj->...ij", f, f, precision=HIGHEST, preferred_element_type=jnp.float32)


def _gram_fwd(f: jax.Array) -> tuple[jax.Array, jax.Array]:
    return _gram(f), f


def _gram_bwd(f: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    # dL/dF = F (g + g^T): one (K, C) product. Autodiff of the einsum forms F g and F g^T separately, two buffers
    # of the features' full size (256 B per pixel each at relu1_1) at the peak of the backward pass
    # (docs/highres.md, "Why jaxstyle held 1.7x PyTorch's memory per pixel").
    sym = g + jnp.swapaxes(g, -1, -2)
    df = jnp.einsum("...ki,...ij->...kj", f, sym, precision=HIGHEST, preferred_element_type=jnp.float32)
    return (df.astype(f.dtype),)


_gram.defvjp(_gram_fwd, _gram_bwd)


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """``L_content = 1/2 sum_ij (F_ij - P_ij)^2`` (summed over everything, batch included)."""
    diff = features.astype(jnp.float32) - target.astype(jnp.float32)
    return 0.5 * jnp.sum(diff * diff)


def style_layer_loss(features: jax.Array, target_gram: jax.Array) -> jax.Array:
    """``E_l = 1 / (4 N^2 M^2) sum_ij (G_ij - A_ij)^2`` with ``G`` the Gram of ``features``.

    ``target_gram`` must be the Gram of the style image at the same ``M`` as ``features`` (see
    :func:`jaxstyle.objective.style_targets`, which rescales Grams of differently sized style images).
    """
    return style_layer_loss_of_gram(gram_matrix(features), target_gram, features.shape[-1],
                                    features.shape[-2] * features.shape[-3])


def style_layer_loss_of_gram(gram: jax.Array, target_gram: jax.Array, n: int, m: int) -> jax.Array:
    """``E_l`` from the Gram ``G`` itself, for ``n`` = N_l channels over ``m`` = M_l positions."""
    diff = gram - target_gram
    return jnp.sum(diff * diff) / (4.0 * n**2 * m**2)


TV_NORMS = ("l2", "l1")


def tv_loss(image: jax.Array, norm: str = "l2") -> jax.Array:
    """Total variation of ``(..., H, W, C)``: differences of vertically and horizontally neighbouring pixels.

    ``"l2"``: ``sum (x[i+1, j] - x[i, j])^2 + (x[i, j+1] - x[i, j])^2`` (Mahendran & Vedaldi's TV with beta = 2;
    neural-style's TVLoss takes the gradient of half of it). ``"l1"``: ``sum |x[i+1, j] - x[i, j]| +
    |x[i, j+1] - x[i, j]|``, the anisotropic TV of neural-style-pt's TVLoss.
    """
    x = image.astype(jnp.float32)
    dh = x[..., 1:, :, :] - x[..., :-1, :, :]
    dw = x[..., :, 1:, :] - x[..., :, :-1, :]
    if norm == "l1":
        return jnp.sum(jnp.abs(dh)) + jnp.sum(jnp.abs(dw))
    if norm == "l2":
        return jnp.sum(dh * dh) + jnp.sum(dw * dw)
    raise ValueError(f"tv norm must be one of {', '.join(TV_NORMS)}, not {norm!r}")
