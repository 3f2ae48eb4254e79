"""Rematerialisation (jaxstyle.nets.remat, StyleConfig.remat, --remat): the same features and gradients, lower
compiled peak memory, the recomputation really in the program, and every driver (single run, sweep, tiles) and
the CLI able to use it.

Tolerance of "the same gradient": exact for extract_features under one jit (the recomputation runs the same
operations on the same numbers; measured max difference 0.0), and 1e-5 absolute on images in [0, 1] for short
whole runs (4 iterations, average pooling), whose programs are compiled with different XLA CPU fusions (remat
turns YNNPACK fusions off: convolutions that round differently; on real weights the gradients differ by 7.5e-5
relative, and long runs drift apart as under any rounding change, docs/highres.md)."""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxstyle import gatys
from jaxstyle.cli import main
from jaxstyle.gatys import memory
from jaxstyle.gatys import tiled as tiled_driver
from jaxstyle.gatys.config import loss_spec
from jaxstyle.gatys.run import _opt_key, _programs, _split, run_stylize, start_state
from jaxstyle.gatys.sweep import stylize_many
from jaxstyle.nets import remat, vgg
from jaxstyle.nets.model import extract_features
from jaxstyle.objective import perceptual, tiled

DEFAULT_LAYERS = gatys.StyleConfig().style_layers + gatys.StyleConfig().content_layers
LAYER_SETS = [DEFAULT_LAYERS, ("relu3_1",), ("pool2", "relu2_2"), ("conv1_1",), ("relu1_2", "pool4")]


def _image(seed, shape=(40, 48, 3)):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=shape).astype(np.float32))


@pytest.mark.parametrize("layers", LAYER_SETS)
def test_features_and_gradients_are_exactly_those_of_the_plain_pass(model, layers):
    x = _image(0)
    plain, again = extract_features(model, x, layers), extract_features(model, x, layers, remat=True)
    assert sorted(plain) == sorted(again)
    for name in plain:
        np.testing.assert_array_equal(plain[name], again[name])

    def loss(image, r):  # every feature contributes, each with its own weighting, so every block's vjp matters
        feats = extract_features(model, image, layers, remat=r)
        return sum((i + 1) * jnp.sum(jnp.sin(feats[n])) for i, n in enumerate(sorted(feats)))

    g0, g1 = (jax.jit(jax.grad(loss), static_argnums=1)(x, r) for r in (False, True))
    assert float(jnp.abs(g0).max()) > 0
    np.testing.assert_array_equal(g0, g1)


def test_a_block_runs_from_the_previous_pooling_and_refuses_earlier_layers(model):
    x = _image(1)
    whole = extract_features(model, x, ("pool2", "relu3_1", "relu3_4"))
    params = jax.lax.stop_gradient(model.params)
    part = model.module.apply(params, whole["pool2"][None], layers=("relu3_1", "relu3_4"), first_block=3)
    np.testing.assert_array_equal(part["relu3_1"][0], whole["relu3_1"])
    np.testing.assert_array_equal(part["relu3_4"][0], whole["relu3_4"])
    with pytest.raises(ValueError, match="layers before block 3 requested from block 3 on"):
        model.module.apply(params, whole["pool2"][None], layers=("relu2_2", "relu3_1"), first_block=3)
    assert [vgg.block_of(n) for n in ("conv1_2", "relu3_4", "pool5")] == [1, 3, 5]


def test_recomputation_waits_for_the_cotangent_and_runs_fn_again():
    """What jax.checkpoint does not manage on XLA CPU: the compiled gradient holds the forward ops twice."""
    calls = []

    def fn(x):
        calls.append(1)
        return {"y": jnp.sin(x) * 3.0}

    g_plain = jax.grad(lambda x: jnp.sum(fn(x)["y"] ** 2))(jnp.arange(4.0))
    calls.clear()
    g = jax.grad(lambda x: jnp.sum(remat.recompute_in_backward(fn)(x)["y"] ** 2))(jnp.arange(4.0))
    assert len(calls) == 2  # traced once forward, once in the backward pass
    np.testing.assert_array_equal(g, g_plain)
    # An infinite first cotangent element does not turn the recomputation's input into NaN.
    g_inf = jax.grad(lambda x: remat.recompute_in_backward(fn)(x)["y"][0] * jnp.inf + 0.0)(jnp.arange(1.0, 4.0))
    assert not np.isnan(np.asarray(g_inf)[1:]).any()


CONFIG = gatys.StyleConfig(image_size=None, lbfgs_memory=5)


def _step(model, side, config):
    content = np.random.default_rng(0).uniform(size=(side, side, 3)).astype(np.float32)
    problem = gatys.prepare(model, content, [content], config)
    state = start_state(problem, config, None, None)
    return _programs(problem.spec, _opt_key(config))[0].lower(
        model, problem.targets, problem.weights, *_split(state)).compile()


