"""Importing published fast style networks: pytorch/examples' TransformerNet state_dicts and jcjohnson/
fast-neural-style's .t7 checkpoints, each against an independent PyTorch forward of the same weights (CPU, tiny)."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks.torch_fast import TransformerNet  # noqa: E402  (pytorch/examples' definition)
from jaxstyle import fast  # noqa: E402
from jaxstyle.cli import convert as cli_convert  # noqa: E402
from jaxstyle.cli import main  # noqa: E402
from jaxstyle.fast import importers, model_file  # noqa: E402
from jaxstyle.io import images  # noqa: E402

import torch7_files as t7  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHELSEA = os.path.join(ROOT, "examples", "images", "chelsea.jpg")
H, W = 67, 45  # odd: the original networks' output is a few pixels larger and is cropped


def random_transformer_net(seed=0):
    torch.manual_seed(seed)
    net = TransformerNet(width=4, n_residual=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))  # non-trivial norm affines
    return net


def save_pth(net, path, stale=False):
    state = net.state_dict()
    if stale:  # what PyTorch < 0.4 saved for InstanceNorm2d; pytorch/examples deletes them before loading
        state.update({"in1.running_mean": torch.zeros(4), "res2.in1.running_var": torch.ones(16)})
    # Files from before PyTorch 1.6, as the published ones with stale keys are, use the legacy format.
    torch.save(state, path, _use_new_zipfile_serialization=not stale)
    return path


def run(model, x):
    return np.asarray(jax.jit(model.net.apply)(model.params, x[None], np.ones((1, 1), np.float32)))[0]


def assert_close(ours, ref):
    scale = np.abs(ref).max()
    assert np.abs(ours - ref).max() <= 1e-4 * scale, (np.abs(ours - ref).max(), scale)


@pytest.mark.parametrize("stale", [False, True])  # True: stale keys, legacy serialisation
def test_pytorch_examples_state_dict_matches_torch(stale, tmp_path):
    net = random_transformer_net()
    info = importers.convert(save_pth(net, tmp_path / "candy.pth", stale), tmp_path / "candy.npz")
    model = fast.load_model(info["output"])
    x = np.random.default_rng(0).random((H, W, 3)).astype(np.float32)
    with torch.no_grad():  # neural_style.py: ToTensor, x.mul(255), the network; its output is 0-255 RGB
        ref = net(torch.tensor(x.transpose(2, 0, 1)[None] * 255)).numpy()[0].transpose(1, 2, 0)
    assert ref.shape[:2] == (68, 48)
    assert_close(run(model, x) * 255, ref[:H, :W])
    assert model.meta["import"]["dropped_stale_keys"] == (["in1.running_mean", "res2.in1.running_var"] if stale else [])
    assert model.meta["provenance"]["source_sha256"] == info["source_sha256"] and len(info["source_sha256"]) == 64
    assert model.meta["provenance"]["source_project"] == "pytorch/examples fast_neural_style"


VARIANTS = {  # (norm, upsampling, opt.preprocessing, norm eps): the instance_norm models, U2 + c3s1, ECCV16's
    "instance-transpose": ("instance", "transpose", "vgg", 1e-5),
    "instance-nearest-resnet-eps": ("instance", "nearest", "resnet", 1e-2),
    "eccv16-batch-norm": ("batch", "transpose", None, 1e-3),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fast_neural_style_t7_matches_torch(variant, tmp_path):
    norm, upsample, preprocessing, eps = VARIANTS[variant]
    net = t7.network(seed=len(variant), norm_kind=norm, upsample=upsample, tanh=150.0 if norm == "batch" else 120.0,
                     eps=eps)
    src = tmp_path / "candy.t7"
    src.write_bytes(t7.write_t7(t7.checkpoint(net, preprocessing)))
    model = fast.load_model(importers.convert(src, tmp_path / "candy.npz")["output"])
    x = np.random.default_rng(1).random((H, W, 3)).astype(np.float32)
    ref = t7.stylize(net, x, preprocessing or "vgg")  # fast_neural_style.lua: opt.preprocessing or 'vgg'
    assert ref.shape[:2] == (68, 48)
    assert_close(run(model, x), ref[:H, :W])
    arch = model.meta["architecture"]
    assert (arch.get("norm", "instance"), arch.get("upsample", "nearest"), arch["output_scale"]) == (
        norm, upsample, 150.0 if norm == "batch" else 120.0)
    assert model.meta["import"]["opt"]["padding_type"] == "reflect-start"


def test_cli_convert_then_apply_runs_end_to_end(tmp_path, capsys):
    src = save_pth(random_transformer_net(1), tmp_path / "mosaic.pth")
    out = tmp_path / "models" / "mosaic.npz"
    assert main(["convert", str(src), "-o", str(out)]) == 0
    assert "pytorch/examples fast_neural_style network, width 4, 2 residual blocks" in capsys.readouterr().out
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(CHELSEA, photos / "a.jpg"), shutil.copy(CHELSEA, photos / "b.jpg")  # one batch of two
    for flags, outdir in (([], "out"), (["--original-colors"], "out_oc")):
        assert main(["apply", "--model", str(out), str(photos), "--image-size", "48", "--batch-size", "2",
                     "-q", "-o", str(tmp_path / outdir), *flags]) == 0
    a, b = (images.load_image(str(tmp_path / "out" / f)) for f in ("a.png", "b.png"))
    oc = images.load_image(str(tmp_path / "out_oc" / "a.png"))
    assert a.shape[:2] == (48, 32) if a.shape[1] < a.shape[0] else a.shape[:2] == (32, 48)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - oc).max() > 0.02  # --original-colors changed the colours


def _t7_case(edit):
    def make(path):
        data = t7.write_t7(t7.checkpoint(edit(t7.network(seed=3))))
        path.write_bytes(data)

    return make


def _bytes_edit(fn):
    def make(path):
        path.write_bytes(fn(t7.write_t7(t7.checkpoint(t7.network(seed=3)))))

    return make


def _pth_edit(fn):
    def make(path):
        state = random_transformer_net().state_dict()
        fn(state)
        torch.save(state, path)

    return make


def _replace(classname, new):
    def edit(model):
        for m in _walk(model):
            for i, child in enumerate(m.fields.get("modules", [])):
                if child.classname == classname:
                    m.fields["modules"][i] = new
                    return model
        raise AssertionError(classname)

    return edit


def _set_first(classname, **fields):
    def edit(model):
        next(m for m in _walk(model) if m.classname == classname).fields.update(fields)
        return model

    return edit


def _walk(m):
    yield m
    for child in m.fields.get("modules", []):
        yield from _walk(child)


def _self_containing(model):
    model.fields["modules"][0].fields["modules"].append(model.fields["modules"][0])
    return model


def _vgg_like(_model):
    rng = np.random.default_rng(0)
    return t7.M("nn.Sequential", modules=[t7.conv(rng, 3, 8, 3, 1, 1), t7.relu(), t7.conv(rng, 8, 8, 3, 1, 1)])


BAD = {
    "t7-truncated": (_bytes_edit(lambda b: b[: len(b) // 2]), "truncated"),
    "t7-trailing-bytes": (_bytes_edit(lambda b: b + b"\0\0"), "after the end"),
    "t7-damaged-tag": (_bytes_edit(lambda b: b[:4] + b"\x01\x00\x00\x00" + b"\x09\x00\x00\x00" + b[12:]), "damaged"),
    "t7-lua-function": (lambda p: p.write_bytes(t7.write_t7({"model": t7.Function()})), "Lua function"),
    "t7-bare-network": (lambda p: p.write_bytes(t7.write_t7(t7.network(seed=3))), "not a fast-neural-style checkpoint"),
    "t7-other-network": (_t7_case(_vgg_like), "expected nn.SpatialReflectionPadding, found nn.SpatialConvolution"),
    "t7-zero-padded-blocks": (_t7_case(_replace("nn.ShaveImage", t7.M("nn.Identity"))), "not ShaveImage(2)"),
    "t7-extra-layer": (_t7_case(_replace("nn.Tanh", t7.M("nn.Sigmoid"))), "expected nn.Tanh, found nn.Sigmoid"),
    "t7-negative-tanh-scale": (_t7_case(_set_first("nn.MulConstant", constant_scalar=-150.0)),
                               "constant_scalar is -150.0, expected a positive number"),
    "t7-container-holds-itself": (_t7_case(_self_containing), "found nn.SpatialReflectionPadding"),
    "pth-truncated": (lambda p: (_pth_edit(lambda s: None)(p), p.write_bytes(p.read_bytes()[:3000])), "truncated"),
    "pth-missing-key": (_pth_edit(lambda s: s.pop("res2.in2.bias")), "missing key 'res2.in2.bias'"),
    "pth-other-key": (_pth_edit(lambda s: s.update({"in1.num_batches_tracked": torch.tensor(0)})), "unexpected key"),
    "pth-wrong-shape": (_pth_edit(lambda s: s.update({"in4.weight": torch.ones(3)})), "key in4.weight does not fit"),
    "t7-wrong-shape": (_t7_case(_set_first("nn.InstanceNormalization", weight=np.ones(3, np.float32),
                                                        bias=np.ones(3, np.float32))),
                       "layer 3 (nn.InstanceNormalization) bias does not fit"),
    "t7-inconsistent-norm": (_t7_case(_set_first("nn.InstanceNormalization", bias=np.ones(3, np.float32))),
                             "not vectors of one length"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_give_one_line_and_write_nothing(case, tmp_path, capsys):
    make, expected = BAD[case]
    src = tmp_path / ("bad.t7" if case.startswith("t7") else "bad.pth")
    make(src)
    out = tmp_path / "out.npz"
    assert main(["convert", str(src), "-o", str(out)]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and str(src) in err, err
    assert sorted(os.listdir(tmp_path)) == [src.name]  # no output, no temporary file left


def test_model_file_variants_stay_strict(tmp_path):
    assert cli_convert.STYLE_FORMATS == importers.FORMATS
    net = fast.TransformerNet(width=2, n_residual=0)
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(lambda: fast.initial_params(net)))
    own = fast.FastModel(params=params, net=net, meta={"styles": ["x"]})
    fast.save_model(tmp_path / "own.npz", own)
    with np.load(tmp_path / "own.npz") as data:
        meta = json.loads(data["meta/json"].tobytes())
        arrays = {k: data[k] for k in data.files}
    # jaxstyle's own networks are described exactly as before the variants: version 1, the four size fields.
    assert meta["format_version"] == 1 and set(meta["architecture"]) == {"name", "n_styles", "width", "n_residual"}
    for version, extra, problem in ((1, {"norm": "batch"}, "architecture"), (2, {"norm": "group"}, "architecture"),
                                    (2, {"output_scale": -1}, "architecture"), (2, {"tanh": 1}, "architecture")):
        bad = {**meta, "format_version": version, "architecture": {**meta["architecture"], **extra}}
        arrays[model_file.META_KEY] = np.frombuffer(json.dumps(bad).encode(), np.uint8)
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(model_file.ModelFileError, match=problem):
            fast.load_model(tmp_path / "bad.npz")
