"""stylize_many: K vmapped runs equal K single runs; targets once; evaluation counts; the sweep CLI.

Tiny problems (32 px, VGG truncated at relu3_1, 5 iterations) so the tests share one compiled vmapped program
(K=4) and one compiled single-run program per optimiser. Tolerance for "equal": max abs pixel difference
<= 1e-4 (images in [0, 1]; one 8-bit level is 3.9e-3). Not bitwise: the batched convolutions and reductions of
the vmapped program may sum in another order than the single run's (the first iterations differ by ~6e-8).
Measured with these settings on CPU: <= 9e-7 after 8 iterations. Unit-step L-BFGS can amplify such rounding
when a curvature pair is ill-conditioned, which is why the settings keep style weights >= 10.

The equality tests use average pooling. Max pooling's gradient is discontinuous: where two inputs of a pooling
window are nearly tied, a 6e-8 change of the image (one rounding difference) moves the gradient to the other
input. Measured on run 0 below with max pooling: the same single-run gradient function evaluated at the
vmapped and the single run's first iterates (6e-8 apart) differs by 9e-4, which the next L-BFGS steps turn into
a 2e-3 image difference; with average pooling the two gradients differ by 4e-8. Whether a trajectory meets
such a tie is luck, not a property of vmap, so the comparison isolates what is tested: the vmapped program
computes the same iterations as the single one.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import jaxstyle
from jaxstyle import gatys, load_vgg
from jaxstyle.io import images
from jaxstyle.cli import main
from jaxstyle.gatys.run import run_stylize
from jaxstyle.optim import loop
from jaxstyle.gatys.sweep import DEFAULT_CONFIG, count_evaluations, normalize_settings, run_configs, stylize_many

sweep_mod = importlib.import_module("jaxstyle.gatys.sweep")

TOL = 1e-4
ITERATIONS = 5
LAYERS = dict(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1", "relu3_1"), pooling="avg")
CONFIG = dataclasses.replace(DEFAULT_CONFIG, image_size=32, iterations=ITERATIONS, **LAYERS)
# K = 4 runs varying every sweepable setting at once.
SETTINGS = {
    "content_weight": [1.0, 2.0, 1.0, 0.5],
    "style_weight": [10.0, 100.0, 30.0, 10.0],
    "tv_weight": [0.0, 1e-3, 0.0, 1e-2],
    "style_layer_weights": [[1, 1, 1], [1, 0, 0], [0.2, 0.3, 0.5], [0, 0, 1]],
    "style_blend_weights": [[1, 1], [1, 0], [0, 1], [3, 1]],
    "seed": [0, 1, 2, 3],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep_inputs")
    rng = np.random.default_rng(0)
    paths = {}
    for name, shape in (("content", (40, 48, 3)), ("style_a", (40, 40, 3)), ("style_b", (36, 44, 3))):
        paths[name] = str(d / f"{name}.png")
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(paths[name])
    return paths


@pytest.fixture(scope="module")
def inputs(files):
    return (images.load_image(files["content"]),
            [images.load_image(files["style_a"], role="style"), images.load_image(files["style_b"], role="style")])


@pytest.fixture(scope="module")
def swept(inputs, model):
    """One vmapped run, with its calls of prepare (which computes the targets) recorded."""
    calls = []
    original = sweep_mod.prepare

    def recording(*args, **kwargs):
        problem = original(*args, **kwargs)
        calls.append(problem)
        return problem

    sweep_mod.prepare = recording
    try:
        result = stylize_many(inputs[0], inputs[1], SETTINGS, model=model, config=CONFIG, chunk=ITERATIONS)
    finally:
        sweep_mod.prepare = original
    return result, calls


def test_each_vmapped_run_equals_the_single_run(swept, inputs, model):
    result, _ = swept
    configs = run_configs(normalize_settings(SETTINGS, CONFIG, 2), CONFIG, model.arch, 2)
    assert result.images.shape == (4, 27, 32, 3) and result.images.dtype == np.float32
    assert result.status == ["done"] * 4
    np.testing.assert_array_equal(result.iterations, ITERATIONS)
    for k, config in enumerate(configs):
        # The single-run config of run k carries exactly run k's settings.
        assert config.style_weight == SETTINGS["style_weight"][k] and config.seed == SETTINGS["seed"][k]
        assert config.style_blend_weights == tuple(SETTINGS["style_blend_weights"][k])
        single = run_stylize(inputs[0], inputs[1], model, config, chunk=ITERATIONS)
        diff = np.abs(single.image - result.images[k]).max()
        assert diff <= TOL, f"run {k}: max abs diff {diff}"
        assert single.evaluations == result.evaluations[k]
        for term in ("content", "style", "tv", "total"):
            np.testing.assert_allclose(result.terms[term][k], single.history[-1][term], rtol=1e-3, atol=1e-7)
    # The runs really differ (the settings were applied per run, not shared).
    assert min(np.abs(result.images[i] - result.images[j]).max() for i in range(4) for j in range(i)) > 0.01


def test_a_sweep_of_one_run_is_the_single_run(inputs, model):
    # One run on one device is not batched at all: run_stylize's own step program, so the same pixels.
    settings = {k: v[:1] for k, v in SETTINGS.items()}
    result = stylize_many(inputs[0], inputs[1], settings, model=model, config=CONFIG, chunk=2)
    config = run_configs(normalize_settings(settings, CONFIG, 2), CONFIG, model.arch, 2)[0]
    single = run_stylize(inputs[0], inputs[1], model, config, chunk=ITERATIONS)
    np.testing.assert_array_equal(result.images[0], single.image)
    assert result.evaluations[0] == single.evaluations == ITERATIONS and result.status == ["done"]
    assert result.terms["total"][0] == pytest.approx(single.history[-1]["total"], rel=1e-6)
    # And when its loss is non-finite from the start, it stops like the single run.
    bad = dict(settings, style_weight=[3e38], content_weight=[3e38], tv_weight=[3e38])
    result = stylize_many(inputs[0], inputs[1], bad, model=model, config=CONFIG, chunk=2)
    single = run_stylize(inputs[0], inputs[1], model, run_configs(normalize_settings(bad, CONFIG, 2), CONFIG,
                                                                  model.arch, 2)[0], chunk=2)
    assert result.status == ["nonfinite"] and single.status == "nonfinite"
    assert result.iterations[0] == single.iterations and np.all(np.isfinite(result.images[0]))
    np.testing.assert_array_equal(result.images[0], single.image)


@pytest.mark.parametrize("optimizer", ["lbfgs-nols", "adam", "lbfgs"])
def test_each_vmapped_iteration_equals_the_single_iteration(inputs, model, optimizer):
    """From the same image and optimiser state, one vmapped iteration (the host-dispatched step used on CPU and
    the compiled while_loop chunk used on GPU/TPU) makes run k's next image and state as the single run's step.

    Step by step rather than over a whole run: a ReLU network's gradient is discontinuous at its kinks, and Adam
    normalises each pixel's step, so over several Adam iterations a rounding difference of 2e-7 between two
    programs can land on a kink and grow. Measured on run 0 with Adam: the vmapped and the single run were
    2.4e-7 apart after 2 iterations, where the same single-run gradient function differed by 5.3e-4 between the
    two iterates (a kink, not a different computation), and 5.6e-4 apart in pixels after 5 iterations. Each
    step is compared at the vmapped run's own iterates.
    """
    run_mod = importlib.import_module("jaxstyle.gatys.run")
    config = dataclasses.replace(CONFIG, optimizer=optimizer, learning_rate=0.05)
    configs = run_configs(normalize_settings(SETTINGS, config, 2), config, model.arch, 2)
    m = model.with_pooling(config.pooling)
    problem = gatys.prepare(m, inputs[0], inputs[1], config)
    key = (optimizer, config.learning_rate, config.lbfgs_memory)
    vstep, vchunk = sweep_mod._programs(problem.spec, key, sweep_mod.default_mesh())[:2]
    single = run_mod._programs(problem.spec, key)[0]
    ws = [gatys.loss_weights(c, 2) for c in configs]
    stacked = jax.tree.map(lambda *a: jnp.stack([jnp.asarray(v) for v in a]), *ws)
    xs = jnp.stack([gatys.init_image("noise", problem.shape, seed=c.seed) for c in configs])
    opt = run_mod.optimizer_of(config)
    states = jax.vmap(lambda x: loop.init(opt, x))(xs)
    copy = lambda tree: jax.tree.map(lambda a: jnp.array(a, copy=True), tree)
    split, targets = run_mod._split, problem.targets
    for _ in range(3):
        states = states._replace(stop_at=states.iteration + 1)  # one step each
        # Both vmapped loop forms from the same states; optimiser states are donated, so each gets a copy.
        host, hvalue = vstep(m, targets, stacked, *split(copy(states)))
        chunk, cvalues = vchunk(m, targets, stacked, *split(copy(states)), 1)
        for k in range(4):
            s1, v1 = single(m, targets, ws[k], *split(copy(jax.tree.map(lambda a: a[k], states))))
            for name, b, bvalue in (("host step", host, hvalue[k]), ("while chunk", chunk, cvalues[k, 0])):
                np.testing.assert_allclose(bvalue, v1, rtol=1e-5, err_msg=f"{name}, run {k}")
                assert int(b.evaluations[k]) == int(s1.evaluations), f"{name}, run {k}: evaluations"
                np.testing.assert_allclose(b.x[k], s1.x, rtol=0, atol=1e-5, err_msg=f"{name}, run {k}: image")
                for a, c in zip(jax.tree.leaves(b.opt_state), jax.tree.leaves(s1.opt_state)):
                    np.testing.assert_allclose(np.asarray(a[k], np.float64), np.asarray(c, np.float64),
                                               rtol=1e-4, atol=1e-5, err_msg=f"{name}, run {k}: state")
        states = host


def test_a_run_whose_loss_becomes_non_finite_stops_alone_like_its_single_run(inputs, model):
    # float32 overflows to inf: run 1's total loss is non-finite from its first evaluation on.
    settings = {k: list(v) for k, v in SETTINGS.items()}
    settings["style_weight"][1] = settings["tv_weight"][1] = 3e38
    settings["content_weight"][1] = 3e38
    result = stylize_many(inputs[0], inputs[1], settings, model=model, config=CONFIG, chunk=ITERATIONS)
    assert result.status == ["done", "nonfinite", "done", "done"]
    configs = run_configs(normalize_settings(settings, CONFIG, 2), CONFIG, model.arch, 2)
    single = run_stylize(inputs[0], inputs[1], model, configs[1], chunk=ITERATIONS)
    assert single.status == "nonfinite" and result.iterations[1] == single.iterations
    assert np.all(np.isfinite(result.images[1])) and np.abs(result.images[1] - single.image).max() <= TOL
    # The other runs are untouched by it (same as in the run without it).
    np.testing.assert_array_equal(result.iterations[[0, 2, 3]], ITERATIONS)


def test_targets_computed_once_for_all_runs(swept):
    _, calls = swept
    assert len(calls) == 1  # one prepare for K = 4 runs
    targets = calls[0].targets
    # One copy, not K: the content features are one image's, the Grams one per style image (S = 2).
    assert targets.content["relu2_2"].shape == (13, 16, 128)
    assert {k: v.shape for k, v in targets.grams.items()} == {
        "relu1_1": (2, 64, 64), "relu2_1": (2, 128, 128), "relu3_1": (2, 256, 256)}


def test_settings_are_checked(inputs, model):
    with pytest.raises(jaxstyle.UsageError, match="disagree on the number of runs"):
        stylize_many(inputs[0], inputs[1], {"style_weight": [1, 2], "seed": [0, 1, 2]}, model=model, config=CONFIG)
    with pytest.raises(jaxstyle.UsageError, match="unknown sweep setting 'beta'"):
        stylize_many(inputs[0], inputs[1], {"beta": [1, 2]}, model=model, config=CONFIG)
    with pytest.raises(jaxstyle.UsageError, match="sweep run 1: style_weight must be a finite number"):
        stylize_many(inputs[0], inputs[1], {"style_weight": [1, -1]}, model=model, config=CONFIG)



@pytest.mark.parametrize("settings, message", [
    ({"style_layer_weights": [[[1.0]]]}, "sweep setting style_layer_weights must have shape (K, n), got (1, 1, 1)"),
    ({"style_weight": [[1.0, 2.0]]}, "sweep setting style_weight must have shape (K), got (1, 2)"),
    ({"style_weight": [1, 2], "seed": [0, 1, 2]},
     "sweep settings disagree on the number of runs K: style_weight has 2, seed has 3"),
    ({"style_weight": []}, "a sweep needs at least one run (K >= 1)"),
])
def test_a_bad_sweep_is_refused_with_the_shape_it_needs(settings, message):
    # The user's whole message (the sweep command prints it as it is): K and n as docs/sweep.md names them.
    with pytest.raises(jaxstyle.UsageError) as e:
        normalize_settings(settings, CONFIG, 1)
    assert str(e.value) == message

def test_vmapped_lbfgs_nols_costs_one_evaluation_per_iteration_like_the_single_run(inputs, model):
    # Counted at run time by a debug callback inside the loss (one call = one VGG forward + backward per image).
    settings = {k: v[:2] for k, v in SETTINGS.items()}
    config = dataclasses.replace(CONFIG, iterations=3)
    single = count_evaluations(inputs[0], inputs[1], settings, model=model, config=config, vmapped=False)
    batched = count_evaluations(inputs[0], inputs[1], settings, model=model, config=config, vmapped=True)
    assert single == batched == 1.0


def _run_cli(capsys, *argv):
    code = main(["sweep", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _common(files, outdir):
    return ["--content", files["content"], "--style", files["style_a"], files["style_b"], "-o", str(outdir),
            "--image-size", "32", "--iterations", str(ITERATIONS), "--weights", "random",
            "--content-layers", "relu2_2", "--style-layers", "relu1_1,relu2_1,relu3_1", "--pooling", "avg", "-q"]


def test_cli_grid_writes_images_report_and_contact_sheet(files, tmp_path, capsys, swept):
    out = tmp_path / "grid"
    code, _, err = _run_cli(capsys, *_common(files, out), "--style-weight", "10,100", "--tv-weight", "0,1e-3")
    assert code == 0, err
    expected = ["sw1e+01_tv0.png", "sw1e+01_tv1e-03.png", "sw1e+02_tv0.png", "sw1e+02_tv1e-03.png"]
    assert sorted(os.listdir(out)) == sorted(expected + ["contact_sheet.png", "sweep.json"])  # no temp files
    report = json.loads((out / "sweep.json").read_text())
    runs = report["runs"]
    assert [r["image"] for r in runs] == expected  # product order: last flag varies fastest
    assert [(r["settings"]["style_weight"], r["settings"]["tv_weight"]) for r in runs] == [
        (10, 0), (10, 1e-3), (100, 0), (100, 1e-3)]
    for r in runs:
        assert r["status"] == "done" and r["iterations"] == ITERATIONS
        assert r["settings"]["seed"] == 0 and r["settings"]["style_blend_weights"] == [1.0, 1.0]
        assert set(r["losses"]) == {"content", "style", "tv", "total"}
        assert r["losses"]["total"] == pytest.approx(r["losses"]["content"] + r["losses"]["style"]
                                                     + r["losses"]["tv"], rel=1e-5)
        assert (r["losses"]["tv"] > 0) == (r["settings"]["tv_weight"] > 0)
        img = images.load_image(out / r["image"])
        assert img.shape == (27, 32, 3)
    # Independent check of one written image: the single run with its settings, through the library.
    config = dataclasses.replace(CONFIG, style_weight=100.0, tv_weight=1e-3)
    single = run_stylize(images.load_image(files["content"]), [images.load_image(files[s], role="style")
                         for s in ("style_a", "style_b")], load_vgg("random"), config, chunk=ITERATIONS)
    written = images.load_image(out / "sw1e+02_tv1e-03.png")
    assert np.abs(written - single.image).max() <= 0.5 / 255 + TOL  # 8-bit rounding
    sheet = images.load_image(out / "contact_sheet.png")
    assert sheet.shape[0] > 2 * 27 and sheet.shape[1] > 2 * 32  # a 2 x 2 grid with labels


def test_cli_zip_pairs_the_lists_and_checks_lengths(files, tmp_path, capsys, swept):
    out = tmp_path / "zip"
    code, _, err = _run_cli(capsys, *_common(files, out), "--zip", "--style-weight", "10,20,30,40",
                            "--seed", "0,1,2,3")
    assert code == 0, err
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    assert [(r["settings"]["style_weight"], r["settings"]["seed"]) for r in runs] == [
        (10, 0), (20, 1), (30, 2), (40, 3)]
    assert [r["image"] for r in runs] == ["sw1e+01_seed0.png", "sw2e+01_seed1.png", "sw3e+01_seed2.png",
                                          "sw4e+01_seed3.png"]

    bad = tmp_path / "bad"
    code, out_text, err = _run_cli(capsys, *_common(files, bad), "--zip", "--style-weight", "10,20",
                                   "--seed", "0,1,2")
    assert code == 2
    assert err.count("\n") == 1 and "--zip needs lists of equal length" in err and "Traceback" not in err
    assert not bad.exists() or not os.listdir(bad)


def test_a_mesh_made_by_jax_make_mesh_is_used_with_auto_axes(swept, inputs, model):
    """jax.make_mesh makes Explicit axes by default; the sweep runs on the same devices and axis names with Auto
    axes (the optimiser code carries no sharding annotations) and gives the default mesh's images."""
    explicit = jax.make_mesh((1,), ("runs",), devices=jax.devices()[:1])
    assert explicit.axis_types == (jax.sharding.AxisType.Explicit,)
    result = stylize_many(inputs[0], inputs[1], SETTINGS, model=model, config=CONFIG, chunk=ITERATIONS, mesh=explicit)
    assert result.mesh.axis_names == ("runs",) and result.mesh.axis_types == (jax.sharding.AxisType.Auto,)
    assert result.mesh.devices.tolist() == explicit.devices.tolist()
    np.testing.assert_allclose(result.images, swept[0].images, atol=TOL)
    auto = sweep_mod.default_mesh()
    assert sweep_mod._auto(auto) is auto  # already Auto: kept as it is


