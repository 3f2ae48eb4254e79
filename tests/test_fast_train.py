"""Training fast style networks (CPU, 32-px crops, width-4 networks, a handful of steps)."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import numpy as np
import optax
import pytest
from PIL import Image

import jaxstyle
from jaxstyle import fast, xla_options
from jaxstyle.cli import main
from jaxstyle.fast import config as config_lib, objective, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--image-size", "32", "--style-size", "32", "--batch-size", "2", "--width", "4", "--residual-blocks", "1",
        "--preview-every", "0", "--checkpoint-every", "0", "-q"]


def dataset(root, n=5, broken=True):
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        where = root / "sub" if i % 2 else root
        Image.fromarray((rng.random((40 + 4 * i, 48, 3)) * 255).astype(np.uint8)).save(where / f"im{i}.jpg")
    if broken:
        (root / "broken.jpg").write_bytes(b"not a jpeg")
        (root / "sub" / "truncated.jpg").write_bytes((root / "im0.jpg").read_bytes()[:200])
    return root


@pytest.fixture
def files(tmp_path):
    data = dataset(tmp_path / "data")
    Image.fromarray((np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / "s1.png")
    Image.fromarray(np.tile(np.linspace(0, 255, 40, dtype=np.uint8)[:, None, None], (1, 40, 3))).save(tmp_path / "s2.png")
    return data, tmp_path / "s1.png", tmp_path / "s2.png"


def params_of(path):
    return [np.asarray(a) for a in jax.tree.leaves(fast.load_model(path).params)]


def history(path):
    return [json.loads(line) for line in open(path)]


def tiny_step():
    """(config, objective, network, state, mesh, batch) of a width-4 network on 32-px crops, random VGG16."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vgg = jaxstyle.load_vgg("random", arch="vgg16")
    cfg = config_lib.FastConfig(width=4, n_residual=1, image_size=32, style_size=32, batch_size=2)
    rng = np.random.default_rng(0)
    obj = objective.make_objective(vgg, [rng.random((32, 32, 3)).astype(np.float32)], cfg)
    net = train.network(cfg, 1)
    state, mesh = train.init_state(net, cfg), train.data_mesh()
    batch = train.put_batch((rng.random((2, 32, 32, 3)) * 255).astype(np.uint8), np.zeros(2, np.int32), mesh)
    return cfg, obj, net, state, mesh, batch


def test_a_few_steps_lower_the_loss():
    cfg, obj, net, state, mesh, batch = tiny_step()
    step = train.compile_step(net, cfg, mesh)
    losses = []
    for _ in range(8):
        state, metrics = step(obj, state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0], losses
    assert int(state.step) == 8


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA CPU option")
def test_the_train_step_is_compiled_without_library_fusions():
    """docs/fast.md, "Speed": without XLA CPU's YNNPACK fusions the train step ran 3.39 s instead of 3.93."""
    assert xla_options.no_library_fusions() == {"xla_cpu_experimental_ynn_fusion_type": ""}
    cfg, obj, net, state, mesh, batch = tiny_step()
    ours = train.compile_step(net, cfg, mesh).lower(obj, state, batch).compile().as_text()
    plain = jax.jit(train.make_train_step(net, optax.adam(cfg.learning_rate)))  # the same step, default options
    assert "__ynn_fusion" in plain.lower(obj, state, batch).compile().as_text()  # what XLA CPU forms by default
    assert "__ynn_fusion" not in ours


@pytest.mark.parametrize("options", [{}, xla_options.no_library_fusions()], ids=["default", "no_library_fusions"])
def test_loss_means_are_float64_accurate_however_compiled(options):
    """The loss's means, compiled as the train step is: a whole-array jnp.mean came out 2.3e-5 from float64."""
    rng = np.random.default_rng(0)
    a, b = ((rng.standard_normal((4, 32, 32, 64)) * 3 + 5).astype(np.float32) for _ in range(2))
    exact = np.mean(np.square(a.astype(np.float64) - b))
    value = float(jax.jit(lambda a, b: objective.mean(jax.numpy.square(a - b)), compiler_options=options)(a, b))
    assert abs(value - exact) < 1e-6 * exact, abs(value - exact) / exact


