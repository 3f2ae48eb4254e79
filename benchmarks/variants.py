"""Benchmark-only variants of jaxstyle's loss, each differing from the default in exactly one lever.

Nothing here is used by the library. The variants exist to measure what a design choice buys: they either
re-trace jaxstyle's own ``total_loss`` with one function swapped (weights gradients, Gram precision, numeric
precision), or use a hand-written VGG forward (``lax.conv_general_dilated``) that can switch the data layout
(NHWC/NCHW) or rematerialise each block (``jax.checkpoint``), with the same loss formulas.
"""

from __future__ import annotations

import contextlib
import importlib

import jax
import jax.numpy as jnp

from jaxstyle.nets import vgg
from jaxstyle.objective import losses

# The module whose ``extract_features`` the loss looks up (patched by the variants below while tracing).
perceptual = importlib.import_module("jaxstyle.objective.perceptual")


@contextlib.contextmanager
def swapped(module, name, value):
    """Temporarily replace ``module.name`` (only while a function is traced)."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def _features_with_weight_grads(model, images, layers, precision="float32", remat=False):
    """extract_features without the stop_gradient on the weights."""
    images = images[None]
    out = model.module.apply(model.params, images, layers=tuple(layers))
    return {k: v[0] for k, v in out.items()}


def loss_and_grad(spec, *, weight_grads=False, gram_precision=None, precision=None):
    """Jitted ``(model, x, targets, weights) -> (loss, grads)`` of jaxstyle's total loss with one lever changed.

    weight_grads: also differentiate w.r.t. the VGG weights (what a naive port pays).
    gram_precision: a ``jax.lax.Precision`` for the Gram instead of HIGHEST.
    precision: a :mod:`jaxstyle.nets.precision` mode for the conv stack.
    """
    if precision is not None:  # extract_features applies the conv stack's precision named in the spec
        spec = spec._replace(precision=precision)

    def f(model, x, targets, weights):
        with contextlib.ExitStack() as stack:
            if weight_grads:
                stack.enter_context(swapped(perceptual, "extract_features", _features_with_weight_grads))
            if gram_precision is not None:
                stack.enter_context(swapped(losses, "HIGHEST", gram_precision))
            loss = lambda m, img: perceptual.total_loss(img, m, targets, weights, spec)
            if weight_grads:
                return jax.value_and_grad(loss, argnums=(0, 1))(model, x)
            return jax.value_and_grad(loss, argnums=1)(model, x)

    return jax.jit(f)


# ------------------------------------------------------------------------------------------------------------
# Hand-written forward with a switchable layout and per-block rematerialisation.

def _vgg_forward(params, image_hwc, layers, preprocess, layout="NHWC", remat=False, pooling="reduce_window"):
    wanted = set(layers)
    order = vgg.layer_names("vgg19")
    last = max(order.index(l) for l in wanted)
    x = preprocess(image_hwc[None])
    if layout == "NCHW":
        x = jnp.transpose(x, (0, 3, 1, 2))
    dn = ("NHWC", "HWIO", "NHWC") if layout == "NHWC" else ("NCHW", "OIHW", "NCHW")
    window = (1, 2, 2, 1) if layout == "NHWC" else (1, 1, 2, 2)
    out = {}

    def block(x, b, n_convs):
        res = {}
        for i in range(1, n_convs + 1):
            k = params[f"conv{b}_{i}"]["kernel"]
            if layout == "NCHW":
                k = jnp.transpose(k, (3, 2, 0, 1))
            bias = params[f"conv{b}_{i}"]["bias"]
            x = jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)
            x = x + (bias if layout == "NHWC" else bias[:, None, None])
            x = jax.nn.relu(x)
            res[f"relu{b}_{i}"] = x
        return x, res

    for b, convs in enumerate(vgg.ARCHITECTURES["vgg19"], 1):
        fn = jax.checkpoint(block, static_argnums=(1, 2)) if remat else block
        x, res = fn(x, b, len(convs))
        out.update({k: v for k, v in res.items() if k in wanted})
        if order.index(f"pool{b}") > last:
            break
        if pooling == "jaxstyle" and layout == "NHWC":  # jaxstyle's own max pooling and its gradient
            x = vgg.max_pool_2x2(x)
        else:
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, window, "VALID")
    to_hwc = (lambda v: v[0]) if layout == "NHWC" else (lambda v: jnp.transpose(v[0], (1, 2, 0)))
    return {k: to_hwc(v) for k, v in out.items()}


def handwritten_loss_and_grad(spec, *, layout="NHWC", remat=False, pooling="reduce_window"):
    """Same loss as jaxstyle (its loss_terms), features from the hand-written forward. ``pooling``:
    ``"reduce_window"`` (``nn.max_pool``'s, as the levers were measured) or ``"jaxstyle"``
    (``vgg.max_pool_2x2``, NHWC only), so that a ``remat`` variant differs from jaxstyle in the checkpoint only."""

    def features(model, image, layers, precision="float32", _remat=False):
        params = jax.lax.stop_gradient(model.params["params"])
        return _vgg_forward(params, image, tuple(layers), model.preprocess, layout, remat, pooling)

    def f(model, x, targets, weights):
        with swapped(perceptual, "extract_features", features):
            return jax.value_and_grad(lambda img: perceptual.total_loss(img, model, targets, weights, spec))(x)

    return jax.jit(f)
