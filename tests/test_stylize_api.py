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


def test_original_colors_luminance_keeps_the_contents_colours(model, images):
    # Gatys et al. 2017's luminance-only transfer: the output's luminance (Y) is stylized, its chroma (I, Q) is the
    # content's, except where the result had to be clipped to [0, 1].
    from jaxstyle import colour

    content, style = images
    result = run_stylize(content, style, model, gatys.StyleConfig(**LIGHT, original_colors="luminance"))
    plain = run_stylize(content, style, model, gatys.StyleConfig(**LIGHT))
    chroma = lambda image: np.asarray(colour.rgb_to_yiq(image))[..., 1:]  # noqa: E731
    inside = np.all((result.image > 0.002) & (result.image < 0.998), axis=-1)
    assert inside.mean() > 0.3
    np.testing.assert_allclose(chroma(result.image)[inside], chroma(content)[inside], atol=1e-3)
    assert np.abs(chroma(plain.image) - chroma(content)).max() > 0.1


def test_an_averaging_run_returns_the_average_of_its_iterates(model, images):
    from jaxstyle.optim import optimizers

    content, style = images
    result = run_stylize(content, style, model, gatys.StyleConfig(**LIGHT, average=0.5))
    state = result.state
    average = np.clip(np.asarray(optimizers.output(state.opt_state, state.x)), 0, 1)
    np.testing.assert_array_equal(result.image, average)
    assert np.abs(average - np.clip(np.asarray(state.x), 0, 1)).max() > 1e-3  # not the last iterate
