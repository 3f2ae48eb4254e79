"""Spatial-control guides (jaxstyle.objective.guidance) on hand-computable masks: how each method carries a
region down the network, and the guided Gram matrices."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.objective import guidance
from jaxstyle.objective.losses import gram_matrix


def half(h=16, w=16):
    """One region: the left half of the image."""
    g = np.zeros((1, h, w), np.float32)
    g[:, :, : w // 2] = 1.0
    return jnp.asarray(g)


def test_simple_method_averages_at_each_pooling_and_ignores_convolutions():
    g = jnp.asarray(np.arange(16, dtype=np.float32).reshape(1, 4, 4) / 15)
    out = guidance.layer_guides("vgg16", g, ["relu1_1", "relu1_2", "pool1", "relu2_1"], "simple")
    np.testing.assert_array_equal(np.asarray(out["relu1_1"]), np.asarray(g))
    np.testing.assert_array_equal(np.asarray(out["relu1_2"]), np.asarray(g))
    want = np.asarray(g)[0].reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(np.asarray(out["pool1"])[0], want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out["relu2_1"])[0], want, rtol=1e-6)


@pytest.mark.parametrize("method,boundary", [("inside", 0.0), ("all", 1.0)])
def test_inside_erodes_and_all_dilates_the_region_at_each_conv(method, boundary):
    out = guidance.layer_guides("vgg16", half(), ["conv1_1", "relu1_2"], method)
    one = np.asarray(out["conv1_1"])[0]  # one 3x3 conv: the column on each side of the edge changes
    assert one[:, :7].min() == 1.0 and one[:, 9:].max() == 0.0
    np.testing.assert_array_equal(one[:, 7], 1.0 if method == "all" else 0.0)
    np.testing.assert_array_equal(one[:, 8], 1.0 if method == "all" else 0.0)
    two = np.asarray(out["relu1_2"])[0]  # two convs: two columns each side
    np.testing.assert_array_equal(two[:, 6], boundary)
    np.testing.assert_array_equal(two[:, 9], boundary)
    # The image border neither erodes nor dilates: the region's far edge (column 0) stays 1, the other side 0.
    assert two[:, 0].min() == 1.0 and two[:, -1].max() == 0.0


@pytest.mark.parametrize("method", guidance.GUIDE_METHODS)
def test_guides_have_each_layers_size_and_stop_after_the_deepest(method):
    out = guidance.layer_guides("vgg19", half(20, 18), ["relu1_1", "pool2", "relu3_1"], method)
    assert {k: v.shape for k, v in out.items()} == {"relu1_1": (1, 20, 18), "pool2": (1, 5, 4),
                                                    "relu3_1": (1, 5, 4)}


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="guide method must be one of simple, inside, all, not 'blur'"):
        guidance.layer_guides("vgg19", half(), ["relu1_1"], "blur")


def test_guided_gram_is_the_regions_gram_per_position():
    rng = np.random.default_rng(0)
    f = jnp.asarray(rng.normal(size=(4, 6, 3)).astype(np.float32))
    guide = np.zeros((4, 6), np.float32)
    guide[:, :2] = 1.0  # 8 positions
    g = guidance.guided_gram(f, jnp.asarray(guide))
    inside = np.asarray(f)[:, :2].reshape(-1, 3)
    np.testing.assert_allclose(np.asarray(g), inside.T @ inside / 8, rtol=1e-5)
    assert float(guidance.guide_mass(jnp.asarray(guide * 0.5))) == pytest.approx(2.0)  # sum of T^2
    # A soft guide weighs positions by T^2; the whole image is the plain Gram / M.
    np.testing.assert_allclose(np.asarray(guidance.guided_gram(f, jnp.ones((4, 6)))),
                               np.asarray(gram_matrix(f)) / 24, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(guidance.guided_gram(f, jnp.zeros((4, 6)))), 0.0)  # empty region


def test_a_small_soft_region_is_divided_by_its_own_mass():
    # mass 0.25 (one position at 0.5): the region's Gram per position, not damped by a floor meant only for 0
    f = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, 2)).astype(np.float32))
    guide = np.zeros((3, 3), np.float32)
    guide[1, 2] = 0.5
    got = np.asarray(guidance.guided_gram(f, jnp.asarray(guide)))
    v = np.asarray(f)[1, 2]
    np.testing.assert_allclose(got, np.outer(v, v), rtol=1e-5)


@pytest.mark.parametrize("method", ["inside", "all"])
def test_eroding_and_dilating_go_on_through_the_pooling(method):
    # Block 1 has two convs, then a 2x2 min (inside) or max (all): on the left-half guide the pool1 edge is at
    # column 3 (of 8) inside, column 4 all; a third conv per block would move it.
    out = np.asarray(guidance.layer_guides("vgg16", half(), ["pool1"], method)["pool1"])[0]
    row = out[0]
    expected = [1, 1, 1, 0, 0, 0, 0, 0] if method == "inside" else [1, 1, 1, 1, 1, 0, 0, 0]
    np.testing.assert_array_equal(row, expected)


def test_the_default_method_is_simple(model):
    from jaxstyle.objective.targets import output_guides

    g = half()
    default = guidance.layer_guides("vgg19", g, ["pool1"])
    np.testing.assert_array_equal(np.asarray(default["pool1"]),
                                  np.asarray(guidance.layer_guides("vgg19", g, ["pool1"], "simple")["pool1"]))
    simple = output_guides(model, g, ["relu2_1"])
    np.testing.assert_array_equal(np.asarray(simple["relu2_1"]),
                                  np.asarray(guidance.layer_guides("vgg19", g, ["relu2_1"])["relu2_1"]))
    dilated = output_guides(model, g, ["relu2_1"], "all")  # the method reaches the guides
    assert float(jnp.sum(dilated["relu2_1"])) > float(jnp.sum(simple["relu2_1"]))
