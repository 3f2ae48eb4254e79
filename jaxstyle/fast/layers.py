"""The transformation network as a flat sequence of layer operations, for the programs that walk it layer by layer.

:class:`jaxstyle.fast.net.TransformerNet` is the definition (the Flax module training and :func:`apply` use). The
ONNX exporter (``export.py``) and the tiled executor (``tiled.py``) need the same network as data: which
convolution, with which kernel, stride and upsampling, which normalisation, where a residual branch starts and
ends. :func:`sequence` is that description, once; ``tests/test_fast_tiled.py`` checks that walking it gives
exactly ``TransformerNet.apply``, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses

from ..errors import UsageError
from .net import variant_fields


@dataclasses.dataclass(frozen=True)
class Conv:
    """``ConvLayer``: [nearest x2 upsample] -> reflection pad ``kernel // 2`` -> convolution with ``stride``."""

    path: tuple[str, ...]
    kernel: int
    stride: int = 1
    upsample: bool = False

    @property
    def pad(self) -> int:
        return self.kernel // 2


@dataclasses.dataclass(frozen=True)
class Norm:
    """Conditional instance norm (statistics over the whole image), then ReLU when ``relu``."""

    path: tuple[str, ...]
    relu: bool


@dataclasses.dataclass(frozen=True)
class SaveResidual:
    """Remember the current activation: the skip connection of a residual block starts here."""


@dataclasses.dataclass(frozen=True)
class AddResidual:
    """Add the remembered activation: the residual block ends here."""


def sequence(net) -> list:
    """The operations of ``net`` (a :class:`TransformerNet`) in order; paths index ``params["params"]``.

    Only jaxstyle's own layout is described: imported variants (:func:`~jaxstyle.fast.net.variant_fields`) raise
    :class:`~jaxstyle.errors.UsageError` (tiling and ONNX export do not handle them yet).
    """
    variants = [f"{k}={v}" for k, v in variant_fields(net).items()]
    if variants:
        raise UsageError(f"tiled application and ONNX export support jaxstyle's own network layout only; this "
                         f"network uses {', '.join(variants)} (apply it without --tile)")
    ops: list = []
    for name, kernel, stride in (("c1", 9, 1), ("d1", 3, 2), ("d2", 3, 2)):
        ops += [Conv((name,), kernel, stride), Norm((f"{name}_in",), relu=True)]
    for i in range(net.n_residual):
        r = f"r{i + 1}"
        ops += [SaveResidual(), Conv((r, "conv1"), 3), Norm((r, "in1"), relu=True),
                Conv((r, "conv2"), 3), Norm((r, "in2"), relu=False), AddResidual()]
    for name in ("u1", "u2"):
        ops += [Conv((name,), 3, upsample=True), Norm((f"{name}_in",), relu=True)]
    return ops + [Conv(("c2",), 9)]


def lookup(params: dict, path: tuple[str, ...]) -> dict:
    """The parameter subtree at ``path`` of a network's variables (``params["params"][path...]``)."""
    tree = params["params"]
    for key in path:
        tree = tree[key]
    return tree
