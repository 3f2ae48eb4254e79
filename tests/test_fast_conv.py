"""The fast network's convolution (jaxstyle.fast.net.conv_valid): a speed lever of docs/fast.md ("Speed") that
changes nothing but the speed (the train step's compiler options: tests/test_fast_train.py).

Tolerance: the convolution on 2x2 blocks of pixels forms the same products as the plain one and sums them in another
order; measured within 4e-6 relative of XLA's own "VALID" convolution; asserted 1e-5. Winograd's (the wide 3x3 ones and
the upsampling layers' phase form) rounds its transforms' constants: asserted 5e-5 (tests/test_winograd.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.fast.net import (BLOCK_MAX_CHANNELS, WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_OUTPUTS, Conv, conv_valid,
                               upsample_conv_valid)


def _plain(x, kernel, stride):
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("shape", [
    (2, 21, 25, 3, 9, 8, 1),  # the first layer's case: on 2x2 blocks, odd output sizes (13 x 17)
    (1, 18, 16, 1, 3, 5, 1),  # one input channel, on blocks, even output sizes
    (2, 20, 23, 4, 5, 6, 1),  # at the channel limit
    (1, 12, 11, 2, 4, 3, 1),  # an even kernel
    (2, 21, 19, 5, 3, 4, 1),  # above the limit: the padded-and-cropped path
    (2, 22, 25, 3, 3, 4, 2),  # stride 2: not on blocks
    (1, 17, 17, 3, 1, 4, 1),  # 1x1: nothing to gain
])
def test_conv_valid_is_the_valid_convolution(shape):
    n, h, w, cin, k, cout, stride = shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, h, w, cin)).astype(np.float32))
    kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)).astype(np.float32))
    want = _plain(x, kernel, stride)
    got = conv_valid(x, kernel, stride)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(jnp.abs(want).max()))


def test_few_input_channels_run_on_2x2_blocks():
    """The lever itself: a 9x9 convolution of 3 channels runs as a 5x5 one of 12 channels to 4x the outputs."""
    x, kernel = jnp.zeros((1, 24, 24, 3)), jnp.zeros((9, 9, 3, 8))
    jaxpr = jax.make_jaxpr(lambda x, k: conv_valid(x, k))(x, kernel)
    convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert [tuple(e.invars[1].aval.shape) for e in convs] == [(5, 5, 12, 32)]
    wide = jax.make_jaxpr(lambda x, k: conv_valid(x, k))(jnp.zeros((1, 24, 24, BLOCK_MAX_CHANNELS + 1)),
                                                         jnp.zeros((9, 9, BLOCK_MAX_CHANNELS + 1, 8)))
    convs = [e for e in wide.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert [tuple(e.invars[1].aval.shape) for e in convs] == [(9, 9, BLOCK_MAX_CHANNELS + 1, 8)]


def test_blocked_kernel_places_each_output_pixels_kernel():
    """Output pixel (a, b) of a block sees the kernel shifted by (a, b): weight [p, q, (a_in, b_in, i), (a, b, o)]
    is kernel[2p + a_in - a, 2q + b_in - b, i, o], zero outside the kernel."""
    from jaxstyle.fast.net import blocked_kernel

    kernel = np.random.default_rng(4).normal(size=(3, 5, 2, 3)).astype(np.float32)
    got = np.asarray(blocked_kernel(jnp.asarray(kernel))).reshape(2, 3, 2, 2, 2, 2, 2, 3)
    for p, q, ai, bi, i, a, b, o in np.ndindex(got.shape):
        u, v = 2 * p + ai - a, 2 * q + bi - b
        want = kernel[u, v, i, o] if 0 <= u < 3 and 0 <= v < 5 else 0.0
        assert got[p, q, ai, bi, i, a, b, o] == want


def test_conv_module_has_nn_conv_parameters():
    """Same names, shapes and initial values as flax's nn.Conv, so models and checkpoints are unchanged."""
    import flax.linen as nn

    x = jnp.ones((1, 12, 12, 3))
    ours = Conv(8, 3).init(jax.random.key(0), x)
    theirs = nn.Conv(8, (3, 3), padding="VALID").init(jax.random.key(0), x)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(Conv(8, 3).apply(ours, x), nn.Conv(8, (3, 3), padding="VALID").apply(theirs, x),
                               rtol=1e-5, atol=1e-5)


def _upsampled_reference(x, kernel, pad):
    up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return _plain(jnp.pad(up, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=pad), kernel, 1)


@pytest.mark.parametrize("pad, small", [("reflect", "edge"), ("constant", "constant")])
@pytest.mark.parametrize("cin, cout", [(3, 5), (24, 16)])  # narrow: direct; 24 -> 4 x 16: Winograd
def test_upsampling_conv_on_the_small_map_is_upsample_pad_conv(pad, small, cin, cout):
    """The u layers' phase form: x2 nearest upsampling, padding by 1 and a 3x3 convolution, computed on the small
    map padded by 1 (edge padding for reflection, zeros for zeros)."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 5, 7, cin)).astype(np.float32))
    kernel = jnp.asarray(rng.normal(size=(3, 3, cin, cout)).astype(np.float32))
    want = _upsampled_reference(x, kernel, pad)
    got = upsample_conv_valid(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=small), kernel)
    assert got.shape == want.shape == (2, 10, 14, cout)
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-5 * float(jnp.abs(want).max()))


def _conv_kernels(fn, *shapes):
    jaxpr = jax.make_jaxpr(fn)(*(jnp.zeros(s) for s in shapes))
    return [tuple(e.invars[1].aval.shape) for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]


def test_wide_3x3_convolutions_go_through_winograd():
    """The lever itself: a 3x3 stride-1 convolution with WINOGRAD_MIN_CHANNELS in and WINOGRAD_MIN_OUTPUTS out
    has no convolution left (matrix products instead); one channel fewer either way, or stride 2, stays a
    convolution."""
    c, o = WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_OUTPUTS
    assert _conv_kernels(lambda x, k: conv_valid(x, k), (1, 10, 10, c), (3, 3, c, o)) == []
    assert _conv_kernels(lambda x, k: conv_valid(x, k), (1, 10, 10, c - 1), (3, 3, c - 1, o)) == [(3, 3, c - 1, o)]
    assert _conv_kernels(lambda x, k: conv_valid(x, k), (1, 10, 10, c), (3, 3, c, o - 1)) == [(3, 3, c, o - 1)]
    assert _conv_kernels(lambda x, k: conv_valid(x, k, 2), (1, 10, 10, c), (3, 3, c, o)) == [(3, 3, c, o)]
