"""gatys.prepare and the starting image on their own: the sizes, colour handling and targets a run gets from
its inputs and settings, and every refusal (one line, what to do). Small images, two shallow layers."""

from __future__ import annotations

import jax.numpy as jnp
import pathlib

import numpy as np
import pytest

from jaxstyle import colour
from jaxstyle.errors import ConfigError, UsageError
from jaxstyle.gatys import StyleConfig, prepare
from jaxstyle.gatys.problem import init_image, resize

LIGHT = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=1)


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(7)
    content = rng.uniform(0.2, 0.6, (24, 36, 3)).astype(np.float32)
    content[..., 0] += 0.3  # reddish
    style = rng.uniform(0.0, 1.0, (40, 20, 3)).astype(np.float32)
    style[..., 2] = 0.9 * style[..., 2]
    return content, style


def test_sizes_follow_the_long_side_and_style_scale(model, pictures):
    content, style = pictures
    p = prepare(model, content, [style], StyleConfig(image_size=48, style_scale=0.5, **LIGHT))
    assert p.shape == (32, 48, 3) and p.content.shape == (32, 48, 3)
    assert p.styles[0].shape == (24, 16, 3)  # long side round(48 * 0.5); the short side at least 16 (VGG)
    kept = prepare(model, content, [style], StyleConfig(image_size=None, **LIGHT))
    assert kept.shape == (24, 36, 3) and kept.styles[0].shape == (36, 18, 3)  # style long side = content's
    np.testing.assert_array_equal(np.asarray(kept.content), content)  # no resize at its own size


def test_targets_and_weights_follow_the_config(model, pictures):
    content, style = pictures
    config = StyleConfig(image_size=32, style_blend_weights=(1, 3), **LIGHT)
    p = prepare(model, content, [style, style[::-1]], config)
    assert sorted(p.targets.content) == ["relu2_1"] and sorted(p.targets.grams) == ["relu1_1", "relu2_1"]
    assert p.targets.grams["relu1_1"].shape == (2, 64, 64) and p.targets.guides is None
    np.testing.assert_allclose(np.asarray(p.weights.blend), [0.25, 0.75])
    assert p.spec.content_layers == ("relu2_1",) and p.spec.style_layers == ("relu1_1", "relu2_1")


def test_histogram_colours_move_the_style_onto_the_content_colours(model, pictures):
    content, style = pictures
    p = prepare(model, content, [style], StyleConfig(image_size=32, original_colors="histogram", **LIGHT))
    mean_style = np.asarray(p.styles[0]).reshape(-1, 3).mean(0)
    mean_content = np.asarray(p.content_rgb).reshape(-1, 3).mean(0)
    np.testing.assert_allclose(mean_style, mean_content, atol=0.03)
    plain = prepare(model, content, [style], StyleConfig(image_size=32, **LIGHT))
    assert np.abs(np.asarray(plain.styles[0]).reshape(-1, 3).mean(0) - mean_content).max() > 0.1


def test_luminance_mode_shows_the_network_grey_images_matched_to_the_content(model, pictures):
    content, style = pictures
    p = prepare(model, content, [style], StyleConfig(image_size=32, original_colors="luminance", **LIGHT))
    for image in (p.content, p.styles[0]):
        a = np.asarray(image)
        np.testing.assert_allclose(a[..., 0], a[..., 1]) and np.testing.assert_allclose(a[..., 0], a[..., 2])
    y_content = np.asarray(colour.luminance(p.content_rgb))
    np.testing.assert_allclose(np.asarray(p.content)[..., 0], y_content, atol=1e-6)
    y_style = np.asarray(p.styles[0])[..., 0]
    assert y_style.mean() == pytest.approx(y_content.mean(), abs=1e-4)
    assert y_style.std() == pytest.approx(y_content.std(), rel=1e-3)
    np.testing.assert_array_equal(np.asarray(p.content_rgb).shape, (21, 32, 3))
    assert np.ptp(np.asarray(p.content_rgb)[..., 0] - np.asarray(p.content_rgb)[..., 2]) > 0  # colours kept


def test_style_mode_takes_its_size_from_the_content_or_the_style(model, pictures):
    content, style = pictures
    p = prepare(model, None, [style], StyleConfig(mode="style", image_size=None, **LIGHT))
    assert p.shape == (40, 20, 3) and p.content is None and p.content_rgb is None
    assert all(float(jnp.abs(t).max()) == 0 for t in p.targets.content.values())  # zeros of the right shape
    assert p.targets.content["relu2_1"].shape[:2] == (20, 10)
    sized = prepare(model, content, [style], StyleConfig(mode="style", image_size=24, **LIGHT))
    assert sized.shape == (16, 24, 3) and sized.content is None  # the content's aspect, no content term
    assert float(sized.weights.content) == 0


def test_content_mode_needs_no_style(model, pictures):
    content, _ = pictures
    p = prepare(model, content, [], StyleConfig(mode="content", image_size=32, **LIGHT))
    assert p.styles == [] and p.targets.grams == {} and float(p.weights.style) == 0


