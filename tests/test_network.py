"""The network layer on its own (jaxstyle.nets.vgg, model, precision): sizes, preprocessing of every preset on
known pixels, layer checks, pooling, and what load_vgg / extract_features accept and refuse."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstyle
from jaxstyle.errors import UsageError
from jaxstyle.nets import precision, vgg
from jaxstyle.nets.model import extract_features, load_vgg


@pytest.mark.parametrize("hw,long_side,expected", [
    ((300, 400), 200, (150, 200)), ((400, 300), 200, (200, 150)), ((100, 100), 64, (64, 64)),
    ((10, 1000), 100, (16, 100)),  # the short side never below 16
    ((1000, 10), 100, (100, 16)),
    ((3, 5), 50, (30, 50)),  # upscaling
    ((333, 1000), 100, (33, 100)),  # rounded, not truncated (33.3)
    ((336, 1000), 100, (34, 100)),  # 33.6 -> 34
])
def test_long_side_shape(hw, long_side, expected):
    assert vgg.long_side_shape(hw, long_side) == expected


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown architecture 'vgg11'; expected one of \['vgg16', 'vgg19'\]"):
        vgg.conv_names("vgg11")
    with pytest.raises(UsageError, match="unknown architecture 'vgg11'; expected one of vgg19, vgg16|vgg16, vgg19"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jaxstyle.RandomWeightsWarning)
            load_vgg("random", arch="vgg11")


RED = jnp.asarray([1.0, 0.0, 0.0])
GREY = jnp.asarray([0.5, 0.5, 0.5])


@pytest.mark.parametrize("preset,red,grey", [
    # caffe: BGR order, x 255, minus the BGR mean
    ("caffe", [-103.939, -116.779, 255 - 123.68], [127.5 - 103.939, 127.5 - 116.779, 127.5 - 123.68]),
    # torchvision: RGB, (x - mean) / std
    ("torchvision", [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225],
     [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]),
    ("gatys", [-0.40760392 * 255, -0.45795686 * 255, 255 - 0.48501961 * 255],
     [127.5 - 0.40760392 * 255, 127.5 - 0.45795686 * 255, 127.5 - 0.48501961 * 255]),
    ("rgb01", [1.0, 0.0, 0.0], [0.5, 0.5, 0.5]),
])
def test_every_preset_on_known_pixels(preset, red, grey):
    p = vgg.PRESETS[preset]
    np.testing.assert_allclose(np.asarray(p(RED)), red, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(p(GREY)), grey, rtol=1e-5, atol=1e-4)


def test_matconvnet_preset_is_rgb_0_255_minus_the_stored_mean():
    p = vgg.matconvnet_preset(np.array([120.0, 115.5, 100.25]))
    assert (p.name, p.bgr, p.scale, p.std) == ("matconvnet", False, 255.0, (1.0, 1.0, 1.0))
    assert p.mean == (120.0, 115.5, 100.25) and all(isinstance(m, float) for m in p.mean)
    np.testing.assert_allclose(np.asarray(p(RED)), [135.0, -115.5, -100.25])


def test_preprocessing_keeps_bfloat16():
    out = vgg.PRESETS["torchvision"](jnp.ones((2, 2, 3), jnp.bfloat16))
    assert out.dtype == jnp.bfloat16


def test_validate_layers():
    assert vgg.validate_layers("vgg16", ["relu1_1", "pool5"]) == ("relu1_1", "pool5")
    with pytest.raises(ValueError, match="unknown vgg16 layer.s. relu5_4, conv6_1; valid layers: conv1_1 relu1_1"):
        vgg.validate_layers("vgg16", ["relu1_1", "relu5_4", "conv6_1"])
    with pytest.raises(ValueError, match="no layers requested"):
        vgg.validate_layers("vgg19", [])


def test_max_pool_takes_the_max_of_each_2x2_window_and_drops_odd_edges():
    x = jnp.arange(5 * 7, dtype=jnp.float32).reshape(1, 5, 7, 1)
    out = np.asarray(vgg.max_pool_2x2(x))[0, ..., 0]
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, [[8, 10, 12], [22, 24, 26]])
    neg = -np.asarray(vgg.max_pool_2x2(-x))[0, ..., 0]  # the min, through the same code
    np.testing.assert_array_equal(neg, [[0, 2, 4], [14, 16, 18]])


def test_max_pool_gradient_goes_to_each_windows_maximum_and_splits_ties():
    """max_pool_2x2 has its own gradient (the argmax recomputed from input and output, for memory:
    docs/highres.md): each window's gradient goes to its maximum, split equally among tied maxima (reduce_max's
    rule), nothing to the dropped odd edge; equal to autodiff of the plain reshape-and-max, vmapped too."""
    x = jnp.array([[1.0, 5.0, 2.0, 2.0, 9.0],
                   [3.0, 4.0, 2.0, 2.0, 9.0],
                   [0.0, 0.0, 7.0, 1.0, 9.0]]).reshape(1, 3, 5, 1)
    weight = jnp.array([[10.0, 4.0]]).reshape(1, 1, 2, 1)
    grad = jax.grad(lambda x: jnp.sum(vgg.max_pool_2x2(x) * weight))(x)
    np.testing.assert_array_equal(np.asarray(grad)[0, ..., 0], [[0, 10, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]])

    def plain(x):
        n, h, w, c = x.shape
        return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.integers(0, 3, size=(2, 7, 9, 3)), jnp.float32)  # many ties
    weight = jnp.asarray(rng.normal(size=(2, 3, 4, 3)), jnp.float32)
    ours = jax.grad(lambda x: jnp.sum(vgg.max_pool_2x2(x) * weight))(x)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(jax.grad(lambda x: jnp.sum(plain(x) * weight))(x)))
    batched = jax.vmap(jax.grad(lambda x, w: jnp.sum(vgg.max_pool_2x2(x[None]) * w)))(x, weight)
    np.testing.assert_array_equal(np.asarray(batched), np.asarray(ours))
    assert jax.grad(lambda x: jnp.sum(vgg.max_pool_2x2(x)))(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


@pytest.fixture(scope="module")
def vgg16():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxstyle.RandomWeightsWarning)
        return load_vgg("random", arch="vgg16")


def test_random_model_properties_and_pooling(vgg16):
    assert (vgg16.arch, vgg16.pooling, vgg16.source, vgg16.preprocess.name) == ("vgg16", "max", "random",
                                                                               "torchvision")
    assert vgg16.layer_names() == vgg.layer_names("vgg16") and "relu5_3" in vgg16.layer_names()
    avg = vgg16.with_pooling("avg")
    assert avg.pooling == "avg" and avg.params is vgg16.params and vgg16.pooling == "max"
    assert vgg16.with_pooling("max") is vgg16
    with pytest.raises(UsageError, match="pooling must be one of max, avg, not 'min'"):
        load_vgg("random", pooling="min")
    with pytest.warns(jaxstyle.RandomWeightsWarning):
        assert load_vgg("random").arch == "vgg19"
    with pytest.warns(jaxstyle.RandomWeightsWarning):
        assert load_vgg("random", pooling="avg", arch="vgg16").pooling == "avg"


def test_random_weights_are_he_initialised_float32_and_the_same_everywhere():
    # He et al. 2015 (normal, fan-in): std sqrt(2 / fan_in), zero biases; numpy's PCG64 in float32, so the same
    # random network (and the same smoke-run images) on every machine and version.
    from jaxstyle.nets import weights

    params = weights.random_params("vgg16")["params"]
    for name, p in params.items():
        fan_in = np.prod(p["kernel"].shape[:3])
        assert p["kernel"].dtype == np.float32 and not p["bias"].any(), name
        assert np.std(p["kernel"]) == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.05), name
    np.testing.assert_array_equal(params["conv1_1"]["kernel"][0, 0, 0, :3],
                                  np.float32([0.3041782, -0.3775276, -0.11609809]))


def test_avg_pooling_changes_pool_features_only_after_the_first_pool(vgg16):
    image = jax.random.uniform(jax.random.key(0), (16, 16, 3))
    a = extract_features(vgg16, image, ["relu1_2", "pool1"])
    b = extract_features(vgg16.with_pooling("avg"), image, ["relu1_2", "pool1"])
    np.testing.assert_array_equal(np.asarray(a["relu1_2"]), np.asarray(b["relu1_2"]))
    pooled = np.asarray(a["relu1_2"]).reshape(8, 2, 8, 2, -1)
    np.testing.assert_allclose(np.asarray(a["pool1"]), pooled.max(axis=(1, 3)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(b["pool1"]), pooled.mean(axis=(1, 3)), rtol=1e-5)


def test_extract_features_shapes_batches_and_refusals(vgg16):
    images = jax.random.uniform(jax.random.key(1), (2, 16, 20, 3))
    batch = extract_features(vgg16, images, ["relu1_1", "relu2_1", "relu3_1"])
    assert {k: v.shape for k, v in batch.items()} == {"relu1_1": (2, 16, 20, 64), "relu2_1": (2, 8, 10, 128),
                                                       "relu3_1": (2, 4, 5, 256)}
    one = extract_features(vgg16, images[1], ["relu2_1"])
    assert one["relu2_1"].shape == (8, 10, 128) and one["relu2_1"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(one["relu2_1"]), np.asarray(batch["relu2_1"][1]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="NHWC with 3 channels .or one HWC image., got shape .2, 16, 16, 4."):
        extract_features(vgg16, jnp.zeros((2, 16, 16, 4)), ["relu1_1"])
    with pytest.raises(ValueError, match="NHWC"):
        extract_features(vgg16, jnp.zeros((16, 16)), ["relu1_1"])
    with pytest.raises(ValueError, match="at least 16x16, got .15, 40."):
        extract_features(vgg16, jnp.zeros((15, 40, 3)), ["relu1_1"])
    extract_features(vgg16, jnp.zeros((16, 16, 3)), ["relu1_1"])  # 16 is enough
    with pytest.raises(ValueError, match="unknown vgg16 layer"):
        extract_features(vgg16, jnp.zeros((16, 16, 3)), ["relu5_4"])


def test_no_gradient_flows_into_the_weights(vgg16):
    image = jax.random.uniform(jax.random.key(2), (16, 16, 3))
    grads = jax.grad(lambda m: jnp.sum(extract_features(m, image, ["relu1_1"])["relu1_1"]))(vgg16)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name,dtype,conv", [("float32", jnp.float32, "highest"), ("tf32", jnp.float32,
                                                                                  "tensorfloat32"),
                                             ("bfloat16", jnp.bfloat16, "bfloat16")])
def test_precision_policy(name, dtype, conv):
    assert precision.check(name) == name and precision.compute_dtype(name) == dtype
    assert precision.CONV_PRECISION[name] == conv


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="precision must be one of float32, tf32, bfloat16, not 'fp8'"):
        precision.compute_dtype("fp8")
