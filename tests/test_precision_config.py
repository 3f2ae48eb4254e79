"""--precision wired through StyleConfig, the loss and the CLI: lower precisions track float32 end to end."""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstyle
from jaxstyle import gatys, objective
from jaxstyle import extract_features

CONFIG = gatys.StyleConfig(image_size=32, content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))


@pytest.fixture(scope="module")
def setup():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = jaxstyle.load_vgg("random")
    rng = np.random.default_rng(0)
    content, style = rng.random((32, 32, 3), np.float32), rng.random((40, 32, 3), np.float32)
    return model, content, style


def _loss_and_grad(setup, prec):
    model, content, style = setup
    config = dataclasses.replace(CONFIG, precision=prec)
    problem = gatys.prepare(model, content, [style], config)
    x = jax.random.uniform(jax.random.key(1), problem.shape)
    fun = jax.jit(lambda img: objective.total_loss(img, model, problem.targets, problem.weights, problem.spec))
    value, grad = jax.value_and_grad(fun)(x)
    return float(value), np.asarray(grad), grad.dtype


def test_lower_precisions_track_float32(setup):
    ref_value, ref_grad, dtype = _loss_and_grad(setup, "float32")
    assert dtype == jnp.float32
    for prec, tol in (("tf32", 1e-6), ("bfloat16", 3e-2)):  # tf32 is float32 on CPU; bf16 has 8 mantissa bits
        value, grad, dtype = _loss_and_grad(setup, prec)
        assert dtype == jnp.float32, prec  # the optimiser always sees float32 gradients
        assert abs(value - ref_value) <= tol * abs(ref_value), (prec, value, ref_value)
        rel = np.linalg.norm(grad - ref_grad) / np.linalg.norm(ref_grad)
        assert rel <= 5 * tol, (prec, rel)


def test_bfloat16_activations_float32_features(setup):
    model, content, _ = setup
    feats = extract_features(model, content, ("relu1_1",), "bfloat16")
    assert feats["relu1_1"].dtype == jnp.float32
    exact = jaxstyle.extract_features(model, content, ("relu1_1",))["relu1_1"]
    # Values are bf16-rounded (relative step 2^-8), not the float32 ones.
    assert not np.array_equal(np.asarray(feats["relu1_1"]), np.asarray(exact))
    np.testing.assert_allclose(feats["relu1_1"], exact, rtol=0, atol=0.02 * float(jnp.abs(exact).max()))


def test_config_and_cli_validate_precision(tmp_path):
    with pytest.raises(jaxstyle.UsageError, match="^precision must be one of"):
        gatys.StyleConfig(precision="fp8")
    from jaxstyle.cli import main

    with pytest.raises(SystemExit) as e:
        main(["stylize", "--precision", "fp8", "--content", "a.png", "--style", "b.png", "-o", str(tmp_path / "o.png")])
    assert e.value.code == 2
    assert not (tmp_path / "o.png").exists()
