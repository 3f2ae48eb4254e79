"""Conversion from every published source layout, checked against an independent PyTorch forward pass.

Each test writes a file in the exact published layout with random He-scaled weights, converts it, loads it
with ``jaxstyle.load_vgg`` and compares every conv layer's features with ``torch_reference.torch_features``
(float64) run on the same weights and the preprocessing the source documents (constants written out below,
from the publishers' documentation, not taken from jaxstyle).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxstyle import PRESETS

from jaxstyle.nets import weights
from jaxstyle.nets import convert as C
from jaxstyle import extract_features, load_vgg
from jaxstyle.errors import UsageError, WeightsError
from torch_reference import conv_names, torch_features
from weight_files import (gatys_state_dict, random_hwio, remove_large_files, to_oihw, torchvision_state_dict,
                          write_keras, write_matconvnet, write_safetensors, write_torch)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What each source's weights expect, from its publisher (weights-formats table), in network channel order.
CAFFE = dict(bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))
TORCHVISION = dict(bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
GATYS = dict(bgr=True, scale=255.0, mean=(0.40760392 * 255, 0.45795686 * 255, 0.48501961 * 255), std=(1.0,) * 3)
MATCONVNET_MEAN = (122.5, 115.25, 104.0)  # deliberately not the standard one: it must come from the file
MATCONVNET = dict(bgr=False, scale=255.0, mean=MATCONVNET_MEAN, std=(1.0, 1.0, 1.0))

TOL = 1e-4


@pytest.fixture(scope="module")
def truth():
    return {arch: random_hwio(arch, seed=i) for i, arch in enumerate(("vgg19", "vgg16"))}


@pytest.fixture(scope="module")
def vgg19_model(truth, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "w.npz"
    weights.save_converted(path, "vgg19", truth["vgg19"], PRESETS["caffe"], source="test", source_sha256="",
                           source_format="test")
    model = load_vgg(path)  # arrays are in memory now
    shutil.rmtree(path.parent, ignore_errors=True)
    return model


@pytest.fixture(scope="module")
def images():
    # Non-square, so a transposed kernel (H<->W) or a transposed image cannot pass.
    return np.random.default_rng(7).uniform(0, 1, (2, 48, 80, 3)).astype(np.float32)


def assert_matches_torch(npz, arch, hwio, preset, images, pooling="max"):
    model = load_vgg(npz, pooling=pooling)
    assert model.arch == arch
    for field in ("bgr", "scale", "mean", "std"):
        np.testing.assert_allclose(getattr(model.preprocess, field), preset[field], rtol=1e-6)
    names = conv_names(arch)
    got = extract_features(model, images, names)
    ref = torch_features(to_oihw(hwio), arch, preset, images, pooling=pooling)
    for name in names:
        g, r = np.asarray(got[name], np.float64), ref[name]
        assert g.shape == r.shape, name
        rel = np.linalg.norm(g - r) / np.linalg.norm(r)
        assert rel <= TOL, f"{name}: relative error {rel:.2e}"


def write_source(kind, arch, hwio, path):
    """Write ``kind`` into ``path``'s directory under its published name; return (file, expected preset)."""
    d = os.path.dirname(path)
    if kind.startswith("keras"):
        _, naming, head, *mw = kind.split("-")
        name = f"{arch}_weights_tf_dim_ordering_tf_kernels{'' if head == 'full' else '_notop'}.h5"
        write_keras(os.path.join(d, name), arch, hwio, naming=naming, head=head == "full", model_weights=bool(mw))
        return os.path.join(d, name), CAFFE
    if kind == "torchvision":
        name = {"vgg19": "vgg19-dcbb9e9d.pth", "vgg16": "vgg16-397923af.pth"}[arch]
        write_torch(os.path.join(d, name), torchvision_state_dict(arch, hwio))
        return os.path.join(d, name), TORCHVISION
    if kind == "caffe-pth":
        name = {"vgg19": "vgg19-d01eb7cb.pth", "vgg16": "vgg16-00b39a1b.pth"}[arch]
        write_torch(os.path.join(d, name), torchvision_state_dict(arch, hwio, head="caffe"))
        return os.path.join(d, name), CAFFE
    if kind.startswith("gatys"):
        write_torch(os.path.join(d, "vgg_conv.pth"), gatys_state_dict(hwio), legacy=kind.endswith("legacy"))
        return os.path.join(d, "vgg_conv.pth"), GATYS
    if kind == "safetensors":
        write_safetensors(os.path.join(d, "vgg.safetensors"), torchvision_state_dict(arch, hwio))
        return os.path.join(d, "vgg.safetensors"), TORCHVISION
    if kind.startswith("matconvnet"):
        write_matconvnet(os.path.join(d, f"imagenet-{arch}.mat"), arch, hwio, layout=kind.split("-")[1],
                         mean_rgb=MATCONVNET_MEAN)
        return os.path.join(d, f"imagenet-{arch}.mat"), MATCONVNET
    raise AssertionError(kind)