def test_a_sweep_reports_progress_per_chunk_and_stops_when_asked(swept, inputs, model):
    """The callback gets each chunk's slowest run and every run's terms; should_stop ends the sweep after the chunk
    with every run "interrupted" at the iterations it made; result.x holds the raw iterates the images come from."""
    progress = []
    result = stylize_many(inputs[0], inputs[1], SETTINGS, model=model, config=CONFIG, chunk=2,
                          callback=progress.append, should_stop=lambda: len(progress) >= 1)
    assert [(p.iteration, p.iterations) for p in progress] == [(2, ITERATIONS)] and progress[0].seconds > 0
    assert result.seconds >= progress[0].seconds
    assert set(progress[0].terms) >= {"content", "style", "tv", "total"}
    assert all(np.shape(v) == (4,) for v in progress[0].terms.values())
    assert result.status == ["interrupted"] * 4
    np.testing.assert_array_equal(result.iterations, 2)
    assert result.x.shape == (4, 27, 32, 3)
    np.testing.assert_allclose(result.images, np.clip(np.asarray(result.x), 0, 1), atol=1e-6)
    # the finished sweep's raw iterates are its images too
    np.testing.assert_allclose(swept[0].images, np.clip(np.asarray(swept[0].x), 0, 1), atol=1e-6)


