"""The fast style network, apply(), the model file and `jaxstyle apply` (CPU, tiny widths and images)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxstyle import colour, fast
from jaxstyle.errors import UsageError
from jaxstyle.cli import main
from jaxstyle.fast.model_file import ModelFileError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def is_norm(path) -> bool:
    """A conditional instance-norm table (n_styles, C), as opposed to a convolution's bias."""
    return path[-1].key in ("scale", "bias") and (path[-2].key.endswith("_in") or path[-2].key in ("in1", "in2"))


def tiny_model(n_styles=1, seed=0, meta=None):
    net = fast.TransformerNet(n_styles=n_styles, width=4, n_residual=1)
    params = fast.init_params(net, seed)
    # Non-trivial instance-norm affines so that styles differ (the initial ones are all 1 / 0).
    params = jax.tree_util.tree_map_with_path(
        lambda p, a: a + 0.3 * jax.random.normal(jax.random.key(len(str(p))), a.shape)
        if is_norm(p) else a, params)
    return fast.FastModel(params=params, net=net, meta=meta or {"styles": [f"s{i}" for i in range(n_styles)]})


def test_paper_layout_has_pytorch_examples_parameter_count():
    # pytorch/examples TransformerNet: 1,679,235 parameters (conv biases and instance-norm affines included).
    shapes = jax.eval_shape(lambda: fast.initial_params(fast.TransformerNet()))  # shapes only: no eager forward pass
    assert fast.count_params(shapes) == 1_679_235


