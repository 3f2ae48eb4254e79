"""Precision of the conv stack (jaxstyle.nets.precision, applied by extract_features): asserted on the lowered
program, so the tests hold on any backend. float32 lowers every convolution (forward and backward) at HIGHEST
precision, tf32 at HIGH (TensorFloat-32 on NVIDIA GPUs), bfloat16 at DEFAULT on bfloat16 operands; in every mode
the Gram matrix is a float32 dot at HIGHEST and the features and the image gradient are float32."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import extract_features, gram_matrix, load_vgg

LAYERS = ("relu1_1", "relu2_1")
CONV = re.compile(r"stablehlo\.convolution\((.*)")
DOT = re.compile(r"stablehlo\.dot_general\b(.*)")
# Convolutions print ``precision_config = [#stablehlo<precision X>, ...]``, dots ``precision = [X, X]``.
PRECISION = re.compile(r"precision(?:_config)? = \[(?:#stablehlo<precision )?(\w+)>?, (?:#stablehlo<precision )?(\w+)>?\]")


@pytest.fixture(scope="module")
def model():
    with pytest.warns(UserWarning):
        return load_vgg("random")


@pytest.fixture(scope="module")
def image():
    return jax.random.uniform(jax.random.key(3), (24, 24, 3), jnp.float32)


def lowered(model, image, precision) -> str:
    """The lowered loss-and-gradient program of a Gram-based loss at ``precision``."""
    def loss(x):
        return jnp.sum(gram_matrix(extract_features(model, x, LAYERS, precision)["relu2_1"]))

    return jax.jit(jax.value_and_grad(loss)).lower(image).as_text()


def ops(text: str, pattern: re.Pattern) -> list[tuple[str, str]]:
    """(precision, operand types) of every op matching ``pattern``."""
    out = []
    for line in text.splitlines():
        m = pattern.search(line)
        if m:
            p = PRECISION.search(line)
            assert p and p.group(1) == p.group(2), line  # both operands at the same precision
            out.append((p.group(1), line.rsplit(":", 1)[-1]))
    return out


@pytest.mark.parametrize("precision, conv_precision, dtype", [
    ("float32", "HIGHEST", "f32"), ("tf32", "HIGH", "f32"), ("bfloat16", "DEFAULT", "bf16")])
def test_convolutions_lower_at_the_requested_precision(model, image, precision, conv_precision, dtype):
    text = lowered(model, image, precision)
    convs = ops(text, CONV)
    # relu1_1 and relu2_1 need 3 convolutions forward; the backward pass adds input-gradient convolutions.
    assert len(convs) >= 5
    assert {p for p, _ in convs} == {conv_precision}
    assert all(f"x{dtype}>" in types and "f32>" not in types.replace(f"x{dtype}>", "") for _, types in convs), convs
    # The Gram (and its gradient) stay float32 dots at HIGHEST whatever the conv precision.
    dots = ops(text, DOT)
    assert dots and {p for p, _ in dots} == {"HIGHEST"}
    assert all("bf16" not in types for _, types in dots), dots


def test_features_and_gradient_are_float32_in_every_mode(model, image):
    ref = extract_features(model, image, LAYERS)
    for precision in ("float32", "tf32", "bfloat16"):
        got = extract_features(model, image, LAYERS, precision)
        assert all(got[l].dtype == jnp.float32 for l in LAYERS)
        grad = jax.grad(lambda x: jnp.sum(gram_matrix(extract_features(model, x, LAYERS, precision)["relu2_1"])))(
            image)
        assert grad.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(grad)))
        err = max(np.linalg.norm(np.asarray(got[l]) - np.asarray(ref[l])) / np.linalg.norm(np.asarray(ref[l]))
                  for l in LAYERS)
        if precision == "bfloat16":
            assert 1e-4 < err < 3e-2  # bf16 has 8 significant bits: close, but visibly not float32
        elif jax.default_backend() == "cpu":
            assert err == 0.0  # float32 is the default; no TF32 units on a CPU


def test_unknown_precision_is_refused(model, image):
    with pytest.raises(ValueError, match="float32, tf32, bfloat16"):
        extract_features(model, image, LAYERS, "float16")
