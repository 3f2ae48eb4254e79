"""Rematerialisation of the VGG forward pass: keep each block's input, recompute the block in the backward pass.

One loss-and-gradient evaluation otherwise holds every activation the backward pass reads (each conv's ReLU
output, pooling's input, the features the losses use) from the end of the forward pass to the step of the
backward pass that reads it: on XLA CPU its peak is the end of the forward pass. With :func:`recompute_in_backward`
applied to each of VGG's five blocks (:func:`jaxstyle.nets.model.extract_features`, ``remat=True``), only the
blocks' inputs and the features the losses use are kept; each block's inner activations exist again only while
its own backward pass runs. It costs one more forward pass (measured: +23 % time per evaluation at 256² and 512²
on CPU) and lowers the evaluation's memory per pixel (docs/highres.md, "Rematerialisation").

Departure from ``jax.checkpoint`` (what issue 13 named, and what would do on a GPU or TPU): on XLA CPU,
``jax.checkpoint`` changes nothing. CPU's compiler expands the optimisation barriers that keep the
recomputation apart, common-subexpression elimination merges the recomputed convolutions with the forward ones,
and the buffers stay live as before (compiled temporaries identical with and without it, any policy; docs/highres.md).
:func:`recompute_in_backward` is a ``jax.custom_vjp`` whose backward pass feeds the recomputation
``x + 0 * g[0]``, a scalar data dependency on the incoming cotangent: no compiler can merge it with the forward
pass or schedule it before the backward pass reaches the block. The forward values it recomputes are the same
operations on the same numbers, so the gradient is the one of the plain evaluation compiled alike (compiled with
XLA CPU's default fusions, the plain one rounds differently: 7.5e-5 relative on real weights, docs/highres.md).

XLA CPU's YNNPACK library fusions then materialise each conv's broadcast bias and ReLU constant as full-size
arrays and the scheduler hoists them to the start of the program, which cancels the gain: programs that
rematerialise are compiled with those fusions off (:func:`compiler_options`), which costs nothing measurable in
speed (docs/highres.md).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .. import xla_options


def recompute_in_backward(fn: Callable) -> Callable:
    """``fn`` (one array in, a pytree of arrays out) that saves only its input for the backward pass and runs
    ``fn`` again there, after the cotangent has arrived.

    Whatever ``fn`` closes over is a constant to the derivative (here: VGG's weights, which
    :func:`~jaxstyle.nets.model.extract_features` passes through ``stop_gradient`` anyway).
    """

    @jax.custom_vjp
    def run(x):
        return fn(x)

    def forward(x):
        return fn(x), x

    def backward(x, g):
        first = sum(jnp.ravel(leaf)[0].astype(jnp.float32) for leaf in jax.tree.leaves(g))
        # 0 * first ties the recomputation to the cotangent; where() keeps an infinite first element from
        # turning it into NaN.
        tie = jnp.where(jnp.isfinite(first), first * 0, 0).astype(x.dtype)
        _, vjp = jax.vjp(fn, x + tie)
        return vjp(g)

    run.defvjp(forward, backward)
    return run


def compiler_options(remat: bool) -> dict:
    """Options for ``jax.jit(..., compiler_options=...)`` of a program that rematerialises (``remat``): on CPU,
    no YNNPACK library fusions (see the module docstring, :func:`jaxstyle.xla_options.no_library_fusions`)."""
    return xla_options.no_library_fusions() if remat else {}
