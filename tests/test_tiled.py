"""Tiled style statistics (jaxstyle.objective.tiled): Grams and the loss's gradient summed over tiles with a
receptive-field halo equal the untiled ones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import gatys, objective
from jaxstyle.objective import tiled

LAYERS = ("relu1_1", "relu2_1")  # shallow, so a 64 px image holds several tiles beyond the halo (10 px)


def test_halo_of_vgg_layers():
    assert tiled.halo("vgg19", ("relu1_1",)) == (1, 1)
    assert tiled.halo("vgg19", ("relu1_1", "relu2_1")) == (1 + 1 + 1 + 2, 2)  # conv, conv, pool, conv at 2
    assert tiled.halo("vgg16", ("relu5_1",))[1] == 16


def test_tiled_gram_equals_untiled_gram(model):
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(40, 56, 3)).astype(np.float32))
    want = {l: objective.gram_matrix(f) for l, f in objective.content_targets(model, x, LAYERS).items()}
    got = jax.jit(lambda im: tiled.tiled_grams(model, im, LAYERS, tile=24))(x)
    for layer in LAYERS:  # float32 sums in another order: 1e-5 relative
        np.testing.assert_allclose(np.asarray(got[layer]), np.asarray(want[layer]), rtol=1e-5,
                                   atol=1e-5 * float(jnp.abs(want[layer]).max()))


def test_tiled_loss_and_gradient_equal_untiled(model):
    rng = np.random.default_rng(1)
    content, style, x = (rng.uniform(size=s).astype(np.float32) for s in ((32, 48, 3), (32, 32, 3), (32, 48, 3)))
    config = gatys.StyleConfig(image_size=None, style_layers=LAYERS, content_layers=("relu2_2",), tv_weight=0.5)
    p = gatys.prepare(model, content, [style], config)
    untiled = jax.jit(jax.value_and_grad(lambda im: objective.total_loss(im, model, p.targets, p.weights, p.spec)))
    v0, g0 = untiled(jnp.asarray(x))
    # Through tiled_total_loss's custom_vjp, as run_stylize's optimisers differentiate it (--tile).
    v1, g1 = jax.jit(jax.value_and_grad(lambda im: tiled.tiled_total_loss(im, model, p.targets, p.weights, p.spec,
                                                                          24)))(jnp.asarray(x))
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-5)
    assert np.linalg.norm(np.asarray(g1 - g0)) <= 1e-4 * np.linalg.norm(np.asarray(g0))