CASES = [
    ("keras-2016-notop", "vgg19"), ("keras-2016-full", "vgg19"), ("keras-nested-notop", "vgg19"),
    ("keras-nested-full", "vgg19"), ("keras-nested-full-modelweights", "vgg19"),
    ("keras-2016-notop", "vgg16"), ("keras-nested-full", "vgg16"),
    ("torchvision", "vgg19"), ("torchvision", "vgg16"),
    ("caffe-pth", "vgg19"), ("caffe-pth", "vgg16"),
    ("safetensors", "vgg19"),
    ("gatys-zip", "vgg19"), ("gatys-legacy", "vgg19"),
    ("matconvnet-new", "vgg19"), ("matconvnet-old", "vgg19"), ("matconvnet-new", "vgg16"),
]


@pytest.mark.parametrize("kind,arch", CASES, ids=[f"{k}-{a}" for k, a in CASES])
def test_every_source_matches_torch_forward(kind, arch, truth, images, tmp_path):
    src, preset = write_source(kind, arch, truth[arch], str(tmp_path / "x"))
    out = tmp_path / "out" / "converted.npz"
    info = C.convert(src, out, preset="torchvision" if kind == "safetensors" else None)
    assert info["arch"] == arch and info["layers"] == len(conv_names(arch))
    assert info["source"] == os.path.basename(src)
    assert info["source_format"] == ("caffe-pth" if kind == "caffe-pth" else kind.split("-")[0])
    model = load_vgg(out)
    assert model.source == os.path.basename(src) and model.source_sha256 == C.file_sha256(src)
    assert_matches_torch(out, arch, truth[arch], preset, images)


def test_avg_pooling_matches_torch(truth, images, tmp_path):
    src, preset = write_source("torchvision", "vgg16", truth["vgg16"], str(tmp_path / "x"))
    C.convert(src, tmp_path / "w.npz")
    assert_matches_torch(tmp_path / "w.npz", "vgg16", truth["vgg16"], preset, images, pooling="avg")


