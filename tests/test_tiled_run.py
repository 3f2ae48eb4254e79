"""Tiled runs (StyleConfig(tile=...), jaxstyle stylize --tile): each tile dispatched on its own from the host
follows the untiled run, compiles to a program far smaller than the whole-image step, and is refused where it
cannot work (a line search, spatial control, a sweep)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxstyle import gatys, objective
from jaxstyle.errors import ConfigError, UsageError
from jaxstyle.gatys import memory
from jaxstyle.gatys import tiled as tiled_driver
from jaxstyle.gatys import run
from jaxstyle.gatys.config import loss_spec
from jaxstyle.gatys.run import _opt_key, _programs, _split, start_state
from jaxstyle.objective import targets, tiled

# Shallow layers (halo 7 px, stride 2), so a 48x64 image holds six 24-px tiles each well beyond the halo.
CONFIG = dict(image_size=None, style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_2",), tv_weight=0.5,
              init="content", lbfgs_memory=5)
# The tiled and untiled evaluations differ by float32 summation order only (tests/test_tiled.py: 1e-5 on the
# loss, 1e-4 on the gradient); over 4 optimiser steps the losses stay within LOSS_RTOL. A dropped halo or a
# missing tile moves the loss by more than 100x that (checked below).
LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-3


def _images(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(48, 64, 3)).astype(np.float32), rng.uniform(size=(32, 32, 3)).astype(np.float32)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs-nols"])
def test_tiled_run_follows_untiled_run(model, optimizer):
    content, style = _images()
    runs = {}
    for tile in (None, 24):
        config = gatys.StyleConfig(**CONFIG, optimizer=optimizer, iterations=4, tile=tile)
        runs[tile] = gatys.run_stylize(content, [style], model, config, chunk=1, host_loop=True)
    untiled, tiled_run = runs[None], runs[24]
    assert tiled_run.status == "done" and tiled_run.iterations == 4 and tiled_run.evaluations == 4
    want = np.array([h["total"] for h in untiled.history])
    got = np.array([h["total"] for h in tiled_run.history])
    assert want[-1] < want[0]  # the run moved
    np.testing.assert_allclose(got, want, rtol=LOSS_RTOL)
    assert np.abs(tiled_run.image - untiled.image).max() < 1e-3


def test_tiled_run_resumes_exactly_and_runs_coarse_to_fine(model):
    content, style = _images()
    config = lambda **kw: gatys.StyleConfig(**{**CONFIG, "tile": 24, **kw})
    whole = gatys.run_stylize(content, [style], model, config(iterations=4), chunk=2)
    half = gatys.run_stylize(content, [style], model, config(iterations=2), chunk=2)
    rest = gatys.run_stylize(content, [style], model, config(iterations=4), chunk=2, resume=half.state,
                             history=half.history)
    np.testing.assert_array_equal(rest.image, whole.image)
    stages = {tile: gatys.run_stylize(content, [style], model, config(image_size=64, scales=(32, 64), iterations=2,
                                                                      tile=tile), chunk=1) for tile in (None, 24)}
    assert stages[24].image.shape == (48, 64, 3)
    np.testing.assert_allclose([h["total"] for h in stages[24].history], [h["total"] for h in stages[None].history],
                               rtol=LOSS_RTOL)


def _evaluation(model, tile):
    content, style = _images(1)
    config = gatys.StyleConfig(**CONFIG)
    p = gatys.prepare(model, content, [style], config)
    x = jnp.asarray(_images(2)[0])
    whole = jax.jit(jax.value_and_grad(lambda im: objective.total_loss(im, model, p.targets, p.weights, p.spec)))
    return p, x, whole(x), tiled.plan(model, x.shape, p.targets, p.spec, tile)


def _close(got, want) -> bool:
    (v1, g1), (v0, g0) = got, want
    return (abs(float(v1) - float(v0)) <= LOSS_RTOL * abs(float(v0)) and
            float(jnp.linalg.norm(g1 - g0)) <= GRAD_RTOL * float(jnp.linalg.norm(g0)))


def test_host_dispatched_evaluation_is_exact_and_the_tolerance_catches_a_broken_tiling(model):
    p, x, want, plan = _evaluation(model, 24)
    parts = tiled_driver._parts()
    evaluate = lambda plan_: tiled.tiled_value_and_grad(x, model, p.targets, p.weights, plan_, parts)
    assert len(plan.tiles) == 6 and _close(evaluate(plan), want)
    terms = tiled.tiled_terms(x, model, p.targets, p.weights, plan, parts)
    np.testing.assert_allclose(float(terms["total"]), float(want[0]), rtol=LOSS_RTOL)
    assert not _close(evaluate(plan._replace(tiles=plan.tiles[:-1])), want)  # a missing tile
    assert not _close(evaluate(plan._replace(tiles=tuple((b, b) for b, _ in plan.tiles))), want)  # no halo


def test_tiled_targets_equal_the_whole_image_targets(model):
    content, style = _images()
    spec = loss_spec(gatys.StyleConfig(**CONFIG))
    styles = [jnp.asarray(style), jnp.asarray(content)]  # 2x2 and 2x3 tiles of 24 px
    want = (targets.content_targets(model, jnp.asarray(content), spec.content_layers),
            targets.style_targets(model, styles, spec.style_layers))
    got = tiled_driver.targets(model, jnp.asarray(content), styles, spec, 24)
    for w, g in zip(want, got):
        assert set(g) == set(w)
        for layer in w:
            assert g[layer].shape == w[layer].shape
            np.testing.assert_allclose(g[layer], w[layer], rtol=1e-5, atol=1e-5 * float(jnp.abs(w[layer]).max()))


def test_tile_program_compiles_far_smaller_than_the_whole_image_step(model):
    """The memory claim, in compiled memory: the largest tile's pull-back program holds a fraction of the
    temporaries of the whole-image step run_stylize runs untiled (64x64 image, 16-px tiles: windows of at most
    31x31, under a quarter of the image). Measured: 2.13 MB against 6.92 MB (0.31); the bound leaves room for
    XLA's fixed buffers, which a 31-px window does not shrink."""
    rng = np.random.default_rng(3)
    image = rng.uniform(size=(64, 64, 3)).astype(np.float32)
    config = gatys.StyleConfig(**CONFIG)
    p = gatys.prepare(model, image, [image], config)
    state = start_state(p, config, None, None)
    step = _programs(p.spec, _opt_key(config))[0]
    whole = step.lower(model, p.targets, p.weights, *_split(state)).compile().memory_analysis().temp_size_in_bytes
    plan = tiled.plan(model, p.shape, p.targets, p.spec, 16)
    parts = tiled_driver._parts()
    box, window = max(plan.tiles, key=lambda t: (t[1][1] - t[1][0]) * (t[1][3] - t[1][2]))
    d_grams = {l: jnp.zeros(p.targets.grams[l].shape[-2:]) for l in plan.style_layers}
    lowered = parts.pull.lower(model, state.x, p.targets, p.weights, d_grams, tiled._corner(box, window),
                               jnp.zeros_like(state.x), plan_=plan, **tiled._sizes(box, window))
    tile_temp = lowered.compile().memory_analysis().temp_size_in_bytes
    window_px = (window[1] - window[0]) * (window[3] - window[2])
    assert window_px / 64 ** 2 < 0.25
    assert tile_temp < 0.35 * whole, (tile_temp, whole)


