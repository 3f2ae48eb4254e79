"""The image transformation network of Johnson, Alahi & Fei-Fei (ECCV 2016), as a Flax module.

Layout (the paper's supplementary material, as in jcjohnson/fast-neural-style and pytorch/examples):
``c9s1-32, d64, d128, 5 x R128, u64, u32, c9s1-3``. Departures from the paper, all shared with both anchors:

- instance normalisation instead of batch normalisation (Ulyanov et al. 2016), here *conditional* instance
  normalisation (Dumoulin et al. 2017): one scale and shift per style, picked (or mixed) by a weight vector;
- upsampling by nearest-neighbour x2 then a 3x3 convolution instead of fractionally strided convolutions
  (Odena et al. 2016: no checkerboard artefacts);
- reflection padding before every convolution instead of zero padding (no dark borders);
- a linear output layer as in pytorch/examples (the paper uses a scaled tanh); outputs are clipped at apply time.

The variants of the networks that other projects trained and publish (imported by
:mod:`jaxstyle.fast.importers`) are fields of :class:`TransformerNet`, one table each (:data:`VARIANTS`, first
value the default = jaxstyle's own network): the value range and channel order the network works in
(:data:`PREPROCESS`), the paper's reflection padding of the input instead of padding every convolution
(:data:`PADDING`), fractionally strided convolutions, batch norm (running statistics folded in), a scaled tanh
output. Whatever the variant, the module takes and returns RGB in [0, 1]: the conversion is part of the network.

Pure: ``TransformerNet(...).apply(params, images, style)`` with images NHWC RGB in [0, 1] of any size >= 4 px.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from .. import xla_options
from ..nets import winograd

EPS = 1e-5  # instance norm epsilon (torch.nn.InstanceNorm2d's)

# What the network computes in: (scale, mean, std, BGR) with net input = (flip?(rgb01) * scale - mean) / std and
# the output mapped back the same way. pytorch/examples feeds RGB 0-255 (ToTensor then x.mul(255)) and saves its
# output clamped to 0-255; jcjohnson/fast-neural-style's preprocess.lua "vgg" flips RGB to BGR, scales to 0-255 and
# subtracts the mean pixel {103.939, 116.779, 123.68} (BGR), its "resnet" subtracts the ImageNet mean and divides by
# the std on RGB in [0, 1]; deprocess is the exact inverse in both.
PREPROCESS = {
    "rgb01": (1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False),
    "rgb255": (255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False),
    "vgg": (255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0), True),
    "resnet": (1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False),
}
# Padding of each kind of convolution: "c" (the 9x9 ones and the 3x3 after a nearest upsampling), "d" (the
# stride-2 ones) and "r" (inside residual blocks). "reflect": pytorch/examples' and jaxstyle's. "reflect-start":
# the paper's supplementary material and jcjohnson/fast-neural-style's default (padding_type reflect-start):
# the input is reflection-padded by 8 px per residual block once, the c and d convolutions zero-pad, the residual
# convolutions pad nothing and each block crops 2 px off its shortcut (ShaveImage), so the output has the input's size.
PADDING = {
    "reflect": {"c": "reflect", "d": "reflect", "r": "reflect"},
    "reflect-start": {"c": "zero", "d": "zero", "r": "valid"},
}
# Architecture fields beyond the size ones, each with its allowed values (the first is the default) or, for the
# numbers, its default. upsample "transpose": jcjohnson's u layers, SpatialFullConvolution(3, 3, 2, 2, 1, 1, 1, 1);
# norm "batch": batch norm in evaluation mode, its running statistics folded into the per-channel affine;
# output "tanh": output_scale * tanh (the paper; 150 in jcjohnson's code); fit "pad4": reflection-pad the input to
# a multiple of 4 and crop back (jaxstyle), "crop": run at the input's size as the original networks do and crop
# their output (a few pixels larger at sizes that are not a multiple of 4) to it.
VARIANTS = {
    "preprocess": tuple(PREPROCESS), "padding": tuple(PADDING), "upsample": ("nearest", "transpose"),
    "norm": ("instance", "batch"), "output": ("linear", "tanh"), "fit": ("pad4", "crop"),
}
NUMBERS = {"eps": EPS, "output_scale": 1.0}


def variant_fields(net) -> dict:
    """The variant and number fields of ``net`` that differ from their defaults (empty for jaxstyle's own network)."""
    fields = {k: getattr(net, k) for k, values in VARIANTS.items() if getattr(net, k) != values[0]}
    return fields | {k: getattr(net, k) for k, default in NUMBERS.items() if getattr(net, k) != default}


# XLA:CPU runs a convolution without padding ("VALID") on a path 1.3x (3x3, stride 2) to 37x (9x9, 32 -> 3
# channels) slower than the same convolution with padding (measured at 256 px, batch 4; the outputs are
# bit-identical). So "VALID" convolutions here pad one zero row and column at the end and crop the extra outputs:
# same result, the fast path, ~1/n more work; harmless on GPU/TPU.
FAST_VALID = ((0, 1), (0, 1))


# XLA:CPU's convolution with few input channels and a wide kernel (the network's first layer, 9x9, 3 -> 32) is
# slow: 187 ms at 256 px, batch 4, against PyTorch's 41. Here it runs on 2x2 blocks of pixels instead
# (space-to-depth): a 5x5 convolution of 12 channels (4 pixels x 3) giving 128 (4 output pixels x 32), whose kernel
# holds the 9x9 one four times, shifted; the same products, summed in another order (~1e-6 relative), in 15-18 ms
# at 256 px and 59-62 at 512 (docs/fast.md, "Speed").
BLOCK_MAX_CHANNELS = 4


def blocked_kernel(kernel: jax.Array) -> jax.Array:
    """The HWIO ``kernel`` (kh x kw, I -> O) as a kernel over 2x2 blocks of pixels: ``(nh, nw, 4I, 4O)`` with
    ``n = k // 2 + 1``, input channel ``(a, b, i)`` = the block's pixel ``(a, b)``, channel i; output channel
    ``(a', b', o)`` likewise. Output pixel ``(a', b')`` of a block reads input offsets ``a' .. a' + kh - 1``, so its
    kernel is the original one shifted down and right by ``(a', b')`` in a ``2n x 2n`` frame of zeros."""
    kh, kw, cin, cout = kernel.shape
    nh, nw = kh // 2 + 1, kw // 2 + 1
    phases = [jnp.pad(kernel, ((a, 2 * nh - kh - a), (b, 2 * nw - kw - b), (0, 0), (0, 0)))
              .reshape(nh, 2, nw, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5).reshape(nh, nw, 4 * cin, cout)
              for a in range(2) for b in range(2)]
    return jnp.stack(phases, axis=-2).reshape(nh, nw, 4 * cin, 4 * cout)


def space_to_depth(x: jax.Array) -> jax.Array:
    """``(B, 2h, 2w, C) -> (B, h, w, 4C)``, channel ``(a, b, c)`` = pixel ``(2i + a, 2j + b)``."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4 * c)


def depth_to_space(y: jax.Array) -> jax.Array:
    """The inverse of :func:`space_to_depth`: ``(B, h, w, 4C) -> (B, 2h, 2w, C)``."""
    b, h, w, c4 = y.shape
    return y.reshape(b, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c4 // 4)


def _blocked_conv_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The stride-1 "VALID" convolution computed on 2x2 blocks (:func:`blocked_kernel`); the input is
    zero-padded to whole blocks and the extra outputs cropped."""
    kh, kw = kernel.shape[:2]
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    nh, nw = kh // 2 + 1, kw // 2 + 1
    rows, cols = 2 * (-(-ho // 2) + nh - 1), 2 * (-(-wo // 2) + nw - 1)
    x = jnp.pad(x[:, :rows, :cols], ((0, 0), (0, max(0, rows - x.shape[1])), (0, max(0, cols - x.shape[2])), (0, 0)))
    y = conv_valid(space_to_depth(x), blocked_kernel(kernel))
    return depth_to_space(y)[:, :ho, :wo]


# 3x3 stride-1 convolutions with at least WINOGRAD_MIN_CHANNELS input and WINOGRAD_MIN_OUTPUTS output channels
# (the residual blocks, and the upsampling layers in their phase form below) go through Winograd's F(4x4, 3x3)
# (jaxstyle.nets.winograd): on XLA:CPU about 0.7x the time of the direct convolution at 256 px, batch 4
# (docs/fast.md, "Speed"). Not everywhere a win: 64 -> 32 channels at full size (the tiled executor's u2 window)
# took 61 ms against the direct 41. At WINOGRAD_MIN_OUTPUTS = 64 the width-4 test network's residual and u1
# convolutions go direct, and the two-process training test (tests/test_multiprocess.py) then saw kernels 3e-4
# apart instead of 1e-7: the two runs' gradients differ by rounding (compiled gradients match float64 autograd
# to ~3e-6 either way, tests/test_fast_reference.py), and Adam, which divides each update by the gradient's own
# size, turns the rounding of the smallest gradients into differences of up to ~5 % of the learning rate
# (4.7e-5 here, on 3 % of the elements). The test's bound is tight enough to see that, so the threshold stays 16.
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_OUTPUTS = 16


# The variable collection that may hold each Winograd layer's transformed kernel (winograd.transform_kernel),
# computed once per network by jaxstyle.fast.inference.prepare, so that the apply program does not transform
# them on every call.
WINOGRAD = "winograd"


def uses_winograd(kernel_shape, stride: int = 1) -> bool:
    """Whether :func:`conv_valid` computes a convolution with this HWIO kernel shape by Winograd's algorithm."""
    kh, kw, cin, cout = kernel_shape
    return (kh, kw, stride) == (3, 3, 1) and cin >= WINOGRAD_MIN_CHANNELS and cout >= WINOGRAD_MIN_OUTPUTS


def conv_valid(x: jax.Array, kernel: jax.Array, stride: int = 1, transformed: jax.Array | None = None) -> jax.Array:
    """The "VALID" convolution of NHWC ``x`` with the HWIO ``kernel`` (no bias), on XLA:CPU's fast paths: by
    Winograd's algorithm for wide 3x3 ones (``transformed``: the kernel's transform computed beforehand), on 2x2
    blocks of pixels where the input has few channels, else padded by :data:`FAST_VALID` and cropped."""
    kh, kw, cin, cout = kernel.shape
    if uses_winograd(kernel.shape, stride):
        return winograd.conv3x3(x, kernel, transformed)
    if cin <= BLOCK_MAX_CHANNELS and stride == 1 and min(kh, kw) > 2:
        return _blocked_conv_valid(x, kernel)
    y = jax.lax.conv_general_dilated(x, kernel, (stride, stride), FAST_VALID,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ho, wo = ((n - k) // stride + 1 for n, k in zip(x.shape[1:3], (kh, kw)))
    return y[:, :ho, :wo]


# Nearest-neighbour x2 upsampling, padding by 1 and a 3x3 convolution (the network's u layers) computed on the
# small map: output row 2i + a reads upsampled rows 2i + a - 1 .. 2i + a + 1, which are rows i - 1 .. i + 1 of the
# small map padded by 1 (edge padding when the upsampled map is reflection-padded, zeros when it is zero-padded),
# with the kernel's rows merged: phase a = 0 takes (k0, k1 + k2, 0), phase a = 1 takes (0, k0 + k1, k2); the same
# for columns. So one 3x3 convolution with 4x the output channels (phase-major) on the small map, then
# depth-to-space: a quarter of the pixels, no upsampled copy, and wide enough for Winograd. PHASE_ROWS[a, window
# row, kernel row].
PHASE_ROWS = np.array([[[1, 0, 0], [0, 1, 1], [0, 0, 0]],
                       [[0, 0, 0], [1, 1, 0], [0, 0, 1]]], np.float32)


def phase_kernel(kernel: jax.Array) -> jax.Array:
    """The 3x3 HWIO ``kernel`` of an upsampling layer as the ``(3, 3, I, 4 O)`` kernel that
    :func:`upsample_conv_valid` applies on the small map (output channel (a, b, o): depth_to_space's order)."""
    cin, cout = kernel.shape[2:]
    return jnp.einsum("apu,bqv,uvio->pqiabo", PHASE_ROWS, PHASE_ROWS, kernel).reshape(3, 3, cin, 4 * cout)


def upsample_conv_valid(x: jax.Array, kernel: jax.Array, transformed: jax.Array | None = None) -> jax.Array:
    """``conv_valid(crop1(upsample2(x)), kernel)`` for NHWC ``x`` already padded by 1 (edge or zero, see
    :data:`PHASE_ROWS`) and a 3x3 HWIO ``kernel``: ``(B, h + 2, w + 2, I) -> (B, 2h, 2w, O)``; ``transformed``:
    the Winograd transform of :func:`phase_kernel` computed beforehand."""
    return depth_to_space(conv_valid(x, phase_kernel(kernel), transformed=transformed))


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect") if pad else x


def to_network(images: jax.Array, preprocess: str) -> jax.Array:
    """RGB in [0, 1] -> what a network with this ``preprocess`` convention takes."""
    scale, mean, std, bgr = PREPROCESS[preprocess]
    if preprocess == "rgb01":
        return images
    x = images[..., ::-1] if bgr else images
    return (x * scale - jnp.asarray(mean)) / jnp.asarray(std)


def from_network(y: jax.Array, preprocess: str) -> jax.Array:
    """The inverse of :func:`to_network`: the network's output as RGB in [0, 1] (not clipped)."""
    scale, mean, std, bgr = PREPROCESS[preprocess]
    if preprocess == "rgb01":
        return y
    x = (y * jnp.asarray(std) + jnp.asarray(mean)) / scale
    return x[..., ::-1] if bgr else x


class ConditionalInstanceNorm(nn.Module):
    """Instance norm with a per-style affine: ``gamma = w @ scale``, ``beta = w @ bias`` (Dumoulin et al. 2017).

    ``style`` is ``(B, n_styles)``: a one-hot row selects one style; a convex combination mixes styles by
    interpolating their normalisation parameters, exactly as the paper does.

    With ``normalize=False`` only the affine is applied: a batch norm in evaluation mode whose running
    statistics were folded into it (imported networks).
    """

    n_styles: int = 1
    eps: float = EPS
    normalize: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, style: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (self.n_styles, c))
        bias = self.param("bias", nn.initializers.zeros, (self.n_styles, c))
        y = x
        if self.normalize:  # biased variance, as torch's InstanceNorm2d and Torch7's (training-mode) batch norm
            mean = jnp.mean(x, axis=(1, 2), keepdims=True)
            var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
            y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        gamma, beta = style @ scale, style @ bias
        return y * gamma[:, None, None, :] + beta[:, None, None, :]


class ConvLayer(nn.Module):
    """Padding (``pad``: reflect, zero or valid) then a convolution (stride s), optionally after a
    nearest-neighbour x2 upsample; or (``transpose``) a x2 fractionally strided 3x3 convolution."""

    features: int
    kernel: int
    stride: int = 1
    upsample: bool = False
    pad: str = "reflect"
    transpose: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.transpose:
            # Torch's SpatialFullConvolution(k=3, stride 2, pad 1, adj 1) = the x2-dilated input padded by
            # (k-1-pad, k-1-pad+adj) = (1, 2), convolved with the flipped kernel (flipped on import).
            return nn.ConvTranspose(self.features, (3, 3), strides=(2, 2), padding=((1, 2), (1, 2)), name="conv")(x)
        if self.upsample and self.kernel == 3 and self.pad in ("reflect", "zero"):
            # The reflection padding of the upsampled map is the upsampled edge padding (upsample_conv_valid).
            x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge" if self.pad == "reflect" else "constant")
            return Conv(self.features, self.kernel, self.stride, upsampled=True, name="conv")(x)
        if self.upsample:
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        p = self.kernel // 2
        if self.pad == "reflect":
            x = reflect_pad(x, p)
        elif self.pad == "zero":
            x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        return Conv(self.features, self.kernel, self.stride, name="conv")(x)


class Conv(nn.Module):
    """``nn.Conv`` with "VALID" padding (its parameters: ``kernel`` HWIO, lecun-normal; ``bias``, zeros), computed
    by :func:`conv_valid`, or (``upsampled``) by :func:`upsample_conv_valid` on the small padded map."""

    features: int
    kernel: int
    stride: int = 1
    upsampled: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (self.kernel, self.kernel, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        transformed = self._winograd_kernel(kernel)
        if self.upsampled:
            return upsample_conv_valid(x, kernel, transformed) + bias
        return conv_valid(x, kernel, self.stride, transformed) + bias

    def _winograd_kernel(self, kernel: jax.Array) -> jax.Array | None:
        """The transformed kernel from the :data:`WINOGRAD` collection when the caller passes it; computed and
        stored when that collection is mutable (:func:`jaxstyle.fast.inference.prepare`); else None (the
        convolution transforms the kernel itself, as training does: the gradient flows through the transform)."""
        applied = phase_kernel(kernel) if self.upsampled else kernel  # what conv_valid convolves with
        if not uses_winograd(applied.shape, self.stride):
            return None
        if self.has_variable(WINOGRAD, "kernel"):
            return self.get_variable(WINOGRAD, "kernel")
        if self.is_mutable_collection(WINOGRAD) and not self.is_initializing():  # init: parameters only
            transformed = winograd.transform_kernel(applied)
            self.put_variable(WINOGRAD, "kernel", transformed)
            return transformed
        return None


class ResidualBlock(nn.Module):
    """``x + IN(conv(relu(IN(conv(x)))))`` with two 3x3 convolutions (Gross & Wilber's block, as in the paper)."""

    n_styles: int = 1
    pad: str = "reflect"
    eps: float = EPS
    normalize: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, style: jax.Array) -> jax.Array:
        c = x.shape[-1]

        def norm(name):
            return ConditionalInstanceNorm(self.n_styles, self.eps, self.normalize, name=name)

        y = nn.relu(norm("in1")(ConvLayer(c, 3, pad=self.pad, name="conv1")(x), style))
        y = norm("in2")(ConvLayer(c, 3, pad=self.pad, name="conv2")(y), style)
        if self.pad == "valid":  # jcjohnson's ShaveImage(2): the shortcut loses what the two convolutions did
            x = x[:, 2:-2, 2:-2, :]
        return x + y


class TransformerNet(nn.Module):
    """``c9s1-w, d2w, d4w, R4w x n_residual, u2w, uw, c9s1-3`` with ``w = width`` (32 in the paper).

    ``__call__(images, style)``: images ``(B, H, W, 3)`` in [0, 1], style ``(B, n_styles)`` weights.
    Any H, W: the input is reflection-padded to a multiple of 4 (two stride-2 layers) and cropped back.
    """

    n_styles: int = 1
    width: int = 32
    n_residual: int = 5
    preprocess: str = "rgb01"
    padding: str = "reflect"
    upsample: str = "nearest"
    norm: str = "instance"
    output: str = "linear"
    fit: str = "pad4"
    eps: float = EPS
    output_scale: float = 1.0

    @nn.compact
    def __call__(self, images: jax.Array, style: jax.Array) -> jax.Array:
        h, w = images.shape[1:3]
        x = to_network(images, self.preprocess)
        ph, pw = (-h % 4, -w % 4) if self.fit == "pad4" else (0, 0)
        x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else x
        if self.padding == "reflect-start":
            x = reflect_pad(x, 8 * self.n_residual)
        pad, normalize = PADDING[self.padding], self.norm == "instance"
        w1, w2, w4 = self.width, 2 * self.width, 4 * self.width

        def block(x, layer, name):
            x = layer(x)
            return nn.relu(ConditionalInstanceNorm(self.n_styles, self.eps, normalize, name=f"{name}_in")(x, style))

        x = block(x, ConvLayer(w1, 9, pad=pad["c"], name="c1"), "c1")
        x = block(x, ConvLayer(w2, 3, 2, pad=pad["d"], name="d1"), "d1")
        x = block(x, ConvLayer(w4, 3, 2, pad=pad["d"], name="d2"), "d2")
        for i in range(self.n_residual):
            x = ResidualBlock(self.n_styles, pad["r"], self.eps, normalize, name=f"r{i + 1}")(x, style)
        for name, features in (("u1", w2), ("u2", w1)):
            x = block(x, ConvLayer(features, 3, upsample=True, pad=pad["c"], transpose=self.upsample == "transpose",
                                   name=name), name)
        x = ConvLayer(3, 9, pad=pad["c"], name="c2")(x)
        if self.output == "tanh":
            x = self.output_scale * jnp.tanh(x)
        return from_network(x[:, :h, :w, :], self.preprocess)


def style_weights(n_styles: int, index=None, mix=None) -> jax.Array:
    """A style weight row: one-hot for ``index``, or ``mix`` (non-negative, normalised to sum to 1)."""
    if mix is None:
        return jax.nn.one_hot(0 if index is None else index, n_styles, dtype=jnp.float32)
    mix = jnp.asarray(mix, jnp.float32)
    return mix / jnp.sum(mix)


def initial_params(net: TransformerNet, seed: int | jax.Array = 0, size: int = 32) -> dict:
    """Initial parameters (Flax's default initialisers) from an integer seed; pure (for use inside a jit)."""
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    return net.init(jax.random.key(seed), x, style_weights(net.n_styles)[None])


def init_params(net: TransformerNet, seed: int = 0, size: int = 32) -> dict:
    """:func:`initial_params`, compiled once per network: for calls outside a jit (inside one, or under
    ``jax.eval_shape``, call :func:`initial_params`)."""
    return _jitted_init(net, size)(seed)


@functools.lru_cache(maxsize=8)
def _jitted_init(net: TransformerNet, size: int):
    # Jitted: the same values as op by op (within one float32 ulp), which takes ~3x as long (15 against 4.7 s for
    # the paper's network); one jit per network, so a second call with the same network does not compile again;
    # compiled without backend optimisation (xla_options.quick_compile: ~0.7 instead of ~6 s to compile).
    return jax.jit(functools.partial(initial_params, net, size=size), compiler_options=xla_options.quick_compile())


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