def test_converted_arrays_are_exact_and_head_dropped(truth, tmp_path):
    src, _ = write_source("keras-2016-full", "vgg19", truth["vgg19"], str(tmp_path / "x"))
    C.convert(src, tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz", allow_pickle=False) as z:
        assert not any(k.startswith(("fc", "classifier", "predictions")) for k in z.files)
        for name, (k, b) in truth["vgg19"].items():
            np.testing.assert_array_equal(z[f"{name}/kernel"], k)
            np.testing.assert_array_equal(z[f"{name}/bias"], b)


# ------------------------------------------------------------------------------------------- detection


@pytest.mark.parametrize("kind,expected", [
    ("keras-2016-notop", "keras"), ("torchvision", "torch"), ("gatys-legacy", "torch"),
    ("safetensors", "safetensors"), ("matconvnet-new", "matconvnet"),
])
def test_auto_detects_from_contents_despite_misleading_extension(kind, expected, truth, tmp_path):
    src, _ = write_source(kind, "vgg16" if kind != "gatys-legacy" else "vgg19",
                          truth["vgg16" if kind != "gatys-legacy" else "vgg19"], str(tmp_path / "x"))
    wrong_ext = {"keras": ".pth", "torch": ".h5", "safetensors": ".mat", "matconvnet": ".safetensors"}[expected]
    renamed = str(tmp_path / ("renamed" + wrong_ext))
    os.rename(src, renamed)
    assert C.detect_format(renamed) == expected
    source = C.read_source(renamed, preset="caffe" if expected in ("torch", "safetensors") else None)
    want_format = {"keras": "keras", "safetensors": "safetensors", "matconvnet": "matconvnet"}.get(
        expected, "gatys" if kind.startswith("gatys") else "caffe-pth")
    assert source.source_format == want_format


def test_torchvision_keys_with_unknown_name_are_ambiguous(truth, tmp_path):
    src = str(tmp_path / "my_vgg.pth")
    write_torch(src, torchvision_state_dict("vgg16", truth["vgg16"]))
    with pytest.raises(WeightsError, match="--preset") as e:
        C.convert(src, tmp_path / "w.npz")
    assert src in str(e.value) and "ambiguous" in str(e.value)
    assert not os.path.exists(tmp_path / "w.npz")
    for preset, fmt in (("caffe", "caffe-pth"), ("torchvision", "torchvision")):
        assert C.convert(src, tmp_path / f"{preset}.npz", preset=preset)["source_format"] == fmt
        assert load_vgg(tmp_path / f"{preset}.npz").preprocess.name == preset
    assert C.read_source(src, format="caffe-pth").preprocess.name == "caffe"
    st = str(tmp_path / "my_vgg.safetensors")
    write_safetensors(st, torchvision_state_dict("vgg16", truth["vgg16"]))
    with pytest.raises(WeightsError, match="--preset"):
        C.read_source(st)


def test_preset_overrides_any_format(truth, tmp_path):
    src, _ = write_source("keras-2016-notop", "vgg16", truth["vgg16"], str(tmp_path / "x"))
    assert C.read_source(src, preset="torchvision").preprocess.name == "torchvision"
    src, _ = write_source("matconvnet-old", "vgg16", truth["vgg16"], str(tmp_path / "x"))
    assert C.read_source(src, preset="gatys").preprocess.name == "gatys"


def test_explicit_format_must_match_contents(truth, tmp_path):
    src, _ = write_source("keras-2016-notop", "vgg16", truth["vgg16"], str(tmp_path / "x"))
    with pytest.raises(WeightsError, match="--format torchvision"):
        C.read_source(src, format="torchvision")
    src, _ = write_source("gatys-zip", "vgg19", truth["vgg19"], str(tmp_path / "x"))
    with pytest.raises(WeightsError, match="--format caffe-pth"):
        C.read_source(src, format="caffe-pth")
    with pytest.raises(UsageError):
        C.read_source(src, format="caffemodel")


# ------------------------------------------------------------------------------------ source validation


def test_wrong_conv_count_and_shape_name_the_key(truth, tmp_path):
    sd = torchvision_state_dict("vgg19", truth["vgg19"])
    del sd["features.34.weight"], sd["features.34.bias"]  # 15 convs: neither VGG19 nor VGG16
    write_torch(tmp_path / "vgg19-dcbb9e9d.pth", sd)
    with pytest.raises(WeightsError, match="15 conv layers"):
        C.read_source(tmp_path / "vgg19-dcbb9e9d.pth")

    sd = torchvision_state_dict("vgg19", truth["vgg19"])
    sd["features.10.weight"] = sd["features.10.weight"][:, :64]
    write_torch(tmp_path / "vgg19-dcbb9e9d.pth", sd)
    with pytest.raises(WeightsError, match=r"features\.10\.weight.*conv3_1") as e:
        C.read_source(tmp_path / "vgg19-dcbb9e9d.pth")
    assert str(tmp_path / "vgg19-dcbb9e9d.pth") in str(e.value)

    sd = torchvision_state_dict("vgg16", truth["vgg16"])
    sd["features.1.running_mean"] = sd["features.0.bias"]  # a batch-norm VGG is not supported
    write_torch(tmp_path / "bn.pth", sd)
    with pytest.raises(WeightsError, match="features.1.running_mean"):
        C.read_source(tmp_path / "bn.pth", preset="torchvision")

    hwio = dict(truth["vgg16"])
    hwio["conv2_1"] = (hwio["conv2_1"][0][:, :, :32], hwio["conv2_1"][1])
    write_keras(tmp_path / "k.h5", "vgg16", hwio, naming="nested")
    with pytest.raises(WeightsError, match="block2_conv1/kernel:0"):
        C.read_source(tmp_path / "k.h5")

    hwio = dict(truth["vgg16"])
    hwio["conv5_1"] = (hwio["conv5_1"][0][:, :, :, :500], hwio["conv5_1"][1])
    write_matconvnet(tmp_path / "m.mat", "vgg16", hwio)
    with pytest.raises(WeightsError, match=r"conv5_1\.weights\{1\}.*\(3, 3, 512, 500\).*\[W,H,in,out\]"):
        C.read_source(tmp_path / "m.mat")

    sd = gatys_state_dict(truth["vgg19"])
    sd["conv3_2.bias"] = sd["conv3_2.bias"] * float("nan")
    write_torch(tmp_path / "vgg_conv.pth", sd)
    with pytest.raises(WeightsError, match="conv3_2.bias.*non-finite"):
        C.read_source(tmp_path / "vgg_conv.pth")


def test_pickled_model_is_refused(tmp_path):
    import torch

    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), tmp_path / "model.pth")
    with pytest.raises(WeightsError, match="weights_only"):
        C.read_source(tmp_path / "model.pth", preset="caffe")