def test_line_search_optimizers_and_masks_refuse_tiling(model):
    for name in ("lbfgs", "scipy-lbfgs"):
        with pytest.raises(ConfigError, match="lbfgs-nols or adam"):
            gatys.StyleConfig(tile=256, optimizer=name)
    with pytest.raises(ConfigError, match="tile must be >= 16"):
        gatys.StyleConfig(tile=8)
    content, style = _images()
    mask = np.ones(content.shape[:2], np.float32)
    with pytest.raises(UsageError, match="spatial control"):
        gatys.run_stylize(content, [style], model, gatys.StyleConfig(**CONFIG, tile=24, iterations=1),
                          content_masks=[mask])
    with pytest.raises(UsageError, match="--tile is for stylize"):
        gatys.stylize_many(content, [style], {"style_weight": [1.0, 2.0]}, model=model,
                           config=gatys.StyleConfig(**CONFIG, tile=24, iterations=1))


def test_estimate_with_tiles_is_lower_at_high_resolution():
    config = gatys.StyleConfig(image_size=2048, lbfgs_memory=10)
    whole = memory.estimate(config, (2048, 2048), "vgg16")
    tiles = memory.estimate(gatys.StyleConfig(image_size=2048, lbfgs_memory=10, tile=512), (2048, 2048), "vgg16")
    assert tiles.total < 0.35 * whole.total and tiles.evaluation < 0.15 * whole.evaluation  # 0.31 and 0.12
    assert "tiles of 512" in tiles.line()
    # Tiles as large as the image save nothing: the window is the image.
    same = memory.estimate(gatys.StyleConfig(image_size=256, tile=256), (256, 256), "vgg16")
    assert same.evaluation >= memory.estimate(gatys.StyleConfig(image_size=256), (256, 256), "vgg16").evaluation


def test_a_run_that_does_not_fit_is_told_what_tiles_would_need():
    config = gatys.StyleConfig(image_size=2048, lbfgs_memory=10)
    note = memory.tile_note(config, (2048, 2048), "vgg16")
    tiled_mib = int(note.removeprefix("--tile 512 would need ").removesuffix(" MiB").replace(",", ""))
    # 3,019 against 9,596 MiB (0.31): tiles bound the evaluation, not the L-BFGS history, images and process
    assert tiled_mib < 0.35 * memory.estimate(config, (2048, 2048), "vgg16").total / memory.MiB
    assert memory.tile_note(gatys.StyleConfig(image_size=2048, optimizer="lbfgs"), (2048, 2048), "vgg16") is None
    assert memory.tile_note(gatys.StyleConfig(image_size=256), (256, 256), "vgg16") is None  # the window is the image


def _cli(tmp_path, *extra):
    from jaxstyle.cli import main

    for name, array in zip(("c.png", "s.png"), _images()):
        Image.fromarray((array * 255).astype(np.uint8)).save(tmp_path / name)
    args = ["stylize", "--content", str(tmp_path / "c.png"), "--style", str(tmp_path / "s.png"), "--weights",
            "random", "--image-size", "64", "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_2",
            "--no-target-cache", "-q", "-o", str(tmp_path / "o.png"), *extra]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(args)


def test_cli_tile_runs_and_refusals_are_one_line(tmp_path, capsys):
    assert _cli(tmp_path, "--tile", "24", "--iterations", "2") == 0
    assert (tmp_path / "o.png").exists()
    capsys.readouterr()
    assert _cli(tmp_path, "--tile", "24", "--optimizer", "lbfgs") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --tile needs an optimizer that evaluates the loss once per step (lbfgs-nols or adam); "
                   "'lbfgs' has a line search"]
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(tmp_path / "m.png")
    assert _cli(tmp_path, "--tile", "24", "--content-mask", str(tmp_path / "m.png")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "spatial control" in err[0]
