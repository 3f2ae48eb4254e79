"""Every optimiser setting reaches the optimiser, and the optimisers do what their settings say: a history size
that was silently ignored, a learning rate that never arrived or an averaging decay read wrong would pass the
convergence tests (they converge anyway) but not these."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.gatys import StyleConfig
from jaxstyle.gatys import run as gatys_run
from jaxstyle.optim import optimizers as optim

SHAPE = (6, 5, 3)


def rosenbrock_like(x):
    """A smooth non-quadratic loss on an image: L-BFGS's path depends on its history."""
    v = x.reshape(-1)
    return jnp.sum(100.0 * (v[1:] - v[:-1] ** 2) ** 2 + (1.0 - v[:-1]) ** 2) / v.size


def start():
    return jnp.asarray(np.random.default_rng(0).uniform(0.2, 0.8, SHAPE), jnp.float32)


def run(opt, steps, fun=rosenbrock_like, budget=1):
    x, state, values, evals = start(), None, [], 0
    state = opt.init(x)
    step = jax.jit(opt.step, static_argnums=0)
    for _ in range(steps):
        u = step(fun, x, state, budget)
        x, state = u.x, u.opt_state
        values.append(float(u.value))
        evals += int(u.evaluations)
    return np.asarray(x), values, evals


@pytest.mark.parametrize("name", ["lbfgs", "lbfgs-nols"])
def test_lbfgs_history_size_reaches_the_optimiser(name):
    shapes = jax.tree.map(lambda a: a.shape, optim.make_optimizer(name, memory_size=7).init(start()))
    assert shapes[0].diff_params_memory == (7, *SHAPE) and shapes[0].weights_memory == (7,)
    # and changes the path: one pair of history is not ten
    short, _, _ = run(optim.make_optimizer(name, memory_size=1), 8)
    long, _, _ = run(optim.make_optimizer(name, memory_size=10), 8)
    assert np.abs(short - long).max() > 1e-4


def test_scipy_lbfgs_history_size_changes_the_path_and_budget_the_iterations():
    short, _, _ = run(optim.make_optimizer("scipy-lbfgs", memory_size=1), 1, budget=8)
    long, _, _ = run(optim.make_optimizer("scipy-lbfgs", memory_size=10), 1, budget=8)
    assert np.abs(short - long).max() > 1e-4
    opt = optim.make_optimizer("scipy-lbfgs")
    u = jax.jit(opt.step, static_argnums=0)(rosenbrock_like, start(), opt.init(start()), 5)
    assert int(u.iterations) == 5 and int(u.opt_state) == 5 and int(u.evaluations) >= 5
    assert float(u.value) == pytest.approx(float(rosenbrock_like(start())))  # the loss at the step's input


@pytest.mark.parametrize("lr", [0.01, 0.05])
def test_adam_learning_rate_is_the_size_of_its_first_step(lr):
    # Adam's first update is lr * g / (|g| + eps): every pixel moves by lr (none reaches the box here).
    opt = optim.make_optimizer("adam", learning_rate=lr)
    u = opt.step(lambda x: jnp.sum((x - 0.5) ** 3), start(), opt.init(start()))
    moved = np.abs(np.asarray(u.x) - np.asarray(start()))
    np.testing.assert_allclose(moved[np.abs(np.asarray(start()) - 0.5) > 0.01], lr, rtol=1e-3)


def test_adam_projects_into_the_unit_box():
    opt = optim.make_optimizer("adam", learning_rate=0.5)
    u = opt.step(lambda x: jnp.sum(x * jnp.linspace(-1, 1, x.size).reshape(x.shape)), start(), opt.init(start()))
    x = np.asarray(u.x)
    assert x.min() == 0.0 and x.max() == 1.0


def test_zoom_line_search_counts_its_trials_and_respects_its_limit():
    one = optim.make_optimizer("lbfgs", max_linesearch_steps=1)
    _, values_one, evals_one = run(one, 6)
    many = optim.make_optimizer("lbfgs", max_linesearch_steps=30)
    _, values_many, evals_many = run(many, 6)
    assert evals_one <= 6 * 1 + 1  # at most one trial per iteration, plus the first point
    assert evals_many > evals_one  # the Rosenbrock valley needs more trials when they are allowed
    assert values_many[-1] < values_one[0]


def test_unit_step_lbfgs_costs_one_evaluation_per_iteration():
    _, values, evals = run(optim.make_optimizer("lbfgs-nols"), 5)
    assert evals == 5 and len(values) == 5


