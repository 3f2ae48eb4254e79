"""jaxstyle.stylize, the one-call Python API: what it returns is what run_stylize makes of the same settings, its
options, model and masks reach the run, the random network it falls back on uses the asked pooling, and a run
that does not finish is an exception, not an image."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import jaxstyle
from jaxstyle import gatys
from jaxstyle.errors import ConfigError, NonFiniteLossError
from jaxstyle.gatys import run as run_module
from jaxstyle.gatys.run import run_stylize

LIGHT = dict(image_size=32, iterations=3, content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"),
             optimizer="adam", learning_rate=0.05)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.random((24, 32, 3), np.float32), rng.random((32, 32, 3), np.float32)


def test_stylize_returns_run_stylizes_image_for_the_same_options(model, images):
    content, style = images
    options = dict(LIGHT, style_weight=3e4, tv_weight=1e-3, seed=5)
    image = jaxstyle.stylize(content, style, model=model, **options)
    expected = run_stylize(content, style, model, gatys.StyleConfig(**options))
    assert expected.status == "done"
    np.testing.assert_array_equal(image, expected.image)
    assert image.shape == (24, 32, 3)
    # The options are not ignored: another seed is another image.
    other = jaxstyle.stylize(content, style, model=model, **dict(options, seed=6))
    assert np.abs(other - image).max() > 1e-3


def test_stylize_passes_masks_through(model, images):
    content, style = images
    left = np.zeros((24, 32), np.float32)
    left[:, :16] = 1.0
    masks = dict(content_masks=[left, 1.0 - left], style_masks=[np.ones((32, 32), np.float32)] * 2)
    image = jaxstyle.stylize(content, [style, style[::-1]], model=model, **masks, **LIGHT)
    expected = run_stylize(content, [style, style[::-1]], model, gatys.StyleConfig(**LIGHT), **masks).image
    np.testing.assert_array_equal(image, expected)
    unmasked = jaxstyle.stylize(content, [style, style[::-1]], model=model, **LIGHT)
    assert np.abs(unmasked - image).max() > 1e-4


def test_stylize_without_a_model_uses_the_random_vgg_with_the_asked_pooling(images):
    content, style = images
    with pytest.warns(jaxstyle.RandomWeightsWarning):
        image = jaxstyle.stylize(content, style, pooling="avg", **LIGHT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxstyle.RandomWeightsWarning)
        model = jaxstyle.load_vgg("random", pooling="avg")
    expected = run_stylize(content, style, model, gatys.StyleConfig(pooling="avg", **LIGHT)).image
    np.testing.assert_array_equal(image, expected)


def test_stylize_refuses_a_bad_option(images):
    content, style = images
    with pytest.raises(ConfigError, match="no-such-optimizer"):
        jaxstyle.stylize(content, style, optimizer="no-such-optimizer")
    with pytest.raises(TypeError, match="no_such_option"):
        jaxstyle.stylize(content, style, no_such_option=1)


@pytest.mark.parametrize("status, error", [("nonfinite", NonFiniteLossError), ("interrupted", KeyboardInterrupt)])
def test_a_run_that_does_not_finish_raises_with_its_message(model, images, monkeypatch, status, error):
    content, style = images
    made = run_stylize(content, style, model, gatys.StyleConfig(**LIGHT))
    monkeypatch.setattr(run_module, "run_stylize",
                        lambda *a, **k: dataclasses.replace(made, status=status, message=f"stopped: {status} at iteration 2"))
    with pytest.raises(error, match=f"^stopped: {status} at iteration 2$"):
        jaxstyle.stylize(content, style, model=model, **LIGHT)
