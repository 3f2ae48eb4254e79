"""jaxstyle's fast network and training step against pytorch/examples' (benchmarks/torch_fast.py), same weights."""

import os
import warnings

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jaxstyle  # noqa: E402
from benchmarks.fast_bench import vgg16_file  # noqa: E402
from benchmarks.torch_fast import JohnsonTrainer, TransformerNet, load_jax_params  # noqa: E402
from benchmarks.torch_gatys import TorchVGG  # noqa: E402
from jaxstyle import fast  # noqa: E402
from jaxstyle.fast import config as config_lib, objective, train  # noqa: E402


def nchw(x):
    return torch.tensor(np.transpose(np.asarray(x), (0, 3, 1, 2)).copy())


def perturbed_params(net, seed=0):
    params = fast.init_params(net, seed)
    return jax.tree.map(lambda a: a + 0.2 * jax.random.normal(jax.random.key(a.size), a.shape), params)


@pytest.mark.parametrize("width", [4, 16])  # 16: the residual and upsampling layers go through Winograd
def test_network_matches_pytorch_examples(width):
    net = fast.TransformerNet(width=width, n_residual=2)
    params = perturbed_params(net)
    x = np.random.default_rng(0).random((2, 24, 28, 3)).astype(np.float32)
    ours = np.asarray(net.apply(params, x, np.ones((2, 1), np.float32)))
    ref = load_jax_params(TransformerNet(width=width, n_residual=2), params)(nchw(x)).detach().numpy()
    np.testing.assert_allclose(ours, np.transpose(ref, (0, 2, 3, 1)), rtol=1e-4, atol=1e-4)


def test_one_training_step_matches_pytorch_examples(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vgg = jaxstyle.load_vgg(vgg16_file(), arch="vgg16")
    cfg = config_lib.FastConfig(width=4, n_residual=1, image_size=32, style_size=32, batch_size=2)
    rng = np.random.default_rng(1)
    style = rng.random((32, 32, 3)).astype(np.float32)
    content = (rng.random((2, 32, 32, 3)) * 255).astype(np.uint8)
    obj = objective.make_objective(vgg, [style], cfg)
    net = train.network(cfg, 1)
    state = train.create_state(net, cfg).replace(params=perturbed_params(net))
    state = state.replace(opt_state=train.optimizer(cfg).init(state.params))
    mesh = train.data_mesh(jax.devices()[:1])
    ref_net = load_jax_params(TransformerNet(width=4, n_residual=1), state.params)
    trainer = JohnsonTrainer(ref_net, TorchVGG(vgg16_file()), nchw(style[None]), gain=obj.gain)
    state, metrics = train.compile_step(net, cfg, mesh)(obj, state, train.put_batch(content, np.zeros(2, np.int32), mesh))
    ref_loss = trainer.step(nchw(content.astype(np.float32) / 255))
    assert float(metrics["loss"]) == pytest.approx(ref_loss, rel=1e-4)
    after = np.asarray(state.params["params"]["c1"]["conv"]["kernel"])
    np.testing.assert_allclose(after, np.transpose(ref_net.conv1.conv2d.weight.detach().numpy(), (2, 3, 1, 0)), atol=2e-5)
