"""Numeric precision of the VGG forward/backward pass: ``float32`` (default), ``tf32`` or ``bfloat16``.

The convolutions are >99% of the work (docs/algorithm.md, "Cost"); the losses are not. So precision is a
property of feature extraction only, applied in one place (:func:`extract_features`):

- ``float32``: float32 activations and convolutions at HIGHEST precision (true float32 everywhere; on Ampere+
  GPUs XLA's default precision would otherwise use TF32 for float32 convolutions).
- ``tf32``: float32 activations, convolutions at TensorFloat-32 (``jax.default_matmul_precision``): ~8x the
  conv throughput on NVIDIA Ampere/Hopper. Identical to ``float32`` on CPU (no TF32 units there).
- ``bfloat16``: weights and the image are cast to bfloat16 for the conv stack, so activations (and the
  memory they take) are bfloat16. The features are cast back to float32 before any loss.

In every mode the Gram matrices and losses stay float32: :func:`jaxstyle.objective.losses.gram_matrix` accumulates in
float32 at HIGHEST precision whatever its input dtype, and the optimiser's image, gradient and state are
float32 (the gradient flowing back through the cast is cast back to float32).

Departure, on purpose: the paper (and Caffe) compute in float32; the lower precisions trade a small change of
the loss landscape for speed and memory. ``benchmarks/run.py --phases levers`` measures both.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from .model import VGGModel
from .model import extract_features as _extract_features

PRECISIONS = ("float32", "tf32", "bfloat16")
DEFAULT = "float32"

# jax.default_matmul_precision names for the convolutions of each mode.
_CONV_PRECISION = {"float32": "highest", "tf32": "tensorfloat32", "bfloat16": "bfloat16"}
_COMPUTE_DTYPE = {"float32": jnp.float32, "tf32": jnp.float32, "bfloat16": jnp.bfloat16}


def check(precision: str) -> str:
    """Return ``precision`` if known, else raise ``ValueError`` naming the valid ones (callers map it to a
    UsageError)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def compute_dtype(precision: str):
    """Activation dtype of the conv stack for ``precision``."""
    return _COMPUTE_DTYPE[check(precision)]


def cast_model(model: VGGModel, precision: str) -> VGGModel:
    """``model`` with its weights in the compute dtype of ``precision`` (a no-op for float32/tf32)."""
    dtype = compute_dtype(precision)
    if dtype == jnp.float32:
        return model
    return model.replace(params=jax.tree.map(lambda p: p.astype(dtype), model.params))


def extract_features(model: VGGModel, images: jax.Array, layers: Sequence[str],
                     precision: str = DEFAULT) -> dict[str, jax.Array]:
    """:func:`jaxstyle.nets.model.extract_features` at ``precision``; the features returned are always float32.

    Pure and jit-able; ``precision`` must be static (it changes the traced program).
    """
    dtype = compute_dtype(precision)
    with jax.default_matmul_precision(_CONV_PRECISION[precision]):
        feats = _extract_features(cast_model(model, precision), jnp.asarray(images).astype(dtype), layers)
    return {name: f.astype(jnp.float32) for name, f in feats.items()}