def test_resume_equals_uninterrupted_run_bit_for_bit(files, tmp_path):
    data, s1, _ = files
    common = ["train", "--style", str(s1), "--dataset", str(data), *TINY]
    assert main([*common, "--steps", "5", "-o", str(tmp_path / "full.npz")]) == 0
    assert main([*common, "--steps", "2", "-o", str(tmp_path / "part.npz")]) == 0
    # Resume with only --steps: everything else comes from the checkpoint.
    assert main(["train", "--resume", "--steps", "5", "-o", str(tmp_path / "part.npz"), "-q"]) == 0
    for a, b in zip(params_of(tmp_path / "full.npz"), params_of(tmp_path / "part.npz")):
        np.testing.assert_array_equal(a, b)
    full, part = history(tmp_path / "full.history.jsonl"), history(tmp_path / "part.history.jsonl")
    assert [h["step"] for h in part] == [1, 2, 3, 4, 5]
    assert [h["loss"] for h in part] == [h["loss"] for h in full]
    # 10 samples from 7 files of which 2 are unreadable: the stream crossed an epoch and skipped both (twice).
    assert full[-1]["skipped"] == part[-1]["skipped"] >= 2
    meta = fast.load_model(tmp_path / "part.npz").meta
    assert meta["training"]["steps_done"] == 5 and meta["provenance"]["weights"] == "random"


def test_multi_style_training_and_mixing(files, tmp_path):
    data, s1, s2 = files
    out = tmp_path / "two.npz"
    assert main(["train", "--style", str(s1), str(s2), "--dataset", str(data), *TINY, "--steps", "3",
                 "--preview-every", "3", "-o", str(out)]) == 0
    model = fast.load_model(out)
    assert model.n_styles == 2 and model.style_names == ["s1", "s2"]
    x = np.random.default_rng(5).random((24, 24, 3)).astype(np.float32)
    a, b, m = (fast.apply(model, x, mix=w) for w in (0, 1, [0.5, 0.5]))
    assert np.abs(a - b).max() > 1e-4  # the two styles' parameters were trained apart
    assert sorted(os.listdir(tmp_path / "two.preview")) == ["step0000003_style0.png", "step0000003_style1.png"]


def test_bad_datasets_and_options_fail_cleanly(files, tmp_path, capsys):
    data, s1, _ = files
    (tmp_path / "empty").mkdir()
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    for i in range(3):
        (unreadable / f"x{i}.jpg").write_bytes(b"junk")
    cases = [(["--dataset", str(tmp_path / "empty")], 3), (["--dataset", str(unreadable)], 3),
             (["--dataset", str(tmp_path / "nope")], 3), (["--dataset", str(data), "--batch-size", "0"], 2),
             (["--dataset", str(data), "--content-weight", "-1"], 2)]
    for extra, code in cases:
        capsys.readouterr()
        out = tmp_path / "m.npz"
        args = ["train", "--style", str(s1), *TINY, "--steps", "2", "-o", str(out), *extra]
        assert main(args) == code, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and not out.exists(), (extra, err)
    # A finished run's checkpoint is never silently overwritten.
    assert main(["train", "--style", str(s1), "--dataset", str(data), *TINY, "--steps", "1", "-o", str(out)]) == 0
    before = out.read_bytes()
    assert main(["train", "--style", str(s1), "--dataset", str(data), *TINY, "--steps", "1", "-o", str(out)]) == 2
    assert out.read_bytes() == before


SHARDED = textwrap.dedent("""
    import warnings, numpy as np, jax
    warnings.simplefilter("ignore")
    import jaxstyle, training_compare
    from jaxstyle.fast import config as config_lib, objective, train
    assert jax.device_count() == 4
    cfg = config_lib.FastConfig(width=4, n_residual=1, image_size=32, style_size=32, batch_size=4)
    rng = np.random.default_rng(0)
    vgg = jaxstyle.load_vgg("random", arch="vgg16")
    styles = [rng.random((32, 32, 3)).astype(np.float32) for _ in range(2)]
    batches = [(rng.random((4, 32, 32, 3)) * 255).astype(np.uint8) for _ in range(2)]
    out = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = train.data_mesh(devices)
        net = train.network(cfg, 2)
        obj = jax.device_put(objective.make_objective(vgg, styles, cfg), train.shardings(mesh)[0])
        state = jax.device_put(train.init_state(net, cfg), train.shardings(mesh)[0])
        step = train.compile_step(net, cfg, mesh)
        for i, b in enumerate(batches):
            state, m = step(obj, state, train.put_batch(b, train.batch_styles(i, 4, 2), mesh))
        assert len(state.params["params"]["c1"]["conv"]["kernel"].sharding.device_set) == len(devices)
        # Every kernel and scale in units of the learning rate (tests/training_compare.py says why), and what the
        # networks compute.
        kept = training_compare.kernels(state.params)
        test = (np.random.default_rng(9).random((2, 32, 32, 3))).astype(np.float32)
        y = jax.jit(net.apply)(state.params, test, jax.nn.one_hot([0, 1], 2))  # jitted: op by op takes ~10 s
        out.append((kept, np.asarray(y), float(m["loss"])))
    (p1, y1, l1), (p4, y4, l4) = out
    training_compare.assert_same_training(p1, p4, cfg.learning_rate)
    assert np.abs(y1 - y4).max() < 1e-4 * np.abs(y1).max() and abs(l1 - l4) < 1e-5 * l1
""")


def test_sharded_over_four_cpu_devices_equals_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
           "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