@pytest.mark.parametrize("decay", [0.5, 0.9])
def test_averaging_keeps_the_bias_corrected_moving_average_with_its_decay(decay):
    opt = optim.make_optimizer("adam", learning_rate=0.05, average=decay)
    assert opt.name == "adam+average"
    x, state, iterates = start(), None, []
    state = opt.init(x)
    assert np.array_equal(np.asarray(optim.output(state, x)), np.asarray(x))  # nothing averaged yet: x itself
    for _ in range(3):
        u = opt.step(lambda v: jnp.sum((v - 0.3) ** 2), x, state)
        x, state = u.x, u.opt_state
        iterates.append(np.asarray(x))
    mean = iterates[0]
    for t, it in enumerate(iterates[1:], start=2):
        mean = mean + (1 - decay) / (1 - decay ** t) * (it - mean)
    np.testing.assert_allclose(np.asarray(optim.output(state, x)), mean, rtol=1e-5, atol=1e-6)
    assert int(state.count) == 3


def test_output_without_averaging_is_the_iterate():
    opt = optim.make_optimizer("lbfgs-nols")
    x = start()
    assert optim.output(opt.init(x), x) is x


def test_rescaling_keeps_adam_moments_and_restarts_lbfgs():
    big = jnp.ones((8, 10, 3), jnp.float32)
    adam = optim.make_optimizer("adam", learning_rate=0.1)
    u = adam.step(lambda v: jnp.sum(v ** 2), start(), adam.init(start()))
    moved = optim.rescale_state(adam, u.opt_state, big)
    assert moved[0].mu.shape == big.shape and int(moved[0].count) == 1
    assert float(jnp.abs(moved[0].mu).min()) > 0  # the moments were resized, not zeroed
    lbfgs = optim.make_optimizer("lbfgs-nols", memory_size=3)
    fresh = optim.rescale_state(lbfgs, lbfgs.init(start()), big)
    assert fresh[0].diff_params_memory.shape == (3, *big.shape) and int(fresh[0].count) == 0
    avg = optim.make_optimizer("adam", average=0.9)
    s = optim.rescale_state(avg, avg.step(lambda v: jnp.sum(v ** 2), start(), avg.init(start())).opt_state, big)
    assert int(s.count) == 0 and s.mean.shape == big.shape and s.inner[0].mu.shape == big.shape
    # the inner optimiser's own rule: Adam's moments resized and its step count kept, not a fresh state
    assert int(s.inner[0].count) == 1 and float(jnp.abs(s.inner[0].mu).min()) > 0
    np.testing.assert_array_equal(np.asarray(s.mean), np.asarray(big))


def test_averaging_passes_the_budget_to_the_inner_optimizer():
    opt = optim.make_optimizer("scipy-lbfgs", average=0.5)
    u = jax.jit(opt.step, static_argnums=0)(rosenbrock_like, start(), opt.init(start()), 4)
    assert int(u.iterations) == 4 and int(u.opt_state.inner) == 4 and int(u.opt_state.count) == 1
    one = opt.step(rosenbrock_like, start(), opt.init(start()))  # the default budget: one iteration
    assert int(one.iterations) == 1


def test_unknown_optimizer_names_the_choices():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'; expected one of lbfgs, lbfgs-nols, adam"):
        optim.make_optimizer("sgd")


@pytest.mark.parametrize("config,check", [
    (StyleConfig(optimizer="lbfgs-nols", lbfgs_memory=4),
     lambda s: s.opt_state[0].diff_params_memory.shape[0] == 4),
    (StyleConfig(optimizer="lbfgs", lbfgs_memory=6),
     lambda s: s.opt_state[0].diff_params_memory.shape[0] == 6 and len(s.opt_state) == 3),
    (StyleConfig(optimizer="adam", average=0.5), lambda s: isinstance(s.opt_state, optim.Averaged)),
    (StyleConfig(optimizer="scipy-lbfgs"), lambda s: s.opt_state.shape == ()),
])
def test_the_run_state_a_config_asks_for(config, check):
    # What a checkpoint of this run must hold: the config's optimiser with its settings.
    assert check(gatys_run.state_template(config, (16, 16, 3)))


