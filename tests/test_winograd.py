"""Winograd's F(4x4, 3x3) convolution (jaxstyle.nets.winograd): the same function as XLA's "VALID" convolution, value
and gradients, at every size remainder (the blocks are 4x4 outputs; the rest is zero-padded and cropped).

Tolerance: the transforms' constants (1/4, 1/6, 1/24, up to 8) round differently from the direct sums; measured
up to 9e-6 of the output's largest magnitude with 128 channels; asserted 5e-5."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.nets import winograd


def _direct(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)


def _data(n, h, w, cin, cout, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, h, w, cin)).astype(np.float32))
    return x, jnp.asarray(rng.normal(size=(3, 3, cin, cout)).astype(np.float32))


def _close(got, want, tol=5e-5):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * float(jnp.abs(want).max()))


@pytest.mark.parametrize("shape", [
    (1, 3, 3, 2, 3),  # one output pixel
    (2, 6, 6, 3, 4),  # exactly one 4x4 block
    (2, 7, 9, 5, 2),  # remainders 1 and 3
    (1, 10, 8, 4, 6),  # two blocks and a remainder of 2
    (2, 18, 18, 32, 24),  # four blocks each way, wide
])
def test_conv3x3_is_the_valid_convolution(shape):
    x, kernel = _data(*shape)
    _close(jax.jit(winograd.conv3x3)(x, kernel), _direct(x, kernel))


def test_conv3x3_gradients_are_the_convolutions():
    x, kernel = _data(2, 11, 9, 6, 5)
    probe = jnp.asarray(np.random.default_rng(1).normal(size=(2, 9, 7, 5)).astype(np.float32))
    ours = jax.jit(jax.grad(lambda x, k: jnp.sum(winograd.conv3x3(x, k) * probe), argnums=(0, 1)))(x, kernel)
    theirs = jax.grad(lambda x, k: jnp.sum(_direct(x, k) * probe), argnums=(0, 1))(x, kernel)
    for a, b in zip(ours, theirs):
        _close(a, b)


def test_transforms_are_lavin_and_grays():
    """A^T [(G g G^T) * (B^T d B)] A is the 4x4 correlation of a 6x6 block with a 3x3 kernel: the identity the
    algorithm rests on, checked on the matrices themselves (to the float32 rounding of 1/6, 1/12 and 1/24)."""
    rng = np.random.default_rng(2)
    d, g = rng.normal(size=(6, 6)), rng.normal(size=(3, 3))
    bt, gm, at = (m.astype(np.float64) for m in (winograd.B_T, winograd.G, winograd.A_T))
    got = at @ ((gm @ g @ gm.T) * (bt @ d @ bt.T)) @ at.T
    want = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(got, want, atol=1e-5)
