"""The image transformation network of Johnson, Alahi & Fei-Fei (ECCV 2016), as a Flax module.

Layout (the paper's supplementary material, as in jcjohnson/fast-neural-style and pytorch/examples):
``c9s1-32, d64, d128, 5 x R128, u64, u32, c9s1-3``. Departures from the paper, all shared with both anchors:

- instance normalisation instead of batch normalisation (Ulyanov et al. 2016), here *conditional* instance
  normalisation (Dumoulin et al. 2017): one scale and shift per style, picked (or mixed) by a weight vector;
- upsampling by nearest-neighbour x2 then a 3x3 convolution instead of fractionally strided convolutions
  (Odena et al. 2016: no checkerboard artefacts);
- reflection padding before every convolution instead of zero padding (no dark borders);
- a linear output layer as in pytorch/examples (the paper uses a scaled tanh); outputs are clipped at apply time.

Pure: ``TransformerNet(...).apply(params, images, style)`` with images NHWC RGB in [0, 1] of any size >= 4 px.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

EPS = 1e-5  # instance norm epsilon (torch.nn.InstanceNorm2d's)


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect") if pad else x


class ConditionalInstanceNorm(nn.Module):
    """Instance norm with a per-style affine: ``gamma = w @ scale``, ``beta = w @ bias`` (Dumoulin et al. 2017).

    ``style`` is ``(B, n_styles)``: a one-hot row selects one style; a convex combination mixes styles by
    interpolating their normalisation parameters, exactly as the paper does.
    """

    n_styles: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, style: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (self.n_styles, c))
        bias = self.param("bias", nn.initializers.zeros, (self.n_styles, c))
        mean = jnp.mean(x, axis=(1, 2), keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + EPS)
        gamma, beta = style @ scale, style @ bias
        return y * gamma[:, None, None, :] + beta[:, None, None, :]


class ConvLayer(nn.Module):
    """Reflection padding then a convolution (stride s), optionally after a nearest-neighbour x2 upsample."""

    features: int
    kernel: int
    stride: int = 1
    upsample: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.upsample:
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        x = reflect_pad(x, self.kernel // 2)
        return nn.Conv(self.features, (self.kernel, self.kernel), strides=(self.stride, self.stride),
                       padding="VALID", name="conv")(x)


class ResidualBlock(nn.Module):
    """``x + IN(conv(relu(IN(conv(x)))))`` with two 3x3 convolutions (Gross & Wilber's block, as in the paper)."""

    n_styles: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, style: jax.Array) -> jax.Array:
        c = x.shape[-1]
        y = nn.relu(ConditionalInstanceNorm(self.n_styles, name="in1")(ConvLayer(c, 3, name="conv1")(x), style))
        y = ConditionalInstanceNorm(self.n_styles, name="in2")(ConvLayer(c, 3, name="conv2")(y), style)
        return x + y


class TransformerNet(nn.Module):
    """``c9s1-w, d2w, d4w, R4w x n_residual, u2w, uw, c9s1-3`` with ``w = width`` (32 in the paper).

    ``__call__(images, style)``: images ``(B, H, W, 3)`` in [0, 1], style ``(B, n_styles)`` weights.
    Any H, W: the input is reflection-padded to a multiple of 4 (two stride-2 layers) and cropped back.
    """

    n_styles: int = 1
    width: int = 32
    n_residual: int = 5

    @nn.compact
    def __call__(self, images: jax.Array, style: jax.Array) -> jax.Array:
        h, w = images.shape[1:3]
        ph, pw = -h % 4, -w % 4
        x = jnp.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else images
        w1, w2, w4 = self.width, 2 * self.width, 4 * self.width

        def down(x, features, kernel, stride, name):
            x = ConvLayer(features, kernel, stride, name=name)(x)
            return nn.relu(ConditionalInstanceNorm(self.n_styles, name=f"{name}_in")(x, style))

        x = down(x, w1, 9, 1, "c1")
        x = down(x, w2, 3, 2, "d1")
        x = down(x, w4, 3, 2, "d2")
        for i in range(self.n_residual):
            x = ResidualBlock(self.n_styles, name=f"r{i + 1}")(x, style)
        for name, features in (("u1", w2), ("u2", w1)):
            x = ConvLayer(features, 3, upsample=True, name=name)(x)
            x = nn.relu(ConditionalInstanceNorm(self.n_styles, name=f"{name}_in")(x, style))
        x = ConvLayer(3, 9, name="c2")(x)
        return x[:, :h, :w, :]


def style_weights(n_styles: int, index=None, mix=None) -> jax.Array:
    """A style weight row: one-hot for ``index``, or ``mix`` (non-negative, normalised to sum to 1)."""
    if mix is None:
        return jax.nn.one_hot(0 if index is None else index, n_styles, dtype=jnp.float32)
    mix = jnp.asarray(mix, jnp.float32)
    return mix / jnp.sum(mix)


def init_params(net: TransformerNet, seed: int = 0, size: int = 32) -> dict:
    """Initial parameters (Flax's default initialisers) from an integer seed."""
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    return net.init(jax.random.key(seed), x, style_weights(net.n_styles)[None])


def count_params(params) -> int:
    return sum(int(a.size) for a in jax.tree.leaves(params))


@flax.struct.dataclass
class FastModel:
    """A trained network: parameters (pytree leaves) with the static module and metadata."""

    params: dict
    net: TransformerNet = flax.struct.field(pytree_node=False)
    meta: dict = flax.struct.field(pytree_node=False, default_factory=dict)

    @property
    def n_styles(self) -> int:
        return self.net.n_styles

    @property
    def style_names(self) -> list[str]:
        return list(self.meta.get("styles") or [f"style{i}" for i in range(self.n_styles)])