def test_the_configured_learning_rate_reaches_the_run():
    a = gatys_run.optimizer_of(StyleConfig(optimizer="adam", learning_rate=0.01))
    b = gatys_run.optimizer_of(StyleConfig(optimizer="adam", learning_rate=0.04))
    fun = lambda v: jnp.sum((v - 0.5) ** 3)
    step_a = np.abs(np.asarray(a.step(fun, start(), a.init(start())).x - start())).max()
    step_b = np.abs(np.asarray(b.step(fun, start(), b.init(start())).x - start())).max()
    assert step_a == pytest.approx(0.01, rel=1e-3) and step_b == pytest.approx(0.04, rel=1e-3)


@pytest.mark.parametrize("config", [
    StyleConfig(optimizer="adam", learning_rate=0.05, average=0.5),
    StyleConfig(optimizer="lbfgs-nols", lbfgs_memory=3),
    StyleConfig(optimizer="lbfgs", lbfgs_memory=4),
], ids=["adam-averaged", "lbfgs-nols-3", "lbfgs-4"])
def test_a_checkpointed_state_of_any_optimizer_resumes_the_uninterrupted_run(model, tmp_path, config):
    # A checkpoint holds the optimiser state of the run's own optimiser with its settings (the default run alone
    # would not show a field read from another optimiser's key, or a history size taken from the defaults).
    from jaxstyle.gatys import run_stylize
    from jaxstyle.io import checkpoint

    rng = np.random.default_rng(1)
    content, style = rng.random((24, 24, 3), np.float32), rng.random((24, 24, 3), np.float32)
    config = dataclasses.replace(config, image_size=24, iterations=6, content_layers=("relu2_1",),
                                 style_layers=("relu1_1", "relu2_1"))
    whole = run_stylize(content, [style], model, config, chunk=3)
    first = run_stylize(content, [style], model, dataclasses.replace(config, iterations=3), chunk=3)
    path = tmp_path / "run.npz"
    checkpoint.save(path, {"run": first.state}, {"history": first.history})
    like = {"run": gatys_run.state_template(config, first.state.x.shape)}
    state = checkpoint.load(path, like)[0]["run"]
    second = run_stylize(content, [style], model, config, chunk=3, resume=state, history=first.history)
    assert second.iterations == 6 and second.evaluations == whole.evaluations
    np.testing.assert_array_equal(second.image, whole.image)


@pytest.mark.parametrize("name,average", [("adam", 0.0), ("lbfgs-nols", 0.0), ("adam", 0.5), ("lbfgs-nols", 0.9)])
def test_apply_from_a_given_gradient_is_the_step(name, average):
    # The tiled driver steps from a loss and gradient it adds up itself (Optimizer.apply); it must be the same
    # update as step's, averaging included, for several steps in a row.
    opt = optim.make_optimizer(name, learning_rate=0.05, average=average)
    assert opt.apply is not None
    x_step = x_apply = start()
    s_step = s_apply = opt.init(start())
    for _ in range(3):
        u = opt.step(rosenbrock_like, x_step, s_step)
        value, grad = jax.value_and_grad(rosenbrock_like)(x_apply)
        v = opt.apply(value, grad, x_apply, s_apply)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
        x_step, s_step, x_apply, s_apply = u.x, u.opt_state, v.x, v.opt_state
    if average:
        assert int(s_apply.count) == 3 and opt.name.endswith("+average")


@pytest.mark.parametrize("name", ["lbfgs", "scipy-lbfgs"])
def test_optimizers_that_evaluate_at_points_of_their_own_have_no_apply(name):
    assert optim.make_optimizer(name).apply is None
    assert optim.make_optimizer(name, average=0.5).apply is None


def test_every_optimizer_is_named_as_asked():
    for name in optim.OPTIMIZERS:
        assert optim.make_optimizer(name).name == name
        assert optim.make_optimizer(name, average=0.5).name == f"{name}+average"


def test_lbfgs_counts_the_evaluations_each_step_makes():
    # The run log's evaluation count per iteration: the zoom line search's trials, plus, on the very first step
    # only, the evaluation at the start (later steps reuse the accepted trial's value and gradient).
    calls = []

    def counted(x):
        jax.debug.callback(lambda: calls.append(1))
        return rosenbrock_like(x)

    opt = optim.make_optimizer("lbfgs")
    step = jax.jit(opt.step, static_argnums=0)
    x, state = start(), opt.init(start())
    for _ in range(3):
        before = len(calls)
        u = step(counted, x, state, 1)
        jax.block_until_ready(u.x)
        assert int(u.evaluations) == len(calls) - before >= 1
        x, state = u.x, u.opt_state
