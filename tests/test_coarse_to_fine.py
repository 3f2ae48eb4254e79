"""Coarse-to-fine stages (--scales / --num-scales), optimiser state carried across sizes, average of iterates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import gatys
from jaxstyle.errors import ConfigError, UsageError
from jaxstyle.optim import optimizers as optim

LAYERS = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))


def test_stage_sizes_and_iterations():
    c = gatys.StyleConfig(scales=(32, 48, 64), scale_iterations=(3, 2, 1))
    assert c.image_size == 64 and c.total_iterations == 6
    stages = gatys.config.stage_configs(c, 64)
    assert [(s.image_size, s.iterations) for s in stages] == [(32, 3), (48, 5), (64, 6)]
    assert gatys.config.stage_sizes(gatys.StyleConfig(image_size=100, num_scales=3), 100) == (25, 50, 100)
    assert gatys.config.stage_configs(gatys.StyleConfig(), 512) == [gatys.StyleConfig()]
    for bad in ({"scales": (64, 32)}, {"scales": (32, 64), "num_scales": 2}, {"num_scales": 2,
                                                                               "scale_iterations": (1,)}):
        with pytest.raises(ConfigError):
            gatys.StyleConfig(**bad)


def test_coarse_to_fine_ends_at_the_requested_size(model):
    # Adam with an average: the moments are carried (resized) and the mean restarted at the second stage; L-BFGS's
    # restart is checked below, without a network.
    rng = np.random.default_rng(0)
    content = rng.uniform(size=(40, 60, 3)).astype(np.float32)
    style = rng.uniform(size=(30, 30, 3)).astype(np.float32)
    config = gatys.StyleConfig(scales=(24, 48), scale_iterations=(3, 2), optimizer="adam", average=0.5,
                               **LAYERS)
    seen = []
    result = gatys.run_stylize(content, [style], model, config, chunk=1,
                               callback=lambda p: seen.append((p.iteration, p.iterations, p.image.shape)))
    assert result.status == "done" and result.iterations == 5 and result.image.shape == (32, 48, 3)
    # The counter goes on across stages; each stage reports at its own size.
    assert seen == [(1, 5, (16, 24, 3)), (2, 5, (16, 24, 3)), (3, 5, (16, 24, 3)), (4, 5, (32, 48, 3)),
                    (5, 5, (32, 48, 3))]


def test_adam_moments_resized_lbfgs_restarted():
    x_small, x_big = jnp.ones((8, 8, 3)), jnp.zeros((16, 16, 3))
    adam = optim.make_optimizer("adam")
    state = jax.jit(lambda x, s: adam.step(lambda v: jnp.sum(v ** 2), x, s).opt_state)(x_small, adam.init(x_small))
    carried = optim.rescale_state(adam, state, x_big)
    mu, nu = carried[0].mu, carried[0].nu
    assert mu.shape == nu.shape == (16, 16, 3) and int(carried[0].count) == 1
    np.testing.assert_allclose(mu, jnp.full((16, 16, 3), float(state[0].mu[0, 0, 0])), rtol=1e-6)
    lbfgs = optim.make_optimizer("lbfgs-nols", memory_size=3)
    s = jax.jit(lambda x, s: lbfgs.step(lambda v: jnp.sum(v ** 2), x, s).opt_state)(x_small, lbfgs.init(x_small))
    fresh = optim.rescale_state(lbfgs, s, x_big)
    assert all(np.all(np.asarray(a) == np.asarray(b)) for a, b in
               zip(jax.tree.leaves(fresh), jax.tree.leaves(lbfgs.init(x_big))))


def test_average_of_iterates_is_the_bias_corrected_ema():
    d = 0.9
    opt = optim.make_optimizer("adam", learning_rate=0.1, average=d)
    x, state, xs = jnp.full((4, 4, 3), 0.8), None, []
    state = opt.init(x)
    step = jax.jit(lambda x, s: opt.step(lambda v: jnp.sum((v - 0.2) ** 2), x, s))
    for _ in range(4):
        u = step(x, state)
        x, state = u.x, u.opt_state
        xs.append(x)
    w = np.array([(1 - d) * d ** (3 - k) for k in range(4)])
    want = sum(wk * np.asarray(xk) for wk, xk in zip(w, xs)) / w.sum()
    np.testing.assert_allclose(np.asarray(optim.output(state, x)), want, rtol=1e-5)


def test_cli_scales_options_and_checkpoint_refusal(tmp_path, capsys):
    from jaxstyle.cli import main

    args = ["stylize", "--content", "c.png", "--style", "s.png", "-o", str(tmp_path / "o.png"), "--weights",
            "random", "--scales", "32,64", "--scale-iterations", "2,1", "--average", "0.9"]
    assert main([*args, "--checkpoint-every", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "coarse-to-fine" in err
    assert main([*args, "--scales", "64,32"]) == 2
    assert "--scales must be increasing" in capsys.readouterr().err


def test_sweep_refuses_stages_and_average(model):
    x = np.zeros((32, 32, 3), np.float32)
    for bad in ({"scales": (16, 32)}, {"average": 0.9}):
        with pytest.raises(UsageError, match="for stylize"):
            gatys.stylize_many(x, x, {"style_weight": np.array([1.0, 2.0])}, model=model,
                               config=gatys.StyleConfig(**bad))
