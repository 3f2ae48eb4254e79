"""Numeric precision of the VGG forward/backward pass: ``float32`` (default), ``tf32`` or ``bfloat16``.

The convolutions are >99% of the work (docs/algorithm.md, "Cost"); the losses are not. So precision is a
property of feature extraction only, applied in one place (:func:`jaxstyle.nets.model.extract_features`); this
module is the policy it applies:

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

import jax.numpy as jnp

PRECISIONS = ("float32", "tf32", "bfloat16")
DEFAULT = "float32"

# jax.default_matmul_precision names for the convolutions of each mode (XLA lowers them as HIGHEST, HIGH and
# DEFAULT; tests/test_precision.py checks the lowered program).
CONV_PRECISION = {"float32": "highest", "tf32": "tensorfloat32", "bfloat16": "bfloat16"}
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