def test_the_rematerialised_step_holds_fewer_bytes_per_pixel_and_recomputes(model):
    """Issue 13's test: lower compiled peak memory (compiled.memory_analysis(), not wall time). Measured between
    96² and 128², random VGG19, default layers: 686 B/px against 1834 (benchmarks/step_memory.py --remat)."""
    slopes, convolutions = {}, {}
    for r in (False, True):
        config = dataclasses.replace(CONFIG, remat=r)
        compiled = [_step(model, side, config) for side in (96, 128)]
        temps = [c.memory_analysis().temp_size_in_bytes for c in compiled]
        slopes[r] = (temps[1] - temps[0]) / (128 ** 2 - 96 ** 2)
        convolutions[r] = len(re.findall(r"= f32\[[^\]]*\]\{[^}]*\} convolution\(", compiled[1].as_text()))
    assert slopes[True] <= 0.5 * slopes[False], slopes
    # 13 convs up to relu5_1, 13 input gradients; rematerialised, the blocks' forward convs again (12: the
    # last block's relu5_1 needs no recomputed conv). Merged away, as jax.checkpoint's are, the count would be 26.
    assert convolutions[False] == 26 and convolutions[True] >= 26 + 12, convolutions


@pytest.mark.parametrize("side", [128, 256])
def test_estimate_within_tolerance_of_the_rematerialised_step(model, side):
    """The estimate's evaluation and kernel parts against the compiled temporaries: measured +9 % at 256 px and
    +6 % at 128 px (the VGG16 forward slope is used for both networks: it errs high)."""
    config = dataclasses.replace(CONFIG, remat=True)
    temp = _step(model, side, config).memory_analysis().temp_size_in_bytes
    est = memory.estimate(config, (side, side), model.arch, host=False)
    assert temp <= est.evaluation + est.kernels <= 1.15 * temp, (temp, est)
    assert est.evaluation + est.kernels < sum(memory.estimate(CONFIG, (side, side), model.arch, host=False)[1:3])


def test_a_run_and_a_sweep_give_the_plain_results(model):
    content, style = np.asarray(_image(2)), np.asarray(_image(3, (36, 44, 3)))
    base = gatys.StyleConfig(image_size=32, iterations=4, content_layers=("relu2_2",),
                             style_layers=("relu1_1", "relu2_1", "relu3_1"), pooling="avg")
    plain = run_stylize(content, [style], model, base).image
    again = run_stylize(content, [style], model, dataclasses.replace(base, remat=True)).image
    np.testing.assert_allclose(again, plain, rtol=0, atol=1e-5)
    settings = {"style_weight": [10.0, 100.0]}
    swept = [stylize_many(content, [style], settings, model=model, config=dataclasses.replace(base, remat=r),
                          chunk=4).images for r in (False, True)]
    np.testing.assert_allclose(swept[1], swept[0], rtol=0, atol=1e-5)
    assert np.abs(swept[0][0] - swept[0][1]).max() > 1e-3  # the two runs differ: the sweep really ran both


def test_a_tiled_evaluation_rematerialises_each_tile(model):
    config = gatys.StyleConfig(image_size=48, content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1"))
    p = gatys.prepare(model, np.asarray(_image(4)), [np.asarray(_image(5))], config)
    x = _image(6, p.shape)
    plan = tiled.plan(model, x.shape, p.targets, p.spec, 24)
    want = tiled.tiled_value_and_grad(x, model, p.targets, p.weights, plan, tiled_driver._parts())
    spec = p.spec._replace(remat=True)
    plan_r = tiled.plan(model, x.shape, p.targets, spec, 24)
    got = tiled.tiled_value_and_grad(x, model, p.targets, p.weights, plan_r, tiled_driver._parts(True))
    np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-5 * float(jnp.abs(want[1]).max()))
    assert loss_spec(dataclasses.replace(config, remat=True)).remat and not perceptual.LossSpec((), ()).remat


def test_compiler_options_only_where_they_help():
    assert remat.compiler_options(False) == {}
    expected = {"xla_cpu_experimental_ynn_fusion_type": ""} if jax.default_backend() == "cpu" else {}
    assert remat.compiler_options(True) == expected


@pytest.fixture
def pictures(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("c", "s"):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{name}.png")
    return tmp_path


def _stylize(d, *extra):
    return ["stylize", "--content", str(d / "c.png"), "--style", str(d / "s.png"), "--weights", "random",
            "-o", str(d / "o.png"), *extra]


def _estimate_mib(text):
    return int(re.search(r"([\d,]+) MiB peak", text).group(1).replace(",", ""))


def test_cli_remat_flag_dry_run_and_bad_value(pictures, capsys):
    assert main(_stylize(pictures, "--image-size", "1024", "--dry-run")) == 0
    plain = _estimate_mib(capsys.readouterr().out)
    assert main(_stylize(pictures, "--image-size", "1024", "--dry-run", "--remat")) == 0
    assert _estimate_mib(capsys.readouterr().out) < plain - 500  # 1024² at ~700-1000 B/px less: > 0.7 GiB
    assert main(_stylize(pictures, "--image-size", "1024", "--dry-run", "--remat", "no")) == 0
    assert _estimate_mib(capsys.readouterr().out) == plain
    with pytest.raises(SystemExit) as e:
        main(_stylize(pictures, "--remat", "maybe"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --remat: expected yes or no, got 'maybe'" in err
    assert len(err.strip().splitlines()) == 1
    assert not (pictures / "o.png").exists()


def test_an_impossible_request_names_remat(pictures, capsys, monkeypatch):
    from jaxstyle.cli import stylize as stylize_cli

    need = memory.estimate(gatys.StyleConfig(image_size=2048), (40, 48), "vgg19")
    monkeypatch.setattr(stylize_cli, "available_memory", lambda: (need.total - 1, "available host memory"))
    assert main(_stylize(pictures, "--image-size", "2048", "--optimizer", "lbfgs")) != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "; or --remat would need " in errors[0], errors
    assert not (pictures / "o.png").exists()
