"""jaxstyle.precision: float32 is exactly the default path; bfloat16 runs the conv stack in bfloat16 but hands
float32 features (and a float32 image gradient) to the losses; unknown names are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import gram_matrix, load_vgg

from jaxstyle.nets import precision
from jaxstyle.nets.model import extract_features

LAYERS = ("relu1_1", "relu2_1")


@pytest.fixture(scope="module")
def model():
    with pytest.warns(UserWarning):
        return load_vgg("random")


@pytest.fixture(scope="module")
def image():
    return jax.random.uniform(jax.random.key(3), (24, 24, 3), jnp.float32)


def test_float32_is_the_default_path(model, image):
    ref = extract_features(model, image, LAYERS)
    got = precision.extract_features(model, image, LAYERS, "float32")
    for l in LAYERS:
        np.testing.assert_array_equal(np.asarray(got[l]), np.asarray(ref[l]))


def test_bfloat16_computes_in_bfloat16_and_returns_float32(model, image):
    jaxpr = str(jax.make_jaxpr(lambda x: precision.extract_features(model, x, LAYERS, "bfloat16"))(image))
    assert "conv_general_dilated" in jaxpr and "bf16[1,24,24,64]" in jaxpr  # activations really are bf16
    ref = extract_features(model, image, LAYERS)
    got = precision.extract_features(model, image, LAYERS, "bfloat16")
    for l in LAYERS:
        assert got[l].dtype == jnp.float32
        err = np.linalg.norm(np.asarray(got[l]) - np.asarray(ref[l])) / np.linalg.norm(np.asarray(ref[l]))
        assert 1e-4 < err < 3e-2  # bf16 has 8 significant bits: close, but visibly not float32
    grad = jax.grad(lambda x: jnp.sum(gram_matrix(precision.extract_features(model, x, LAYERS, "bfloat16")
                                                  ["relu2_1"])))(image)
    assert grad.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(grad)))


def test_tf32_is_float32_on_cpu(model, image):
    ref = extract_features(model, image, LAYERS)
    got = precision.extract_features(model, image, LAYERS, "tf32")
    if jax.devices()[0].platform == "cpu":  # no TF32 units: identical results
        for l in LAYERS:
            np.testing.assert_allclose(np.asarray(got[l]), np.asarray(ref[l]), rtol=1e-6, atol=1e-6)


def test_unknown_precision_is_refused(model, image):
    with pytest.raises(ValueError, match="float32, tf32, bfloat16"):
        precision.extract_features(model, image, LAYERS, "float16")
