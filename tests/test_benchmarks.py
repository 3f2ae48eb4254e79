"""The PyTorch side of the benchmarks computes exactly jaxstyle's loss and input gradient (so timings compare
the same work), on a 32 px image with the same random VGG19 read from one .npz by both sides."""

import numpy as np
import pytest
import torch

from benchmarks import common, torch_gatys

SIZE = 32


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    path = common.weights_file(str(tmp_path_factory.mktemp("w")))
    model, problem, _ = common.jax_problem(SIZE, path)
    _, loss = common.torch_problem(SIZE, path)
    return model, problem, loss


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("start", ["noise", "content"])
def test_same_loss_and_input_gradient(both, start):
    model, problem, loss = both
    x = common.init_noise(SIZE) if start == "noise" else np.asarray(problem.content)
    if start == "content":  # perturb so the content term is not exactly zero
        x = np.clip(x + 0.05 * np.random.default_rng(1).standard_normal(x.shape), 0, 1).astype(np.float32)
    value_j, grad_j = common.jax_loss_and_grad(problem.spec)(model, x, problem.targets, problem.weights)
    value_t, grad_t = torch_gatys.loss_and_grad(loss, torch_gatys.to_nchw(x))
    grad_t = grad_t[0].permute(1, 2, 0).numpy()
    assert float(value_j) > 0 and np.linalg.norm(grad_j) > 0
    assert rel_err(float(value_t), float(value_j)) <= 1e-4
    assert rel_err(grad_t, grad_j) <= 1e-4


def test_torch_weights_are_frozen_and_network_truncated(both):
    _, _, loss = both
    assert all(not w.requires_grad and not b.requires_grad for w, b in loss.vgg.convs.values())
    x = torch_gatys.to_nchw(common.init_noise(SIZE)).requires_grad_(True)
    feats = loss.vgg.features(x, ("relu1_1",))
    assert set(feats) == {"relu1_1"} and feats["relu1_1"].shape == (1, 64, SIZE, SIZE)


def test_a_different_loss_is_detected(both):
    """The comparison can fail: changing one normalisation constant on the torch side breaks the match."""
    model, problem, loss = both
    x = common.init_noise(SIZE)
    value_j, _ = common.jax_loss_and_grad(problem.spec)(model, x, problem.targets, problem.weights)
    changed = torch_gatys.GatysLoss(loss.vgg, *common.images(SIZE), style_weight=10.0 * (1 + 1e-3))
    value_t, _ = torch_gatys.loss_and_grad(changed, torch_gatys.to_nchw(x))
    assert rel_err(float(value_t), float(value_j)) > 1e-4
