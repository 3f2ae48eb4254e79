"""3x3 convolutions by Winograd's minimal filtering, F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016).

A "VALID" 3x3 convolution computes each 4x4 block of outputs from the 6x6 block of inputs under it. Winograd's
algorithm transforms the input block (``V = B^T d B``) and the kernel (``U = G g G^T``), multiplies them
elementwise, summed over input channels (36 matrix products, one per element of the 6x6 transform), and
transforms back (``Y = A^T M A``): 36 multiply-adds per 16 outputs instead of 144, so 4x fewer. The transforms
are additions and a few scalings; the products are ordinary matrix multiplications.

Why here: XLA:CPU runs the matrix products at about the speed of its direct convolution, so a 3x3 convolution
with many channels takes about half the time (``docs/fast.md``, "Speed"); GPU/TPU convolutions are already fast,
but the result is the same there. The result is the convolution's up to float rounding: the transforms'
constants (1/4, 1/6, 1/24, powers of 2) round differently, about 5e-6 of the output's magnitude in float32.

Pure: :func:`conv3x3` takes and returns arrays and differentiates with :func:`jax.grad` (every step is linear
in the input and in the kernel).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

M, R = 4, 3  # output block and kernel size: F(4x4, 3x3)
TILE = M + R - 1  # 6: the input block under one output block

# Lavin & Gray's matrices for F(4, 3), interpolation points 0, 1, -1, 2, -2 and infinity.
B_T = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], np.float32)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], np.float32)
A_T = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], np.float32)


def _combine(mat: np.ndarray, parts: list) -> jax.Array:
    """``stack([sum_u mat[a, u] * parts[u] for a])``: a small constant matrix applied to a list of arrays as
    additions (zero entries skipped), which XLA fuses into one elementwise pass; a dot with a 6-element
    contraction would run far below the matrix unit's speed."""
    rows = []
    for coeffs in mat:
        terms = [p if c == 1 else -p if c == -1 else float(c) * p for c, p in zip(coeffs, parts) if c != 0]
        rows.append(sum(terms[1:], terms[0]))
    return jnp.stack(rows)


def transform_kernel(kernel: jax.Array) -> jax.Array:
    """``U = G g G^T`` for an HWIO 3x3 kernel: ``(36, I, O)``, element ``(b, a)`` of the 6x6 transform at
    ``6 b + a``: column-major, the order :func:`conv3x3` multiplies in. (Row-major and transposed in conv3x3,
    XLA copied every prepared kernel (jaxstyle.fast.inference.prepare) before its loop over a batch's passes and
    kept the copies: the apply program at 256 px, batch 4, held 55 instead of 35 MB of temporaries.)"""
    u = jnp.einsum("au,uvio,bv->baio", G, kernel, G, precision=jax.lax.Precision.HIGHEST)
    return u.reshape(TILE * TILE, *kernel.shape[2:])


def conv3x3(x: jax.Array, kernel: jax.Array, transformed: jax.Array | None = None) -> jax.Array:
    """The "VALID" convolution (stride 1, no dilation) of NHWC ``x`` with the HWIO 3x3 ``kernel``, no bias:
    ``(B, H, W, I) -> (B, H - 2, W - 2, O)``, any ``H, W >= 3``. ``transformed``: ``transform_kernel(kernel)``
    computed beforehand (then ``kernel`` is not read)."""
    b, h, w, cin = x.shape
    ho, wo = h - R + 1, w - R + 1
    th, tw = -(-ho // M), -(-wo // M)  # output blocks; the input is zero-padded to whole blocks, the extra cropped
    x = jnp.pad(x, ((0, 0), (0, th * M + R - 1 - h), (0, tw * M + R - 1 - w), (0, 0)))
    # V = B^T d B, in two passes (rows, then columns) so that each pass reads 6 strided views, not 36.
    rows = _combine(B_T, [x[:, u:u + M * th:M] for u in range(TILE)])  # (6, B, th, W', I)
    v = _combine(B_T, [rows[:, :, :, u:u + M * tw:M] for u in range(TILE)])  # (6 col, 6 row, B, th, tw, I)
    u = transform_kernel(kernel) if transformed is None else transformed  # (6 col x 6 row, I, O), as v
    m = jnp.einsum("knc,kco->kno", v.reshape(TILE * TILE, b * th * tw, cin), u)
    m = m.reshape(TILE, TILE, b, th, tw, -1)  # (6 col, 6 row, ...)
    y = _combine(A_T, [m[:, u] for u in range(TILE)])  # rows back: (4 row, 6 col, B, th, tw, O)
    y = _combine(A_T, [y[:, u] for u in range(TILE)])  # columns back: (4 col, 4 row, B, th, tw, O)
    y = jnp.transpose(y, (2, 3, 1, 4, 0, 5)).reshape(b, th * M, tw * M, -1)
    return y[:, :ho, :wo]
