"""Spatial control (Gatys et al. 2017): guides carried down the network, guided Grams, regions and the CLI."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxstyle import gatys, objective
from jaxstyle.cli import main
from jaxstyle.errors import UsageError

LAYERS = ("relu1_1", "relu2_1")  # shallow: receptive fields of 3 and 10 px, so regions are far apart in 64 px


def _half(h=32, w=64, left=True):
    m = np.zeros((h, w), np.float32)
    m[:, : w // 2] = 1.0
    return m if left else 1.0 - m


def test_layer_guides_simple_inside_all():
    g = jnp.asarray(_half(16, 16))[None]  # columns 0..7 inside
    simple = objective.layer_guides("vgg19", g, ("relu1_1", "relu2_1", "pool2"), "simple")
    inside = objective.layer_guides("vgg19", g, ("relu1_1", "relu1_2"), "inside")
    all_ = objective.layer_guides("vgg19", g, ("relu1_1",), "all")
    np.testing.assert_array_equal(simple["relu1_1"], g)  # convs keep the size and the guide
    assert simple["relu2_1"].shape == (1, 8, 8) and simple["pool2"].shape == (1, 4, 4)
    np.testing.assert_array_equal(simple["relu2_1"][0, 0], [1, 1, 1, 1, 0, 0, 0, 0])
    # One 3x3 conv: erosion moves the edge one column in, dilation one column out; the image border is no edge.
    assert inside["relu1_1"][0, 0].tolist() == [1] * 7 + [0] * 9
    assert inside["relu1_2"][0, 0].tolist() == [1] * 6 + [0] * 10
    assert all_["relu1_1"][0, 0].tolist() == [1] * 9 + [0] * 7


@pytest.mark.parametrize("method", ["simple", "inside", "all"])
def test_one_region_covering_everything_is_the_unguided_loss(model, method):
    # A guide of ones (and a style mask of ones) must give exactly the paper's loss: the guided Gram's mass
    # normalisation and the target brought to the region's mass are then M_l's.
    rng = np.random.default_rng(0)
    content, style, x = (jnp.asarray(rng.uniform(size=s).astype(np.float32)) for s in
                         ((24, 32, 3), (28, 20, 3), (24, 32, 3)))
    spec = objective.LossSpec(("relu2_2",), LAYERS, "paper")
    weights = gatys.loss_weights(gatys.StyleConfig(style_layers=LAYERS), 1)
    ct = objective.content_targets(model, content, spec.content_layers)
    plain = objective.Targets(ct, objective.style_targets(model, [style], LAYERS))
    guided = objective.Targets(ct, objective.style_targets(model, [style], LAYERS, "float32", [jnp.ones((28, 20))],
                                                           method),
                               objective.output_guides(model, jnp.ones((1, 24, 32)), LAYERS, method))
    a = objective.loss_terms(x, model, plain, weights, spec)["style"]
    b = objective.loss_terms(x, model, guided, weights, spec)["style"]
    np.testing.assert_allclose(float(b), float(a), rtol=1e-5)


def _two_region_grad(model, style_b, *, assign_right=True):
    rng = np.random.default_rng(1)
    content = rng.uniform(size=(32, 64, 3)).astype(np.float32)
    style_a = rng.uniform(size=(32, 32, 3)).astype(np.float32)
    styles = [style_a, style_b] if assign_right else [style_a]
    masks = [_half(), _half(left=False)] if assign_right else [_half()]
    config = gatys.StyleConfig(style_layers=LAYERS, image_size=None, content_weight=0.0, tv_weight=0.0)
    problem = gatys.prepare(model, content, styles, config, content_masks=masks)
    x = jnp.asarray(rng.uniform(size=(32, 64, 3)).astype(np.float32))
    f = lambda im: objective.total_loss(im, model, problem.targets, problem.weights, problem.spec)
    return np.asarray(jax.grad(f)(x))


def test_masked_style_does_not_change_the_loss_of_another_region(model):
    # Left half -> style A, right half -> style B. Changing B changes the gradient on the right and leaves it
    # unchanged on the left beyond relu2_1's receptive field (10 px) from the border (column 32).
    rng = np.random.default_rng(2)
    g1 = _two_region_grad(model, rng.uniform(size=(32, 32, 3)).astype(np.float32))
    g2 = _two_region_grad(model, rng.uniform(size=(32, 32, 3)).astype(np.float32) ** 3)
    far_left, far_right = slice(0, 20), slice(44, 64)
    np.testing.assert_allclose(g2[:, far_left], g1[:, far_left], rtol=1e-5, atol=1e-6 * np.abs(g1).max())
    assert np.abs(g2[:, far_right] - g1[:, far_right]).max() > 0.1 * np.abs(g1[:, far_right]).max()


def test_region_without_style_gets_no_style_gradient(model):
    g = _two_region_grad(model, None, assign_right=False)  # only the left half has a style
    assert np.abs(g[:, :20]).max() > 0
    assert np.abs(g[:, 44:]).max() == 0.0


def test_mask_count_must_match_styles(model):
    x = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(UsageError, match="content mask"):
        gatys.prepare(model, x, [x, x], gatys.StyleConfig(image_size=None), content_masks=[np.ones((8, 8))])


def _png(path, array):
    Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)


def test_cli_masks_end_to_end_and_one_line_errors(tmp_path, capsys):
    rng = np.random.default_rng(3)
    for name in ("content", "a", "b"):
        _png(tmp_path / f"{name}.png", rng.uniform(size=(32, 48, 3)))
    _png(tmp_path / "left.png", _half(32, 48))
    _png(tmp_path / "right.png", _half(32, 48, left=False))
    base = ["stylize", "--content", str(tmp_path / "content.png"), "--style",
            str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--weights", "random", "--image-size", "32",
            "--iterations", "2", "-q", "--style-layers", "relu1_1,relu2_1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*base, "--content-mask", str(tmp_path / "left.png"), "-o", str(tmp_path / "bad.png")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "1 mask(s) for 2 style image(s)" in err, err
        assert not (tmp_path / "bad.png").exists()
        code = main([*base, "--content-mask", str(tmp_path / "left.png"), str(tmp_path / "right.png"), "--style-mask", "none",
             str(tmp_path / "left.png"), "--mask-method", "inside", "--output-bits", "16", "-o", str(tmp_path / "out.png")])
    assert code == 0, capsys.readouterr().err
    assert Image.open(tmp_path / "out.png").size == (32, 21)
    png = pytest.importorskip("png")
    assert png.Reader(filename=str(tmp_path / "out.png")).asDirect()[3]["bitdepth"] == 16
