"""Every refusal of the weight converter is one line naming the file, what is wrong and what to do
(``<file>: <problem> — <fix>``, jaxstyle.errors.InputError): checked here word for word for damaged files in the
Gatys, safetensors and MatConvNet layouts, so a message that loses its file, its key or its advice fails."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from jaxstyle.errors import UsageError, WeightsError
from jaxstyle.nets import convert as C
from weight_files import (gatys_state_dict, onnx_conv_chain_model, onnx_vgg_model, random_hwio,  # noqa: F401
                          remove_large_files, save_onnx, torchvision_state_dict, write_keras, write_matconvnet,
                          write_safetensors, write_torch)


@pytest.fixture(scope="module")
def hwio():
    return random_hwio("vgg16", seed=3)


def _refusal(path) -> str:
    with pytest.raises(WeightsError) as info:
        C.read_source(str(path))
    return str(info.value)


def test_gatys_layout_with_an_extra_or_missing_key(hwio, tmp_path):
    state = gatys_state_dict(hwio)
    write_torch(tmp_path / "extra.pth", {**state, "conv1_1.running_mean": torch.zeros(64)})
    assert _refusal(tmp_path / "extra.pth") == (f"{tmp_path / 'extra.pth'}: unexpected key 'conv1_1.running_mean' "
                                                "for vgg16 (Gatys layout) — pass an unmodified vgg_conv.pth")
    write_torch(tmp_path / "missing.pth", {k: v for k, v in state.items() if k != "conv5_3.bias"})
    assert _refusal(tmp_path / "missing.pth") == (f"{tmp_path / 'missing.pth'}: missing key 'conv5_3.bias' "
                                                  "for vgg16 (Gatys layout) — pass an unmodified vgg_conv.pth")


def test_gatys_layout_with_a_kernel_that_is_not_oihw(hwio, tmp_path):
    state = gatys_state_dict(hwio)
    state["conv2_1.weight"] = state["conv2_1.weight"].reshape(128, 64, 9)
    write_torch(tmp_path / "vgg_conv.pth", state)
    assert _refusal(tmp_path / "vgg_conv.pth") == (f"{tmp_path / 'vgg_conv.pth'}: key 'conv2_1.weight' has shape "
                                                   "(128, 64, 9), expected OIHW — pass vgg_conv.pth")


def test_damaged_safetensors_file(hwio, tmp_path):
    path = tmp_path / "vgg.safetensors"
    write_safetensors(path, torchvision_state_dict("vgg16", hwio))
    path.write_bytes(path.read_bytes()[: 4096])  # truncated download
    message = _refusal(path)
    assert message.startswith(f"{path}: unreadable safetensors file (") and message.count("\n") == 0
    assert message.endswith(" — download the file again")


def _layer(entries, name):
    return next(e for e in entries if e["name"] == name)


def test_matconvnet_weights_cell_of_the_wrong_size(hwio, tmp_path):
    def three_entries(entries):
        layer = _layer(entries, "conv1_2")
        cell = np.empty((1, 3), dtype=object)
        cell[0, 0], cell[0, 1], cell[0, 2] = layer["weights"][0, 0], layer["weights"][0, 1], np.zeros(1)
        layer["weights"] = cell

    path = tmp_path / "imagenet-vgg-verydeep-16.mat"
    write_matconvnet(path, "vgg16", hwio, edit=three_entries)
    # layers{3}: MATLAB's 1-based index of conv1_2 (conv1_1, relu1_1, conv1_2)
    assert _refusal(path) == (f"{path}: layers{{3}} (conv1_2).weights has 3 entries, expected {{W, b}} — pass an "
                              "unmodified MatConvNet model")


def test_matconvnet_old_layout_without_biases(hwio, tmp_path):
    path = tmp_path / "imagenet-vgg-verydeep-16.mat"
    write_matconvnet(path, "vgg16", hwio, layout="old", edit=lambda entries: _layer(entries, "conv1_1").pop("biases"))
    assert _refusal(path) == (f"{path}: layers{{1}} (conv1_1) has neither 'weights' nor 'filters'/'biases' — pass an "
                              "unmodified MatConvNet model")


def test_matconvnet_layers_out_of_order(hwio, tmp_path):
    def swap(entries):
        a, b = _layer(entries, "conv1_1"), _layer(entries, "conv1_2")
        a["name"], b["name"] = "conv1_2", "conv1_1"

    path = tmp_path / "imagenet-vgg-verydeep-16.mat"
    write_matconvnet(path, "vgg16", hwio, edit=swap)
    assert _refusal(path) == (f"{path}: conv layer names/order differ from vgg16 — pass an unmodified MatConvNet "
                              "model")


# ----------------------------------------------------------------------------------------------- PyTorch files


def test_torch_files_that_are_not_plain_state_dicts(hwio, tmp_path):
    write_torch(tmp_path / "list.pth", [torch.zeros(2)])
    assert _refusal(tmp_path / "list.pth") == (f"{tmp_path / 'list.pth'}: holds a list, not a state_dict — save "
                                               "model.state_dict() rather than the model")
    write_torch(tmp_path / "nested.pth", {"model": {"features.0.weight": torch.zeros(2)}})
    assert _refusal(tmp_path / "nested.pth") == (f"{tmp_path / 'nested.pth'}: entry 'model' is not a tensor (a nested "
                                                 "checkpoint?) — save model.state_dict() on its own")


class Pickled:  # a class instance: torch.load(weights_only=True) must refuse to rebuild it
    pass


def test_torch_file_with_pickled_objects_or_truncated(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"features.0.weight": torch.zeros(2), "extra": Pickled()}, path)
    with pytest.raises(Exception) as reason:  # torch's own words, of which the message keeps the first line
        torch.load(path, weights_only=True)
    first = str(reason.value).strip().splitlines()[0].rstrip()
    assert _refusal(path) == (f"{path}: refused by torch.load(weights_only=True): {first} — save a plain state_dict "
                              "(tensors only)")
    write_torch(tmp_path / "cut.pth", {"features.0.weight": torch.zeros(1000)}, legacy=True)
    (tmp_path / "cut.pth").write_bytes((tmp_path / "cut.pth").read_bytes()[:700])
    message = _refusal(tmp_path / "cut.pth")
    assert message.startswith(f"{tmp_path / 'cut.pth'}: unreadable PyTorch file (")
    assert message.endswith(") — download the file again")


def test_torchvision_layout_with_a_missing_key_or_unknown_keys(hwio, tmp_path):
    state = {k: v for k, v in torchvision_state_dict("vgg16", hwio).items() if k != "features.0.bias"}
    write_torch(tmp_path / "vgg16.pth", state)
    assert _refusal(tmp_path / "vgg16.pth") == (f"{tmp_path / 'vgg16.pth'}: missing key 'features.0.bias' for vgg16 "
                                                "— pass a plain (non batch-norm) torchvision-layout VGG state_dict")
    write_torch(tmp_path / "other.pth", {"layer1.weight": torch.zeros(2), "layer2.weight": torch.zeros(2)})
    assert _refusal(tmp_path / "other.pth") == (
        f"{tmp_path / 'other.pth'}: unrecognised keys (first 'layer1.weight'); expected features.N.weight or "
        "conv1_1.weight — pass a torchvision, Caffe-converted or Gatys VGG state_dict")


# ------------------------------------------------------------------------------------------------ Keras HDF5


def _keras(path, hwio, change=None):
    import h5py

    write_keras(path, "vgg16", hwio)
    if change is not None:
        with h5py.File(path, "r+") as f:
            change(f)
    return path


def _names(*names):
    return np.array([n.encode() for n in names], dtype="S")


def test_keras_files_damaged_in_each_way(hwio, tmp_path):
    def no_layer_names(f):
        del f.attrs["layer_names"]

    def missing_group(f):
        del f["block2_conv1"]

    def extra_layer(f):
        f.attrs["layer_names"] = _names(*[n.decode() for n in f.attrs["layer_names"]], "dense_9")
        f.create_group("dense_9").attrs["weight_names"] = _names("dense_9/kernel:0")

    def three_weights(f):
        f["block1_conv1"].attrs["weight_names"] = _names("block1_conv1_W_1:0", "block1_conv1_b_1:0", "x:0")

    def missing_dataset(f):
        f["block1_conv1"].attrs["weight_names"] = _names("gone_W:0", "block1_conv1_b_1:0")

    def swapped(f):
        names = [n.decode() for n in f.attrs["layer_names"]]
        i, j = names.index("block1_conv1"), names.index("block1_conv2")
        names[i], names[j] = names[j], names[i]
        f.attrs["layer_names"] = _names(*names)

    expected = {
        no_layer_names: "HDF5 file without a 'layer_names' attribute (not a Keras-2 weights file) — pass "
                        "vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5",
        missing_group: "layer 'block2_conv1' is listed in 'layer_names' but missing — download the file again",
        extra_layer: "unexpected layer 'dense_9' with weights ['dense_9/kernel:0'] — pass an unmodified Keras VGG "
                     "weights file",
        three_weights: "layer 'block1_conv1' lists 3 weights ['block1_conv1_W_1:0', 'block1_conv1_b_1:0', 'x:0'], "
                       "expected kernel and bias — pass an unmodified Keras VGG weights file",
        swapped: "layer order differs from vgg16 at 'conv1_2' — pass an unmodified Keras file",
    }
    for change, problem in expected.items():
        path = _keras(tmp_path / f"{change.__name__}.h5", hwio, change)
        assert _refusal(path) == f"{path}: {problem}", change.__name__
    path = _keras(tmp_path / "missing_dataset.h5", hwio, missing_dataset)
    message = _refusal(path)
    assert message.startswith(f"{path}: dataset block1_conv1/'gone_W:0' unreadable (")
    assert message.endswith(") — download the file again")
    path = _keras(tmp_path / "cut.h5", hwio)
    path.write_bytes(path.read_bytes()[:4096])
    message = _refusal(path)
    assert message.startswith(f"{path}: unreadable or truncated HDF5 file (")
    assert message.endswith(") — download the file again")


# ------------------------------------------------------------------------------------------------------ ONNX


def _onnx(path, hwio, change=None, **kwargs):
    model = onnx_vgg_model("vgg16", hwio, style="zoo", hw=(32, 32), **kwargs)
    if change is not None:
        change(model.graph)
    save_onnx(model, path)
    return path


def _first_conv(graph):
    conv = next(n for n in graph.node if n.op_type == "Conv")
    return conv, conv.name or conv.output[0]


def _initializer(graph, name):
    return next(t for t in graph.initializer if t.name == name)


def _set_attribute(node, name, value):
    import onnx

    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    if value is not None:
        node.attribute.append(onnx.helper.make_attribute(name, value))


def test_onnx_conv_nodes_damaged_in_each_way(hwio, tmp_path):
    def no_bias(graph):
        del _first_conv(graph)[0].input[2]

    def computed_weight(graph):
        _first_conv(graph)[0].input[1] = "computed_w"

    def not_oihw(graph):
        _initializer(graph, _first_conv(graph)[0].input[1]).dims[:] = [64, 3, 9]

    def dilated(graph):
        _set_attribute(_first_conv(graph)[0], "dilations", [2, 2])

    path = _onnx(tmp_path / "probe.onnx", hwio)
    import onnx

    conv, label = _first_conv(onnx.load(str(path)).graph)
    expected = {
        no_bias: f"Conv node {label!r} (conv1_1) has no bias — pass an unmodified VGG model",
        computed_weight: f"Conv node {label!r} (conv1_1): weight 'computed_w' is computed, not stored as an "
                         "initializer or Constant — export the model with its weights as constants",
        not_oihw: f"weight {conv.input[1]!r} (conv1_1) has shape (64, 3, 9), expected OIHW — pass an unmodified VGG "
                  "model",
        dilated: f"Conv node {label!r} (conv1_1) is not a 3x3 stride-1 'same' convolution — pass a VGG16 or VGG19 "
                 "ONNX model",
    }
    for change, problem in expected.items():
        path = _onnx(tmp_path / f"{change.__name__}.onnx", hwio, change)
        assert _refusal(path) == f"{path}: {problem}", change.__name__

    def damaged(graph):
        tensor = _initializer(graph, _first_conv(graph)[0].input[1])
        tensor.raw_data = tensor.raw_data[:10]

    path = _onnx(tmp_path / "damaged.onnx", hwio, damaged)
    message = _refusal(path)
    assert message.startswith(f"{path}: tensor of Conv node {label!r} (conv1_1) is damaged (")
    assert message.endswith(") — download or export the file again")


def test_onnx_same_padding_written_as_auto_pad_is_a_vgg_conv(hwio, tmp_path):
    def auto_pad(graph):
        for node in graph.node:
            if node.op_type == "Conv":
                _set_attribute(node, "pads", None)
                _set_attribute(node, "auto_pad", "SAME_UPPER")

    source = C.read_source(str(_onnx(tmp_path / "same.onnx", hwio, auto_pad)), preset="caffe")
    assert source.arch == "vgg16"
    np.testing.assert_array_equal(source.convs["conv1_1"][0], hwio["conv1_1"][0])


def test_onnx_batch_norm_after_any_vgg_conv_is_a_batch_norm_vgg(hwio, tmp_path):
    """One BatchNormalization after conv1_1 only (not after the last conv) still changes the features."""
    def keep_first_batch_norm(graph):
        norms = [n for n in graph.node if n.op_type == "BatchNormalization"]
        for bn in norms[1:]:
            for node in graph.node:
                for k, name in enumerate(node.input):
                    if name == bn.output[0]:
                        node.input[k] = bn.input[0]
            graph.node.remove(bn)

    path = _onnx(tmp_path / "bn.onnx", hwio, keep_first_batch_norm, batch_norm=True)
    assert _refusal(path) == (f"{path}: the graph has BatchNormalization nodes (a batch-norm VGG) — export a plain "
                              "VGG16/VGG19 without batch norm")


def test_onnx_graphs_without_vgg_convs(hwio, tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    scale = [helper.make_tensor(n, TensorProto.FLOAT, [3], [1.0, 1.0, 1.0]) for n in ("s", "b", "m", "v")]
    for nodes, name in (([helper.make_node("Relu", ["x"], ["y"])], "relu"),
                        ([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])], "bn")):
        model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=scale),
                                  opset_imports=[helper.make_opsetid("", 13)], producer_name="pytorch")
        path = tmp_path / f"{name}.onnx"
        save_onnx(model, path)
        assert _refusal(path) == f"{path}: the ONNX graph has no Conv nodes — pass a VGG16 or VGG19 ONNX model"
    path = tmp_path / "five.onnx"
    save_onnx(onnx_conv_chain_model([("conv", 3, 8, 3, 1, 1)] * 1 + [("conv", 8, 8, 3, 1, 1)] * 4), path)
    assert _refusal(path) == (f"{path}: found 5 conv layers (Conv nodes); VGG19 has 16 and VGG16 13 — pass a VGG19 or "
                              "VGG16 weights file")


def test_truncated_onnx_files_say_why_in_one_line(hwio, tmp_path):
    import onnx

    good = _onnx(tmp_path / "good.onnx", hwio).read_bytes()
    for name, data in (("cut.onnx", good[: len(good) // 2]), ("three_bytes.onnx", good[:3])):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(Exception) as reason:
            onnx.load(str(path))
        e = reason.value
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        assert _refusal(path) == (f"{path}: unreadable or truncated ONNX file ({type(e).__name__}: {first}) — "
                                  "download or export the file again"), name


def test_an_output_that_is_a_link_to_the_source_is_refused_even_with_overwrite(hwio, tmp_path):
    src = tmp_path / "vgg16-397923af.pth"
    write_torch(src, torchvision_state_dict("vgg16", hwio))
    link = tmp_path / "link.npz"
    link.symlink_to(src)
    before = src.read_bytes()
    with pytest.raises(UsageError) as info:
        C.convert(str(src), str(link), overwrite=True)
    assert str(info.value) == f"{link}: the output would overwrite the source file — choose another -o path"
    assert src.read_bytes() == before


# ----------------------------------------------------------------------------------------- values and formats


def test_kernels_of_the_wrong_type_shape_or_values(hwio, tmp_path):
    base = torchvision_state_dict("vgg16", hwio)
    cases = {
        "int.pth": ({"features.0.weight": torch.zeros(64, 3, 3, 3, dtype=torch.int32)},
                    "key 'features.0.weight' has dtype int32, expected floating point — pass an unmodified weights "
                    "file"),
        "inf.pth": ({"features.2.bias": torch.full((64,), float("inf"))},
                    "key 'features.2.bias' contains non-finite values — download the file again"),
        "shape.pth": ({"features.0.weight": torch.zeros(64, 3, 5, 3)},
                      "key 'features.0.weight' (conv1_1) has shape (64, 3, 5, 3), expected OIHW (64, 3, 3, 3) — pass "
                      "an unmodified VGG weights file"),
        "bias.pth": ({"features.0.bias": torch.zeros(32)},
                     "key 'features.0.bias' (conv1_1) has shape (32,), expected (64,) — pass an unmodified VGG weights "
                     "file"),
    }
    for name, (change, problem) in cases.items():
        write_torch(tmp_path / name, {**base, **change})
        with pytest.raises(WeightsError) as info:
            C.read_source(str(tmp_path / name), preset="torchvision")
        assert str(info.value) == f"{tmp_path / name}: {problem}", name


def test_the_named_format_must_match_the_keys_and_gatys_in_safetensors_is_named_so(hwio, tmp_path):
    write_torch(tmp_path / "vgg_conv.pth", gatys_state_dict(hwio))
    for fmt in ("torchvision", "caffe-pth"):
        with pytest.raises(WeightsError) as info:
            C.read_source(str(tmp_path / "vgg_conv.pth"), format=fmt)
        assert str(info.value) == (f"{tmp_path / 'vgg_conv.pth'}: --format {fmt} given but the keys are gatys-style — "
                                   "use --format auto or the right --format")
    write_safetensors(tmp_path / "gatys.safetensors", gatys_state_dict(hwio))
    source = C.read_source(str(tmp_path / "gatys.safetensors"))
    assert (source.arch, source.source_format, source.preprocess.name) == ("vgg16", "safetensors", "gatys")


def test_a_missing_optional_dependency_is_named_with_its_install_line(hwio, tmp_path, monkeypatch):
    path = tmp_path / "vgg.safetensors"
    write_safetensors(path, torchvision_state_dict("vgg16", hwio))
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    assert _refusal(path) == (f"{path}: reading this format needs the optional dependency safetensors — pip install "
                              "'jaxstyle[safetensors]'")


def test_a_file_with_a_small_length_prefix_but_no_json_header_is_not_safetensors(tmp_path):
    path = tmp_path / "mystery.bin"
    path.write_bytes((16).to_bytes(8, "little") + b"not json here, just bytes" + bytes(100))
    assert _refusal(path) == (f"{path}: unknown weights format (not HDF5, PyTorch, safetensors, ONNX or MATLAB v5) — "
                              "pass one of the supported sources; --format is one of "
                              f"{', '.join(C.FORMATS)}")


def test_an_unreadable_or_matlab_73_file_is_named_with_the_fix(tmp_path, monkeypatch):
    mat = tmp_path / "vgg.mat"
    mat.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64" + bytes(200))
    assert _refusal(mat) == (f"{mat}: MATLAB v7.3 (HDF5) .mat files are not supported by scipy — re-save it in "
                             "MATLAB with save(..., '-v7') or use another source")
    real_open = open

    def denied(path, *args, **kwargs):  # what a file without read permission gives (the tests may run as root)
        if str(path) == str(mat):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    assert _refusal(mat) == f"{mat}: cannot read (Permission denied) — check the file's permissions"


def test_layers_that_do_not_make_the_architecture_are_not_saved(hwio, tmp_path):
    from jaxstyle.nets import vgg, weights

    convs = dict(hwio)
    del convs["conv5_3"]
    with pytest.raises(WeightsError) as e:
        weights.save_converted(tmp_path / "w.npz", "vgg16", convs, vgg.PRESETS["torchvision"], source="vgg16.pth",
                               source_sha256="", source_format="torchvision")
    assert str(e.value) == "vgg16.pth: converted layers do not match vgg16 (missing ['conv5_3'], extra [])"
    assert not (tmp_path / "w.npz").exists()
