"""Colour control from Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer" (CVPR 2017).

Two ways to keep the content's colours, both pure functions on float RGB images in [0, 1]:

- luminance-only transfer: run style transfer on luminance images, then put the content's chroma back (YIQ);
  the style's luminance is first matched to the content's mean and standard deviation (paper, eq. 5);
- colour-histogram matching: before the transfer, move the style image's pixel distribution onto the content's
  mean and covariance with a linear map ``x' = A (x - mu_s) + mu_c`` where ``A Sigma_s A^T = Sigma_c``.
  ``A`` from Cholesky factors, PCA (eigendecomposition), or the symmetric square roots (as in the paper).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

COLOR_MATCH_METHODS = ("pca", "chol", "sym")

# NTSC YIQ (the colour space used by Gatys et al. 2017). numpy constants: importing jaxstyle must not start a
# JAX backend (jax.distributed.initialize has to come first in a multi-process run).
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
                       np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def rgb_to_yiq(image):
    return jnp.matmul(image, _RGB_TO_YIQ.T)


def yiq_to_rgb(image):
    return jnp.matmul(image, _YIQ_TO_RGB.T)


def luminance(image):
    """Y channel, ``(..., H, W)``."""
    return rgb_to_yiq(image)[..., 0]


def grey(y):
    """A luminance image as an RGB image with equal channels (what VGG sees in luminance-only mode)."""
    return jnp.repeat(y[..., None], 3, axis=-1)


def match_luminance(style_y, content_y, eps: float = 1e-5):
    """Affine luminance matching (Gatys 2017, eq. 5): ``(Y_s - mu_s) * sigma_c / sigma_s + mu_c``."""
    return (style_y - style_y.mean()) * (content_y.std() / (style_y.std() + eps)) + content_y.mean()


def combine_luminance(stylized, content):
    """Luminance of ``stylized`` with the chroma (I, Q) of ``content``, clipped to [0, 1]."""
    yiq = rgb_to_yiq(content)
    yiq = yiq.at[..., 0].set(luminance(stylized))
    return jnp.clip(yiq_to_rgb(yiq), 0.0, 1.0)


def _sqrtm(cov):
    w, v = jnp.linalg.eigh(cov)
    return (v * jnp.sqrt(jnp.clip(w, 0.0))) @ v.T


def match_color_histogram(source, target, method: str = "pca", eps: float = 1e-5):
    """Colour-transform ``source`` (the style image) so its pixel mean and covariance equal ``target``'s."""
    if method not in COLOR_MATCH_METHODS:
        raise ValueError(f"unknown colour-matching method {method!r}; expected one of {COLOR_MATCH_METHODS}")
    s = source.reshape(-1, 3).astype(jnp.float32)
    t = target.reshape(-1, 3).astype(jnp.float32)
    mu_s, mu_t = s.mean(0), t.mean(0)
    eye = eps * jnp.eye(3)
    cov_s = jnp.cov(s, rowvar=False) + eye
    cov_t = jnp.cov(t, rowvar=False) + eye
    if method == "chol":
        a = jnp.linalg.cholesky(cov_t) @ jnp.linalg.inv(jnp.linalg.cholesky(cov_s))
    elif method == "pca":
        ws, vs = jnp.linalg.eigh(cov_s)
        wt, vt = jnp.linalg.eigh(cov_t)
        a = (vt * jnp.sqrt(jnp.clip(wt, 0.0))) @ vt.T @ (vs / jnp.sqrt(jnp.clip(ws, eps))) @ vs.T
    else:  # "sym": A = Sigma_t^1/2 (Sigma_t^1/2 Sigma_s Sigma_t^1/2)^-1/2 Sigma_t^1/2 (the symmetric solution)
        rt = _sqrtm(cov_t)
        mid = _sqrtm(rt @ cov_s @ rt)
        a = rt @ jnp.linalg.inv(mid) @ rt
    out = (s - mu_s) @ a.T + mu_t
    return jnp.clip(out.reshape(source.shape), 0.0, 1.0)
