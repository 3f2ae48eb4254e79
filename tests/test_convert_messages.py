"""Every refusal of the weight converter is one line naming the file, what is wrong and what to do
(``<file>: <problem> — <fix>``, jaxstyle.errors.InputError): checked here word for word for damaged files in the
Gatys, safetensors and MatConvNet layouts, so a message that loses its file, its key or its advice fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jaxstyle.errors import WeightsError
from jaxstyle.nets import convert as C
from weight_files import (gatys_state_dict, random_hwio, remove_large_files, torchvision_state_dict,  # noqa: F401
                          write_matconvnet, write_safetensors, write_torch)


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