@pytest.mark.parametrize("module,kind,extra", [
    ("torch", "gatys-zip", "torch"), ("scipy.io", "matconvnet-new", "scipy"),
    ("safetensors.numpy", "safetensors", "safetensors"),
])
def test_missing_optional_dependency_says_what_to_install(module, kind, extra, truth, tmp_path, monkeypatch):
    src, _ = write_source(kind, "vgg19", truth["vgg19"], str(tmp_path / "x"))
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(WeightsError, match=rf"pip install 'jaxstyle\[{extra}\]'"):
        C.read_source(src, preset="caffe")


def test_output_checks(truth, tmp_path):
    src, _ = write_source("gatys-zip", "vgg19", truth["vgg19"], str(tmp_path / "x"))
    with pytest.raises(UsageError, match="overwrite the source"):
        C.convert(src, src, overwrite=True)
    before = os.path.getsize(src)
    (tmp_path / "w.npz").write_bytes(b"keep me")
    with pytest.raises(UsageError, match="--force"):
        C.convert(src, tmp_path / "w.npz")
    assert (tmp_path / "w.npz").read_bytes() == b"keep me"
    C.convert(src, tmp_path / "w.npz", overwrite=True)
    assert load_vgg(tmp_path / "w.npz").arch == "vgg19" and os.path.getsize(src) == before


def test_without_an_output_path_it_writes_weights_arch_npz(truth, tmp_path, monkeypatch):
    src, _ = write_source("torchvision", "vgg16", truth["vgg16"], str(tmp_path / "x"))
    monkeypatch.chdir(tmp_path)
    info = C.convert(src)
    assert C.default_output("vgg16") == os.path.join("weights", "vgg16.npz")
    assert os.path.samefile(info["output"], tmp_path / "weights" / "vgg16.npz")
    assert load_vgg(tmp_path / "weights" / "vgg16.npz").arch == "vgg16"


# ---------------------------------------------------------------------------------------------- truncation


def _count_convs(jaxpr) -> int:
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == "conv_general_dilated"
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else (param,):
                sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr (pjit, custom_jvp, ...)
                if hasattr(sub, "eqns"):
                    n += _count_convs(sub)
    return n


@pytest.mark.parametrize("layers,convs", [(["relu1_1"], 1), (["conv2_2", "relu1_2"], 4), (["pool3"], 8),
                                          (["relu5_4"], 16)])
def test_shallow_layers_run_fewer_convs(layers, convs, vgg19_model):
    model = vgg19_model
    jaxpr = jax.make_jaxpr(lambda m, x: extract_features(m, x, layers))(model, np.zeros((1, 32, 32, 3), np.float32))
    assert _count_convs(jaxpr.jaxpr) == convs


# ----------------------------------------------------------------------------------------------------- CLI