@pytest.mark.parametrize("shape", [(17, 23), (32, 32), (9, 40)])
def test_apply_keeps_size_and_range(shape):
    x = np.random.default_rng(0).random((*shape, 3)).astype(np.float32)
    y = fast.apply(tiny_model(), x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert y.min() >= 0.0 and y.max() <= 1.0


def test_batch_equals_one_by_one_and_lists_keep_order():
    rng = np.random.default_rng(1)
    model = tiny_model()
    xs = [rng.random((20, 24, 3)).astype(np.float32) for _ in range(3)] + [rng.random((16, 20, 3)).astype(np.float32)]
    out = fast.apply(model, xs, batch_size=2)
    for x, y in zip(xs, out):
        np.testing.assert_allclose(y, fast.apply(model, x), atol=1e-5)


def test_images_per_pass_bounds_the_pixels_on_cpu_only():
    per_pass = fast.inference.images_per_pass
    assert per_pass((4, 256, 256, 3), "cpu") == 1 and per_pass((8, 128, 128, 3), "cpu") == 4
    assert per_pass((8, 100, 200, 3), "cpu") == 3 and per_pass((3, 2048, 2048, 3), "cpu") == 1
    assert per_pass((2, 64, 64, 3), "cpu") == 2
    assert per_pass((4, 512, 512, 3), "gpu") == 4 and per_pass((4, 512, 512, 3), "tpu") == 4


def test_prepared_winograd_kernels_give_the_same_images_with_fewer_temporaries():
    net = fast.TransformerNet(width=8, n_residual=2)  # 32-channel residual and u1 convolutions: Winograd
    params = fast.init_params(net, 3)
    assert list(params) == ["params"]  # initialisation (and so training) never stores transformed kernels
    prepared = fast.inference.prepare(net, params)
    transformed = jax.tree_util.tree_flatten_with_path(prepared["winograd"])[0]
    assert sorted(jax.tree_util.keystr(p[:-2]) for p, _ in transformed) == [
        "['r1']['conv1']", "['r1']['conv2']", "['r2']['conv1']", "['r2']['conv2']", "['u1']", "['u2']"]
    assert all(a.shape[0] == 36 for _, a in transformed)
    jax.tree.map(np.testing.assert_array_equal, prepared["params"], params["params"])
    x = np.random.default_rng(4).random((3, 32, 36, 3)).astype(np.float32)
    w = np.ones((1,), np.float32)
    fn = fast.inference._jitted(net, False)
    np.testing.assert_allclose(fn(prepared, x, w), fn(params, x, w), atol=1e-6)

    def temp(p):
        return fn.lower(p, x, w).compile().memory_analysis().temp_size_in_bytes

    # Without: every transformed kernel is computed in the call and kept alive across its loop over images.
    assert temp(prepared) < temp(params) - 0.5 * sum(a.nbytes for _, a in transformed)
    np.testing.assert_allclose(fast.apply(fast.FastModel(params=params, net=net, meta={}), x), fn(params, x, w),
                               atol=1e-6)  # apply prepares, and gives the unprepared program's images


@pytest.mark.parametrize("original_colors", [False, True])
def test_batch_in_several_passes_equals_one_pass(monkeypatch, original_colors):
    model = tiny_model(n_styles=2)
    x = np.random.default_rng(2).random((5, 16, 20, 3)).astype(np.float32)
    mix = np.asarray([0.3, 0.7], np.float32)

    def run():  # traced afresh: the pass size is read at trace time
        return jax.jit(lambda p, x, w: fast.stylize_batch(model.net, p, x, w, original_colors))

    whole = run()(model.params, x, mix)
    monkeypatch.setattr(fast.inference, "PASS_PIXELS", 2 * 16 * 20)  # 2 images a pass: 3 passes, the last short
    assert "while" in run().lower(model.params, x, mix).as_text()
    np.testing.assert_allclose(run()(model.params, x, mix), whole, atol=1e-4)  # rounding; 8 bits are 4e-3


def test_style_mix_interpolates_instance_norm_parameters():
    model = tiny_model(n_styles=2)
    x = np.random.default_rng(2).random((24, 24, 3)).astype(np.float32)
    np.testing.assert_allclose(fast.apply(model, x, mix=[1, 0]), fast.apply(model, x, mix=0), atol=1e-6)
    assert np.abs(fast.apply(model, x, mix=0) - fast.apply(model, x, mix=1)).max() > 1e-3
    # Dumoulin et al.: mixing = a one-style network whose scale/shift are the weighted average.
    w = np.array([0.7, 0.3], np.float32)
    mixed_params = jax.tree_util.tree_map_with_path(
        lambda p, a: (w @ a)[None] if is_norm(p) else a, model.params)
    single = fast.FastModel(params=mixed_params, net=fast.TransformerNet(n_styles=1, width=4, n_residual=1))
    np.testing.assert_allclose(fast.apply(model, x, mix=[7, 3]), fast.apply(single, x), atol=1e-5)


def test_original_colors_keep_the_chroma():
    model = tiny_model()
    x = np.random.default_rng(3).random((20, 20, 3)).astype(np.float32) * 0.5 + 0.25
    y = fast.apply(model, x, original_colors=True)
    inside = np.all((y > 1e-3) & (y < 1 - 1e-3), axis=-1)  # pixels where the YIQ -> RGB result was not clipped
    assert inside.mean() > 0.3
    np.testing.assert_allclose(np.asarray(colour.rgb_to_yiq(y))[inside][:, 1:],
                               np.asarray(colour.rgb_to_yiq(x))[inside][:, 1:], atol=1e-4)


def test_bad_mix_is_a_usage_error():
    with pytest.raises(UsageError):
        fast.apply(tiny_model(2), np.zeros((16, 16, 3), np.float32), mix=[1, 2, 3])


def test_model_file_round_trip(tmp_path):
    model = tiny_model(2, meta={"styles": ["a", "b"], "training": {"steps": 3}})
    fast.save_model(tmp_path / "m.npz", model)
    back = fast.load_model(tmp_path / "m.npz")
    assert back.net == model.net and back.style_names == ["a", "b"] and back.meta["training"] == {"steps": 3}
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(back.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:  # never pickled
        assert all(data[k].dtype != object for k in data.files)


def _bad_files(tmp_path):
    good = tmp_path / "good.npz"
    fast.save_model(good, tiny_model())
    raw = good.read_bytes()
    (tmp_path / "text.npz").write_text("hello")
    (tmp_path / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    np.savez(tmp_path / "foreign.npz", conv1_1=np.zeros(3, np.float32))
    with np.load(good) as data:
        arrays = dict(data)
    meta = json.loads(arrays["meta/json"].tobytes())
    meta["architecture"]["width"] = 8  # claims another architecture than its arrays hold
    np.savez(tmp_path / "otherarch.npz", **{**arrays, "meta/json": np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    nan = {**arrays, "params/params/c1/conv/bias": np.full_like(arrays["params/params/c1/conv/bias"], np.nan)}
    np.savez(tmp_path / "nan.npz", **nan)
    return ["text.npz", "truncated.npz", "foreign.npz", "otherarch.npz", "nan.npz", "missing.npz"]


def test_bad_model_files_are_one_line_errors(tmp_path):
    for name in _bad_files(tmp_path):
        with pytest.raises(ModelFileError) as e:
            fast.load_model(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)


def test_cli_apply_folder_and_bad_model(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(4)
    for name, size in (("a.jpg", (20, 28)), ("b.png", (20, 28)), ("c.png", (33, 17))):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(src / name)
    fast.save_model(tmp_path / "m.npz", tiny_model(2))
    assert main(["apply", "--model", str(tmp_path / "m.npz"), str(src), "-o", str(tmp_path / "out"),
                 "--style-mix", "0.7,0.3", "--original-colors", "-q"]) == 0
    for name, size in (("a", (20, 28)), ("b", (20, 28)), ("c", (33, 17))):
        assert np.asarray(Image.open(tmp_path / "out" / f"{name}.png")).shape == (*size, 3)
    _bad_files(tmp_path)
    capsys.readouterr()
    assert main(["apply", "--model", str(tmp_path / "truncated.npz"), str(src), "-o", str(tmp_path / "o2")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and not (tmp_path / "o2").exists()
    # An output that would replace an input is refused before anything is written.
    before = (src / "b.png").read_bytes()
    assert main(["apply", "--model", str(tmp_path / "m.npz"), str(src / "b.png"), "-o", str(src)]) == 2
    assert (src / "b.png").read_bytes() == before


def test_stylize_fast_script_runs(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "x.png")
    fast.save_model(tmp_path / "m.npz", tiny_model())
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "stylize_fast.py"), "--model",
                        str(tmp_path / "m.npz"), str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "-q"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "x.png").exists()
