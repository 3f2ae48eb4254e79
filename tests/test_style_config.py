"""StyleConfig on its own: every check at its boundary (the limit itself accepted, one step past it refused with
the field's name), and how the configured weights become the loss's numbers (layer weights 1/L, blend weights
normalised to sum 1, the mode zeroing a term), which a user sees as the balance of the result."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxstyle.errors import ConfigError
from jaxstyle.gatys import config as cfg
from jaxstyle.gatys.config import StyleConfig


def refused(field, **kw):
    with pytest.raises(ConfigError) as e:
        StyleConfig(**kw)
    assert e.value.field == field and str(e.value).startswith(field)
    return str(e.value)


@pytest.mark.parametrize("name", ["content_weight", "style_weight", "tv_weight", "learning_rate"])
def test_weights_and_rates_are_finite_and_not_negative(name):
    StyleConfig(**{name: 0})  # zero is allowed (it switches a term off)
    StyleConfig(**{name: 3})  # ints as well as floats
    for bad in (-1e-9, math.inf, math.nan, "1"):
        assert f"must be a finite number >= 0, not {bad!r}" in refused(name, **{name: bad})


def test_style_scale_must_be_positive():
    StyleConfig(style_scale=1e-3)
    assert "style_scale must be > 0, not 0" in refused("style_scale", style_scale=0)


def test_iteration_size_and_history_limits():
    StyleConfig(iterations=0)
    assert "iterations must be >= 0, not -1" in refused("iterations", iterations=-1)
    StyleConfig(image_size=16)
    StyleConfig(image_size=None)
    assert "image_size must be >= 16, not 15" in refused("image_size", image_size=15)
    StyleConfig(lbfgs_memory=1)
    assert "lbfgs_memory must be >= 1, not 0" in refused("lbfgs_memory", lbfgs_memory=0)


@pytest.mark.parametrize("name,good,bad", [
    ("init", "style", "zeros"), ("normalization", "neural-style", "l2"), ("tv_norm", "l1", "l3"),
    ("optimizer", "scipy-lbfgs", "sgd"), ("original_colors", "histogram", "lab"), ("color_match", "sym", "lab"),
    ("mode", "style", "both"), ("pooling", "avg", "min"), ("precision", "bfloat16", "float16"),
    ("mask_method", "inside", "outside")])
def test_choices(name, good, bad):
    assert getattr(StyleConfig(**{name: good}), name) == good
    assert f"{name} must be one of" in refused(name, **{name: bad})
    assert repr(bad) in refused(name, **{name: bad})


def test_layers_must_exist_in_vgg19_and_checked_again_for_the_real_network():
    refused("content_layers", content_layers=["relu6_1"])
    refused("style_layers", style_layers=["relu1_1", "conv9_9"])
    ok = StyleConfig(style_layers=("relu5_4",))  # in VGG19 ...
    with pytest.raises(ConfigError, match="^style_layers"):
        ok.check_against("vgg16", 1)  # ... not in VGG16
    StyleConfig(content_layers=("relu4_2",)).check_against("vgg16", 1)


def test_lists_become_tuples_and_configs_compare_and_hash_equal():
    a = StyleConfig(style_layers=["relu1_1", "relu2_1"], style_layer_weights=[1, 2], style_blend_weights=[1],
                    scales=[32, 64], scale_iterations=[3, 4])
    b = StyleConfig(style_layers=("relu1_1", "relu2_1"), style_layer_weights=(1, 2), style_blend_weights=(1,),
                    scales=(32, 64), scale_iterations=(3, 4))
    assert a == b and hash(a) == hash(b)
    assert all(isinstance(getattr(a, n), tuple) for n in ("style_layers", "style_layer_weights",
                                                          "style_blend_weights", "scales", "scale_iterations"))


def test_style_layer_weights_need_one_finite_non_negative_value_per_layer():
    layers = ("relu1_1", "relu2_1")
    StyleConfig(style_layers=layers, style_layer_weights=(0, 1))
    assert "has 1 values but there are 2 style layers" in refused("style_layer_weights", style_layers=layers,
                                                                   style_layer_weights=(1,))
    for bad in ((0, 0), (-1, 2), (1, math.inf), (math.nan, 1)):
        assert "must be finite, >= 0 and not all zero" in refused("style_layer_weights", style_layers=layers,
                                                                  style_layer_weights=bad)


def test_blend_weights_are_checked_against_the_number_of_style_images():
    c = StyleConfig(style_blend_weights=(1, 3))
    c.check_against("vgg19", 2)
    c.check_against("vgg19", None)  # not known yet: nothing to compare
    with pytest.raises(ConfigError, match="style_blend_weights has 2 values but there are 3 style images"):
        c.check_against("vgg19", 3)
    with pytest.raises(ConfigError, match="not all zero"):
        StyleConfig(style_blend_weights=(0, 0)).check_against("vgg19", 2)


def test_stage_checks():
    assert "average must be in [0, 1)" in refused("average", average=1.0)
    refused("average", average=-0.1)
    StyleConfig(average=0.999)
    assert "num_scales must be >= 1, not 0" in refused("num_scales", num_scales=0)
    assert "give one of them" in refused("num_scales", num_scales=2, scales=(32, 64))
    for bad in ((64, 32), (32, 32), (8, 32), ()):
        refused("scales", scales=bad)
    StyleConfig(scales=(16, 17))
    assert "needs 2 numbers >= 0" in refused("scale_iterations", num_scales=2, scale_iterations=(1,))
    refused("scale_iterations", scales=(32, 64), scale_iterations=(1, -1))
    StyleConfig(num_scales=2, scale_iterations=(0, 5))


def test_scales_set_the_image_size_and_the_iterations_add_up():
    c = StyleConfig(scales=(32, 64, 96), image_size=512, iterations=7)
    assert c.image_size == 96 and c.total_iterations == 21
    assert StyleConfig(num_scales=2, iterations=5).total_iterations == 10
    assert StyleConfig(scales=(32, 64), scale_iterations=(3, 4)).total_iterations == 7
    assert StyleConfig(iterations=9).total_iterations == 9


def test_stages_halve_down_to_the_smallest_size_the_network_takes():
    assert cfg.stage_sizes(StyleConfig(num_scales=3), 100) == (25, 50, 100)
    assert cfg.stage_sizes(StyleConfig(num_scales=4), 40) == (16, 16, 20, 40)
    assert cfg.stage_sizes(StyleConfig(scales=(20, 30)), 999) == (20, 30)
    stages = cfg.stage_configs(StyleConfig(num_scales=2, iterations=5, init="content"), 64)
    assert [(s.image_size, s.iterations, s.num_scales, s.scales) for s in stages] == [(32, 5, 1, None),
                                                                                    (64, 10, 1, None)]
    assert all(s.init == "content" for s in stages)
    stages = cfg.stage_configs(StyleConfig(scales=(32, 64), scale_iterations=(3, 4)), 64)
    assert [(s.image_size, s.iterations, s.scale_iterations) for s in stages] == [(32, 3, None), (64, 7, None)]
    single = StyleConfig()
    assert cfg.stage_configs(single, 64) == [single]


def test_layer_weights_default_to_one_over_l_or_one_with_neural_style_normalisation():
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    assert cfg.layer_weights(StyleConfig(style_layers=layers)) == (0.25,) * 4
    assert cfg.layer_weights(StyleConfig(style_layers=layers, normalization="neural-style")) == (1.0,) * 4
    assert cfg.layer_weights(StyleConfig(style_layers=layers, style_layer_weights=(4, 3, 2, 1))) == (4, 3, 2, 1)


def test_loss_weights_normalise_the_blend_to_sum_one_and_keep_the_layer_weights():
    w = cfg.loss_weights(StyleConfig(content_weight=2, style_weight=30, tv_weight=0.5, style_blend_weights=(3, 1),
                                     style_layers=("relu1_1", "relu2_1"), style_layer_weights=(2, 6)), 2)
    np.testing.assert_allclose(np.asarray(w.blend), [0.75, 0.25])
    np.testing.assert_allclose(np.asarray(w.style_layers), [2, 6])  # as given (not normalised)
    assert (float(w.content), float(w.style), float(w.tv)) == (2, 30, 0.5)
    assert all(np.asarray(leaf).dtype == np.float32 for leaf in w)
    np.testing.assert_allclose(np.asarray(cfg.loss_weights(StyleConfig(), 4).blend), [0.25] * 4)
    assert cfg.blend_weights(StyleConfig(), 3) == (1.0, 1.0, 1.0)


def test_the_mode_switches_off_the_other_term():
    content_only = cfg.loss_weights(StyleConfig(mode="content", content_weight=2, style_weight=5), 1)
    assert (float(content_only.content), float(content_only.style)) == (2, 0)
    style_only = cfg.loss_weights(StyleConfig(mode="style", content_weight=2, style_weight=5), 1)
    assert (float(style_only.content), float(style_only.style)) == (0, 5)


def test_loss_spec_carries_the_static_settings():
    spec = cfg.loss_spec(StyleConfig(content_layers=("relu3_1",), style_layers=("relu1_1",), normalization="paper",
                                     precision="bfloat16", tv_norm="l1"))
    assert spec == cfg.LossSpec(("relu3_1",), ("relu1_1",), "paper", "bfloat16", "l1")