@pytest.mark.parametrize("call,needle", [
    (lambda m, c, s: prepare(m, c, [], StyleConfig(**LIGHT)), "at least one style image"),
    (lambda m, c, s: prepare(m, None, [s], StyleConfig(**LIGHT)), "a content image is needed"),
    (lambda m, c, s: prepare(m, "content.jpg", [s], StyleConfig(**LIGHT)), "not the path 'content.jpg'"),
    (lambda m, c, s: prepare(m, c, [s[..., :2]], StyleConfig(**LIGHT)), "got shape (40, 20, 2)"),
    (lambda m, c, s: prepare(m, c, [s], StyleConfig(**LIGHT), style_masks=[np.ones((4, 4))]),
     "style masks need content masks"),
    (lambda m, c, s: prepare(m, c, [s], StyleConfig(mode="content", **LIGHT), content_masks=[np.ones((4, 4))]),
     "--mode content has no style"),
    (lambda m, c, s: prepare(m, c, [s], StyleConfig(**LIGHT), content_masks=[np.ones((4, 4))] * 2),
     "2 content mask(s) for 1 style image(s)"),
    (lambda m, c, s: prepare(m, c, [s], StyleConfig(**LIGHT), content_masks=[np.ones((4, 4))],
                             style_masks=[None, None]), "2 style mask(s) for 1 style image(s)"),
    (lambda m, c, s: prepare(m, c, [s], StyleConfig(**LIGHT), content_masks=["mask.png"]), "load_mask"),
    (lambda m, c, s: prepare(m, c, [s], StyleConfig(**LIGHT), content_masks=[pathlib.Path("mask.png")]),
     "content mask 1 must be an HW array in [0, 1], not the path PosixPath('mask.png') — read it with "
     "jaxstyle.io.images.load_mask"),
    (lambda m, c, s: prepare(m, c, [s], StyleConfig(**LIGHT), content_masks=[np.ones((2, 3, 4, 5))]),
     "must be an HW (or HWC) array"),
])
def test_refusals_say_what_to_do(model, pictures, call, needle):
    content, style = pictures
    with pytest.raises(UsageError) as e:
        call(model, content, style)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_masks_are_resized_averaged_and_clipped(model, pictures):
    content, style = pictures
    left = np.zeros((6, 9, 3), np.float32)
    left[:, :4] = 2.0  # out of range: clipped to 1
    p = prepare(model, content, [style], StyleConfig(image_size=32, **LIGHT), content_masks=[left],
                style_masks=[None])
    guides = p.targets.guides
    assert guides is not None and set(guides) == {"relu1_1", "relu2_1"}
    g = np.asarray(guides["relu1_1"])
    assert g.shape[0] == 1 and g.max() <= 1.0 and g[0, :, 0].min() > 0.9 and g[0, :, -1].max() < 0.1


def test_starting_images(pictures):
    content, style = pictures
    noise = np.asarray(init_image("noise", (8, 6, 3), seed=3))
    assert noise.shape == (8, 6, 3) and 0 <= noise.min() and noise.max() <= 1 and noise.std() > 0.2
    np.testing.assert_array_equal(noise, np.asarray(init_image("noise", (8, 6, 3), seed=3)))
    assert not np.array_equal(noise, np.asarray(init_image("noise", (8, 6, 3), seed=4)))
    np.testing.assert_array_equal(np.asarray(init_image("content", (24, 36, 3), content=content)), content)
    assert init_image("style", (10, 5, 3), style=style).shape == (10, 5, 3)
    given = init_image(np.full((4, 4, 3), 2.0), (8, 8, 3))  # an array: resized to the shape, clipped to [0, 1]
    assert given.shape == (8, 8, 3) and float(given.max()) == 1.0
    with pytest.raises(ConfigError, match="init content needs a content image"):
        init_image("content", (8, 8, 3))
    with pytest.raises(ConfigError, match="must be one of noise, content, style or an image, not 'zeros'"):
        init_image("zeros", (8, 8, 3))


def test_resize_is_the_identity_at_the_same_size_and_antialiased_otherwise():
    image = jnp.asarray(np.random.default_rng(0).random((9, 7, 3)), jnp.float32)
    assert resize(image, (9, 7)) is image
    checker = jnp.asarray(np.indices((16, 16)).sum(0) % 2, jnp.float32)[..., None].repeat(3, -1)
    small = np.asarray(resize(checker, (4, 4)))
    np.testing.assert_allclose(small, 0.5, atol=0.05)  # averaged, not sampled


def test_mask_refusals_word_for_word(model, pictures):
    content, style = pictures
    one = [np.ones((4, 4))]
    with pytest.raises(UsageError) as e:
        prepare(model, content, [style], StyleConfig(tile=16, **LIGHT), content_masks=one)
    assert str(e.value) == ("--tile does not handle spatial control (content masks): the guided Grams are not tiled; "
                            "drop --tile or the masks")
    with pytest.raises(UsageError) as e:
        prepare(model, content, [style], StyleConfig(**LIGHT), content_masks=one * 2)
    assert str(e.value) == ("2 content mask(s) for 1 style image(s) — give one content mask per style image (the "
                            "region of the output it styles)")


def test_a_style_mask_picks_the_region_of_its_style_image_at_any_size(model, pictures):
    content, style = pictures  # style is 40 x 20
    config = StyleConfig(image_size=32, **LIGHT)
    top = np.zeros((40, 20), np.float32)
    top[:20] = 1.0
    small_top = np.zeros((20, 10), np.float32)
    small_top[:10] = 1.0  # the same region drawn at half the size: resized to the style image

    def grams(style_masks):
        p = prepare(model, content, [style], config, content_masks=[np.ones((4, 4))], style_masks=style_masks)
        return np.asarray(p.targets.grams["relu1_1"])

    whole, masked, small = grams([None]), grams([top]), grams([small_top])
    # Up to the soft edge that upsampling the small mask draws, it picks the same half.
    assert np.abs(small - masked).max() < 0.25 * np.abs(whole - masked).max()
    assert np.abs(masked - whole).max() > 0.05 * np.abs(whole).max()
