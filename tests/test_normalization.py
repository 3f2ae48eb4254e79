"""Each normalisation of the loss terms (jaxstyle.objective.perceptual), on hand-computed numbers: the factor
every content, style and TV term gets, and how a guided style term weighs its regions."""

from __future__ import annotations

import types

import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.nets import vgg
from jaxstyle.objective import perceptual as P
from jaxstyle.objective.losses import content_loss, gram_matrix, style_layer_loss_of_gram

RNG = np.random.default_rng(0)
F = jnp.asarray(RNG.normal(size=(4, 5, 3)).astype(np.float32))  # H, W, C: M = 20 positions, N = 3 channels
T = jnp.asarray(RNG.normal(size=(4, 5, 3)).astype(np.float32))


@pytest.mark.parametrize("norm,scale", [
    ("paper", 1.0),
    ("size", 1.0 / 60),  # mean over N*M = 60 elements
    ("neural-style", 2.0 / 60),  # mean squared error: (1/2 sum d^2) * 2 / 60
    ("relative", None),  # / (1/2 sum P^2)
])
def test_content_term_factor(norm, scale):
    expected_scale = scale if scale is not None else 1.0 / (0.5 * float(jnp.sum(T * T)))
    assert float(P.content_scale(T, norm)) == pytest.approx(expected_scale, rel=1e-6)
    assert float(P.content_term(F, T, norm)) == pytest.approx(float(content_loss(F, T)) * expected_scale,
                                                              rel=1e-5)


@pytest.mark.parametrize("norm", P.NORMALIZATIONS)
def test_style_term_factor(norm):
    target = gram_matrix(T)
    e = float(style_layer_loss_of_gram(gram_matrix(F), target, 3, 20))  # sum (G - A)^2 / (4 N^2 M^2)
    expected = {"paper": e, "size": e, "neural-style": 4 * e / 9,
                "relative": e / (float(jnp.sum(target * target)) / (4 * 9 * 400))}[norm]
    assert float(P.style_term(F, target, norm)) == pytest.approx(expected, rel=1e-5)
    assert float(P.style_term_of_gram(gram_matrix(F), target, 3, 20, norm)) == pytest.approx(expected, rel=1e-5)


def test_relative_terms_are_zero_at_the_target_and_one_at_zero():
    assert float(P.content_term(T, T, "relative")) == 0.0
    assert float(P.content_term(jnp.zeros_like(T), T, "relative")) == pytest.approx(1.0, rel=1e-5)
    assert float(P.style_term(jnp.zeros_like(T), gram_matrix(T), "relative")) == pytest.approx(1.0, rel=1e-5)


def image():
    return jnp.asarray(RNG.uniform(size=(6, 7, 3)).astype(np.float32))


@pytest.mark.parametrize("tv_norm", ["l2", "l1"])
def test_tv_term_per_normalization(tv_norm):
    x = image()
    dh, dw = np.diff(np.asarray(x), axis=0), np.diff(np.asarray(x), axis=1)
    raw = (np.square(dh).sum() + np.square(dw).sum()) if tv_norm == "l2" else (np.abs(dh).sum() + np.abs(dw).sum())
    model = types.SimpleNamespace(preprocess=vgg.PRESETS["caffe"])
    spec = lambda norm: P.LossSpec(("relu1_1",), ("relu1_1",), norm, "float32", tv_norm)
    assert float(P.tv_term(x, model, spec("paper"))) == pytest.approx(raw, rel=1e-5)
    assert float(P.tv_term(x, model, spec("size"))) == pytest.approx(raw / x.size, rel=1e-5)
    assert float(P.tv_term(x, model, spec("relative"))) == pytest.approx(raw / x.size, rel=1e-5)
    # neural-style: the TV of the network's input (here Caffe's: BGR x 255 minus the mean, so x 255 per step)
    scaled = raw * (255.0 ** 2 if tv_norm == "l2" else 255.0)
    assert float(P.tv_term(x, model, spec("neural-style"))) == pytest.approx(scaled, rel=1e-4)


@pytest.mark.parametrize("norm", ["paper", "relative"])
def test_guided_style_term_weighs_regions_by_blend_times_the_number_of_styles(norm):
    spec = P.LossSpec(("relu1_1",), ("relu1_1",), norm, "float32", "l2")
    left = np.zeros((4, 5), np.float32)
    left[:, :2] = 1.0
    guides = jnp.asarray(np.stack([left, 1 - left]))
    grams = jnp.stack([gram_matrix(T) / 20, gram_matrix(T[::-1]) / 20])
    region = [float(P.style_term(F * guides[r][..., None], grams[r] * jnp.sum(guides[r] ** 2), norm))
              for r in range(2)]
    equal = float(P.guided_style_term(F, grams, guides, jnp.asarray([0.5, 0.5]), spec))
    assert equal == pytest.approx(region[0] + region[1], rel=1e-5)  # equal blend: the paper's sum
    skewed = float(P.guided_style_term(F, grams, guides, jnp.asarray([0.75, 0.25]), spec))
    assert skewed == pytest.approx(2 * (0.75 * region[0] + 0.25 * region[1]), rel=1e-5)