def test_non_noise_inits_start_every_run_from_the_same_image(inputs, model):
    """init "content" (or "style"): one start for all K runs, the single run's; noise: each run's own seed."""
    problem = gatys.prepare(model, inputs[0], inputs[1], CONFIG)
    configs = run_configs(normalize_settings(SETTINGS, CONFIG, 2), CONFIG, model.arch, 2)
    for init, kwargs in (("content", dict(content=problem.content)), ("style", dict(style=problem.styles[0]))):
        config = dataclasses.replace(CONFIG, init=init)
        xs = sweep_mod._initial_images(problem, config, configs)
        assert xs.shape == (4, *problem.shape)
        for x in xs:
            np.testing.assert_array_equal(x, np.asarray(gatys.init_image(init, problem.shape, **kwargs)))
    noise = sweep_mod._initial_images(problem, CONFIG, configs)
    for x, c in zip(noise, configs):
        np.testing.assert_array_equal(x, np.asarray(gatys.init_image("noise", problem.shape, seed=c.seed)))


def test_padding_repeats_the_last_run_and_placement_follows_the_sharding():
    """Runs are padded to a multiple of the device count by repeating the last one (dropped afterwards), and
    placed on the batch sharding the programs expect; _host brings any array back whole."""
    tree = {"a": np.arange(3.0), "b": np.arange(6.0).reshape(3, 2)}
    padded = sweep_mod._pad(tree, 5)
    np.testing.assert_array_equal(padded["a"], [0, 1, 2, 2, 2])
    np.testing.assert_array_equal(padded["b"], [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    assert sweep_mod._pad(tree, 3)["a"] is not None and np.array_equal(sweep_mod._pad(tree, 3)["a"], tree["a"])
    mesh = sweep_mod.default_mesh()
    sharding = jax.sharding.NamedSharding(mesh, sweep_mod._batch_spec(mesh))
    placed = sweep_mod._put({"host": np.arange(4.0), "device": jnp.arange(4.0)}, sharding)
    for leaf in placed.values():
        assert leaf.sharding == sharding
        np.testing.assert_array_equal(sweep_mod._host(leaf), np.arange(4.0))
    np.testing.assert_array_equal(sweep_mod._host(np.arange(2)), [0, 1])  # numpy in, numpy out
