"""The library's front door to VGG: :func:`load_vgg` and :func:`extract_features`."""

from __future__ import annotations

from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp

from . import precision as precision_lib
from . import remat, vgg, weights
from ..errors import UsageError


@flax.struct.dataclass
class VGGModel:
    """A VGG module together with its weights. A pytree: ``params`` are leaves, the rest is static.

    Pass it straight into jitted functions; changing only the weights does not recompile.
    """

    params: dict
    module: vgg.VGG = flax.struct.field(pytree_node=False)
    source: str = flax.struct.field(pytree_node=False, default="random")
    source_sha256: str = flax.struct.field(pytree_node=False, default="")

    @property
    def arch(self) -> str:
        return self.module.arch

    @property
    def preprocess(self) -> vgg.Preprocess:
        return self.module.preprocess

    @property
    def pooling(self) -> str:
        return self.module.pooling

    def layer_names(self) -> tuple[str, ...]:
        return vgg.layer_names(self.arch)

    def with_pooling(self, pooling: str) -> "VGGModel":
        """The same weights with ``pooling`` (``"max"`` or ``"avg"``) in the module."""
        return self if pooling == self.pooling else self.replace(module=self.module.clone(pooling=pooling))


def load_vgg(path_or_random="random", pooling: str = "max", *, arch: str | None = None) -> VGGModel:
    """Load converted weights (``.npz`` from ``scripts/convert_weights.py``) or the deterministic random VGG.

    Args:
      path_or_random: path of a converted file, or ``"random"`` for a He-initialised VGG (warns: results are
        textures, not meaningful art).
      pooling: ``"max"`` (VGG's own) or ``"avg"`` (Gatys et al. 2016 suggest it slightly improves gradients).
      arch: the architecture required (``"vgg19"``/``"vgg16"``); ``None`` accepts what the file holds. For
        ``"random"`` it picks the random architecture (default vgg19).

    Returns:
      A :class:`VGGModel`. Raises :class:`~jaxstyle.errors.WeightsError` for any invalid file.
    """
    if pooling not in vgg.POOLINGS:
        raise UsageError(f"pooling must be one of {', '.join(vgg.POOLINGS)}, not {pooling!r}")
    if isinstance(path_or_random, str) and path_or_random == weights.RANDOM:
        arch = arch or "vgg19"
        if arch not in vgg.ARCHITECTURES:
            raise UsageError(f"unknown architecture {arch!r}; expected one of {', '.join(vgg.ARCHITECTURES)}")
        weights.warn_random()
        params = weights.random_params(arch)
        module = vgg.VGG(arch=arch, pooling=pooling, preprocess=vgg.PRESETS["torchvision"])
        return VGGModel(params=jax.tree.map(jnp.asarray, params), module=module, source="random")
    file_arch, params, preprocess, info = weights.load_converted(path_or_random, arch=arch)
    module = vgg.VGG(arch=file_arch, pooling=pooling, preprocess=preprocess)
    return VGGModel(params=jax.tree.map(jnp.asarray, params), module=module,
                    source=str(info["source"]), source_sha256=str(info["source_sha256"]))


def extract_features(model: VGGModel, images: jax.Array, layers: Sequence[str],
                     precision: str = precision_lib.DEFAULT, remat: bool = False) -> dict[str, jax.Array]:
    """Features of ``images`` (NHWC RGB in [0, 1], or one HWC image) at ``layers``: ``{name: float32 array}``.

    Pure and jit-able. The network stops after the deepest requested layer. No gradient ever flows into the
    weights (``stop_gradient``), so differentiating through this costs input gradients only. ``precision``
    (static: it changes the traced program) is the conv stack's, :mod:`jaxstyle.nets.precision`; the features
    returned are float32 whatever it is. ``remat`` (static): keep only each block's input for the backward pass
    and recompute the block there (:mod:`jaxstyle.nets.remat`): the same values and gradients, less memory, one
    more forward pass.
    """
    layers = vgg.validate_layers(model.arch, layers)
    dtype = precision_lib.compute_dtype(precision)
    images = jnp.asarray(images)
    single = images.ndim == 3
    if single:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be NHWC with 3 channels (or one HWC image), got shape {images.shape}")
    if min(images.shape[1:3]) < vgg.MIN_SIZE:
        raise ValueError(f"images must be at least {vgg.MIN_SIZE}x{vgg.MIN_SIZE}, got {images.shape[1:3]}")
    params = jax.tree.map(lambda p: p.astype(dtype), jax.lax.stop_gradient(model.params))

    def run(x, names, first_block=1):  # the precision context is entered where the block is (re)traced
        with jax.default_matmul_precision(precision_lib.CONV_PRECISION[precision]):
            return model.module.apply(params, x, layers=names, first_block=first_block)

    out = (_blockwise(run, images.astype(dtype), layers) if remat else run(images.astype(dtype), layers))
    return {name: (value[0] if single else value).astype(jnp.float32) for name, value in out.items()}


def _blockwise(run, x: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
    """``run(x, layers)`` one block at a time, each block rematerialised: ``pool{b}`` carries x to block b+1."""
    out: dict[str, jax.Array] = {}
    last = max(vgg.block_of(name) for name in layers)
    for b in range(1, last + 1):
        names = tuple(name for name in layers if vgg.block_of(name) == b)
        carry = (f"pool{b}",) if b < last and f"pool{b}" not in names else ()
        res = remat.recompute_in_backward(lambda x, names=names + carry, b=b: run(x, names, b))(x)
        x = res[f"pool{b}"] if b < last else x
        out.update({name: res[name] for name in names})
    return out
