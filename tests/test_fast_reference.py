"""jaxstyle's fast network and training step against pytorch/examples' (benchmarks/torch_fast.py), same weights."""

import functools
import os
import warnings

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jaxstyle  # noqa: E402
from benchmarks.fast_bench import vgg16_file  # noqa: E402
from benchmarks.torch_fast import NAMES, JohnsonTrainer, TransformerNet, load_jax_params  # noqa: E402
from benchmarks.torch_gatys import TorchVGG  # noqa: E402
from jaxstyle import fast, xla_options  # noqa: E402
from jaxstyle.fast import config as config_lib, objective, train  # noqa: E402


def nchw(x):
    return torch.tensor(np.transpose(np.asarray(x), (0, 3, 1, 2)).copy())


def perturbed_params(net, seed=0):
    """Initial parameters plus independent noise per leaf (keys drawn per leaf: with one key per leaf size, a
    norm's scale and bias got the same noise, which put an activation 7e-8 from a ReLU's kink, where float32
    evaluations of the gradient legitimately disagree)."""
    params = fast.init_params(net, seed)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    return jax.tree.unflatten(tree, [a + 0.2 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])


@pytest.mark.parametrize("width", [4, 16])  # 16: the residual and upsampling layers go through Winograd
def test_network_matches_pytorch_examples(width):
    net = fast.TransformerNet(width=width, n_residual=2)
    params = perturbed_params(net)
    x = np.random.default_rng(0).random((2, 24, 28, 3)).astype(np.float32)
    ours = np.asarray(jax.jit(net.apply)(params, x, np.ones((2, 1), np.float32)))  # jitted: op by op takes ~20 s
    ref = load_jax_params(TransformerNet(width=width, n_residual=2), params)(nchw(x)).detach().numpy()
    np.testing.assert_allclose(ours, np.transpose(ref, (0, 2, 3, 1)), rtol=1e-4, atol=1e-4)


def torch_kernel_grads(ref):
    """The reference network's kernel gradients, HWIO, keyed by jaxstyle's parameter path."""
    hwio = lambda conv: np.transpose(conv.conv2d.weight.grad.numpy(), (2, 3, 1, 0))  # noqa: E731
    grads = {(name, "conv"): hwio(getattr(ref, conv)) for name, (conv, _) in NAMES.items()}
    for i, block in enumerate(ref.blocks()):
        for conv in ("conv1", "conv2"):
            grads[(f"r{i + 1}", conv, "conv")] = hwio(getattr(block, conv))
    return grads


@pytest.mark.parametrize("width", [4, 16])
@pytest.mark.parametrize("options", ["default", "no_library_fusions"])  # the latter: how the train step compiles
def test_compiled_gradients_match_pytorch_autograd_in_float64(width, options):
    """The gradients training uses, through every fast path (blocked first layer, Winograd, the upsampling
    layers' phase form) and XLA's compilation of their transposes, against float64 autograd of the reference."""
    net = fast.TransformerNet(width=width, n_residual=2)
    params = perturbed_params(net, seed=2)
    rng = np.random.default_rng(0)
    x = rng.random((2, 24, 28, 3)).astype(np.float32)
    probe = rng.normal(size=(2, 24, 28, 3)).astype(np.float32)
    loss = lambda p, x: (net.apply(p, x, np.ones((2, 1), np.float32)) * probe).sum()  # noqa: E731
    compiler_options = xla_options.no_library_fusions() if options == "no_library_fusions" else None
    g_params, g_x = jax.jit(jax.grad(loss, (0, 1)), compiler_options=compiler_options)(params, x)
    ref = load_jax_params(TransformerNet(width=width, n_residual=2), params).double()
    x64 = nchw(x).double().requires_grad_()
    (ref(x64) * nchw(probe).double()).sum().backward()
    want = {"x": np.transpose(x64.grad.numpy(), (0, 2, 3, 1))}
    want.update(torch_kernel_grads(ref))
    got = {"x": np.asarray(g_x)}
    got.update({path: np.asarray(functools.reduce(lambda t, k: t[k], path, g_params["params"])["kernel"])
                for path in want if path != "x"})
    for key, w in want.items():  # float32 against float64: ~1e-5 of the largest element
        assert np.abs(got[key] - w).max() <= 1e-4 * np.abs(w).max(), key


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
    state = train.init_state(net, cfg).replace(params=perturbed_params(net))
    state = state.replace(opt_state=train.optimizer(cfg).init(state.params))
    mesh = train.data_mesh(jax.devices()[:1])
    ref_net = load_jax_params(TransformerNet(width=4, n_residual=1), state.params)
    trainer = JohnsonTrainer(ref_net, TorchVGG(vgg16_file()), nchw(style[None]), gain=obj.gain)
    state, metrics = train.compile_step(net, cfg, mesh)(obj, state, train.put_batch(content, np.zeros(2, np.int32), mesh))
    ref_loss = trainer.step(nchw(content.astype(np.float32) / 255))
    assert float(metrics["loss"]) == pytest.approx(ref_loss, rel=1e-4)
    after = np.asarray(state.params["params"]["c1"]["conv"]["kernel"])
    np.testing.assert_allclose(after, np.transpose(ref_net.conv1.conv2d.weight.detach().numpy(), (2, 3, 1, 0)), atol=2e-5)