def _run_script(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
           "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "convert_weights.py"), *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_cli_help_documents_every_option():
    result = _run_script("--help")
    assert result.returncode == 0, result.stderr
    for option in ("SOURCE", "-o", "--format", "--preset", "--force", "keras", "torchvision", "caffe-pth", "gatys",
                   "matconvnet", "safetensors", "auto"):
        assert option in result.stdout, option


def test_cli_converts_and_refuses_overwrite(truth, tmp_path, capsys):
    # In-process (the subprocess path is covered by --help here and by test_weights_validation).
    from jaxstyle.cli import run_subcommand

    src, _ = write_source("caffe-pth", "vgg16", truth["vgg16"], str(tmp_path / "x"))
    out = tmp_path / "vgg16.npz"
    assert run_subcommand("convert", [src, "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "vgg16" in stdout and "caffe" in stdout and "13" in stdout and C.file_sha256(src) in stdout
    assert load_vgg(out).preprocess.name == "caffe"
    mtime = os.stat(out).st_mtime_ns
    assert run_subcommand("convert", [src, "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and os.stat(out).st_mtime_ns == mtime
    assert run_subcommand("convert", [src, "-o", src, "--force"]) == 2
    err = capsys.readouterr().err
    assert "overwrite the source" in err and len(err.strip().splitlines()) == 1
    assert run_subcommand("convert", [src, "-o", str(out), "--force", "--preset", "torchvision"]) == 0
    assert load_vgg(out).preprocess.name == "torchvision"


# Legitimate variants of each container, from their first bytes alone (the readers are tested on full files
# above; these are the byte-level cases a detector is most easily wrong about).
def _write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _zip(path, names) -> str:
    import zipfile
    with zipfile.ZipFile(path, "w") as z:
        for n in names:
            z.writestr(n, b"x")
    return str(path)


HDF5 = b"\x89HDF\r\n\x1a\n"


@pytest.mark.parametrize("name,data,expected", [
    ("plain.h5", HDF5 + b"\0" * 100, "keras"),
    ("userblock.h5", b"\0" * 512 + HDF5 + b"\0" * 100, "keras"),  # HDF5 with a 512-byte user block
    ("v5.mat", b"MATLAB 5.0 MAT-file, Platform: GLNXA64" + b" " * 100, "matconvnet"),
    ("legacy.pth", b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19" + b"\0" * 50, "torch"),
    ("exact.safetensors", (10).to_bytes(8, "little") + b'{"a": 1}  ', "safetensors"),
    ("ir.onnx", b"\x08\x07\x12\x07pytorch", "onnx"),  # ir_version, then producer_name
    ("graph.onnx", b"\x08\x03\x3a\x05graph", "onnx"),  # ir_version, then the graph
    ("opset.onnx", b"\x08\x08\x42\x04\x0a\x00\x10\x0d", "onnx"),  # ir_version, then opset_import
])
def test_format_variants_are_detected_from_their_bytes(tmp_path, name, data, expected):
    assert C.detect_format(_write(tmp_path / name, data)) == expected


@pytest.mark.parametrize("names", [["archive/data.pkl", "archive/data/0"], ["data.pkl"],
                                   ["vgg/version", "vgg/data.pkl"]])
def test_torch_zip_checkpoints_with_any_top_folder(tmp_path, names):
    assert C.detect_format(_zip(tmp_path / "m.pth", names)) == "torch"


@pytest.mark.parametrize("name,data,needle", [
    ("v73.mat", b"MATLAB 7.3 MAT-file" + b" " * 100, "v7.3"),
    ("long.safetensors", (11).to_bytes(8, "little") + b'{"a": 1}  ', "unknown weights format"),  # header > file
    ("zero.safetensors", (0).to_bytes(8, "little") + b"{}", "unknown weights format"),
    ("p2.pkl", b"\x80\x02}q\x00.", "plain pickle"), ("p3.pkl", b"\x80\x03}q\x00.", "plain pickle"),
    ("p4.pkl", b"\x80\x04}q\x00.", "plain pickle"), ("p5.pkl", b"\x80\x05}q\x00.", "plain pickle"),
    ("empty.pth", b"", "is empty"),
    ("text.pth", b"hello world, not weights", "unknown weights format"),
    ("notonnx.onnx", b"\x08\x80\x12", "unknown weights format"),  # a multi-byte varint is no IR version
])
def test_lookalikes_are_refused_with_the_reason(tmp_path, name, data, needle):
    path = _write(tmp_path / name, data)
    with pytest.raises(WeightsError, match=needle) as e:
        C.detect_format(path)
    assert str(e.value).startswith(path)


def test_zips_that_are_not_torch_checkpoints(tmp_path):
    with pytest.raises(WeightsError, match="numpy .npz archive"):
        C.detect_format(_zip(tmp_path / "a.npz", ["conv1_1/kernel.npy", "meta.npy"]))
    with pytest.raises(WeightsError, match="zip archive that is not a PyTorch checkpoint"):
        C.detect_format(_zip(tmp_path / "b.zip", ["readme.txt", "w.npy"]))
    with pytest.raises(WeightsError, match="unknown weights format"):  # an empty zip has no local header
        C.detect_format(_zip(tmp_path / "c.zip", []))
    with pytest.raises(WeightsError, match="truncated or corrupt zip"):
        C.detect_format(_write(tmp_path / "d.pth", b"PK\x03\x04" + b"\0" * 40))
    with pytest.raises(WeightsError, match="no such file"):
        C.detect_format(tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="is a directory"):
        C.detect_format(tmp_path)
