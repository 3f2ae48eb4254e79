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


def write_matconvnet(path, arch: str, hwio: dict, *, layout: str = "new", mean_rgb=(123.68, 116.779, 103.939)):
    """MatConvNet ``imagenet-vgg-verydeep-19.mat`` (MATLAB v5).

    ``layout="new"``: ``layers{i}.weights = {W, b}`` with b ``(out, 1)``, ``meta.normalization.averageImage`` a
    1x1x3 mean pixel. ``layout="old"``: ``layers{i}.filters`` / ``.biases`` with b ``(1, out)``, top-level
    ``normalization.averageImage`` a whole mean image whose per-channel mean is ``mean_rgb``.
    Conv weights are stored ``[W, H, in, out]``.
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
