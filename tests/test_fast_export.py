"""`jaxstyle export`: the ONNX file, run in onnxruntime, stylises as jaxstyle.fast.apply does (CPU, tiny nets)."""

import json
import os

import numpy as np
import pytest

from jaxstyle import fast
from jaxstyle.cli import main
from jaxstyle.fast.model_file import save_model
from test_fast_apply import tiny_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def export(tmp_path, model, *extra):
    src, out = str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")
    save_model(src, model)
    assert main(["export", src, "-o", out, "-q", *extra]) == 0
    return ort.InferenceSession(out, providers=["CPUExecutionProvider"]), out


def run(session, x, **inputs):
    feeds = {"images": np.ascontiguousarray(x.transpose(0, 3, 1, 2)), **inputs}
    return session.run(None, feeds)[0].transpose(0, 2, 3, 1)


def test_onnxruntime_equals_apply_at_any_size(tmp_path):
    # Odd sizes exercise the graph's own pad-to-a-multiple-of-4 and crop back (computed from the input's shape).
    model = tiny_model(seed=3)
    session, _ = export(tmp_path, model)
    for shape in [(2, 32, 32), (1, 67, 45), (1, 5, 6)]:
        x = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
        y = run(session, x)
        assert y.shape == x.shape
        np.testing.assert_allclose(y, fast.apply(model, x), atol=1e-4)


def test_several_styles_default_mix_and_style_input(tmp_path):
    model = tiny_model(n_styles=2, seed=4)
    session, path = export(tmp_path, model, "--style-mix", "0.25,0.75")
    x = np.random.default_rng(1).random((1, 24, 28, 3), dtype=np.float32)
    np.testing.assert_allclose(run(session, x), fast.apply(model, x, mix=[0.25, 0.75]), atol=1e-4)
    one = run(session, x, style=np.array([[0.0, 1.0]], np.float32))
    np.testing.assert_allclose(one, fast.apply(model, x, mix=1), atol=1e-4)
    assert np.abs(one - run(session, x)).max() > 1e-3  # the input really overrides the default
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(props["jaxstyle"])["styles"] == ["s0", "s1"]


def test_paper_size_network_exports_and_matches(tmp_path):
    # The full c9s1-32 ... layout (1.68 M parameters), as users export it.
    net = fast.TransformerNet()
    model = fast.FastModel(params=fast.init_params(net, 5), net=net, meta={"styles": ["s"]})
    session, path = export(tmp_path, model)
    x = np.random.default_rng(2).random((1, 20, 36, 3), dtype=np.float32)
    np.testing.assert_allclose(run(session, x), fast.apply(model, x), atol=1e-4)
    assert os.path.getsize(path) > 1_679_235 * 4


def test_bad_inputs_write_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    out = tmp_path / "o.onnx"
    assert main(["export", str(bad), "-o", str(out)]) == 3
    assert not out.exists()
    save_model(str(tmp_path / "m.npz"), tiny_model())
    assert main(["export", str(tmp_path / "m.npz"), "-o", str(tmp_path / "o.txt")]) == 2
    assert main(["export", str(tmp_path / "m.npz"), "-o", str(out), "--style-mix", "3"]) == 2
    assert not out.exists() and not (tmp_path / "o.txt").exists()
    net = fast.TransformerNet(width=4, n_residual=1, upsample="transpose")  # an imported layout
    save_model(str(tmp_path / "v.npz"), fast.FastModel(params=fast.init_params(net), net=net, meta={}))
    assert main(["export", str(tmp_path / "v.npz"), "-o", str(out)]) == 2
    assert not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and "upsample=transpose" in err[-1] and all(line.startswith("error: ") for line in err)
