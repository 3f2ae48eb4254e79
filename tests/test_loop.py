"""The run state machine (jaxstyle.optim.loop) on a toy problem, without VGG: counters, chunk ends,
keep-last-finite, rejection, the while-loop and host loops, and the driver loop's callbacks and stops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.optim import loop
from jaxstyle.optim.optimizers import Optimizer, Update


def descent(rate=0.25, evaluations=1):
    """Gradient descent as an Optimizer: its state counts steps."""
    def step(fun, x, count, budget=1):
        value, grad = jax.value_and_grad(fun)(x)
        return Update(x - rate * grad, count + 1, value, jnp.int32(evaluations), jnp.int32(1))

    return Optimizer("descent", lambda x: jnp.int32(0), step)


def climb():
    """Moves every pixel up by 1 per step, whatever the loss: a run going astray, one step at a time."""
    def step(fun, x, count, budget=1):
        return Update(x + 1.0, count + 1, fun(x), jnp.int32(1), jnp.int32(1))

    return Optimizer("climb", lambda x: jnp.int32(0), step)


def quadratic(x):
    return jnp.sum((x - 1.0) ** 2)


def blows_up_above(limit):
    """A loss that becomes NaN once any pixel exceeds ``limit`` (a run going astray)."""
    return lambda x: jnp.where(jnp.max(x) > limit, jnp.nan, quadratic(x))


X0 = jnp.zeros((2, 2, 1), jnp.float32)


def test_init_makes_strongly_typed_fresh_state_buffers():
    weak = Optimizer("weak", lambda x: (jnp.asarray(0), x), None)
    s = loop.init(weak, X0)
    assert not s.opt_state[0].weak_type and s.opt_state[0].dtype == jnp.int32
    assert s.opt_state[1] is not s.x  # its own buffer: drivers donate the optimiser state, never the image


def test_init_starts_at_the_image_with_zero_counters():
    s = loop.init(descent(), X0)
    assert np.array_equal(s.x, X0) and np.array_equal(s.x_prev, X0)
    assert (int(s.iteration), int(s.iteration_prev), int(s.stop_at), int(s.evaluations)) == (0, 0, 0, 0)
    assert bool(s.finite) and s.x.dtype == jnp.float32 and int(s.opt_state) == 0
    assert not bool(loop.running(s))  # stop_at 0: nothing to do until a chunk end is set
    assert bool(loop.running(s._replace(stop_at=jnp.int32(1))))
    assert not bool(loop.running(s._replace(stop_at=jnp.int32(1), finite=jnp.bool_(False))))


def test_a_step_advances_x_keeps_the_previous_and_counts():
    s = loop.init(descent(evaluations=3), X0)._replace(stop_at=jnp.int32(5))
    s1, value = loop.step(descent(evaluations=3), quadratic, s)
    assert float(value) == 4.0  # the loss at the step's input
    np.testing.assert_allclose(s1.x, 0.5)  # 0 - 0.25 * 2 * (0 - 1)
    np.testing.assert_allclose(s1.x_prev, 0.0)
    assert (int(s1.iteration), int(s1.iteration_prev), int(s1.evaluations)) == (1, 0, 3)
    assert int(s1.opt_state) == 1 and int(s1.stop_at) == 5 and bool(s1.finite)
    s2, _ = loop.step(descent(evaluations=3), quadratic, s1)
    assert (int(s2.iteration), int(s2.iteration_prev), int(s2.evaluations)) == (2, 1, 6)
    np.testing.assert_allclose(s2.x_prev, 0.5)


def test_a_state_that_is_not_running_keeps_its_image_and_counters():
    s = loop.init(descent(), X0)  # stop_at 0
    s1, _ = loop.step(descent(), quadratic, s)
    np.testing.assert_array_equal(s1.x, X0)
    assert (int(s1.iteration), int(s1.evaluations)) == (0, 0) and bool(s1.finite)


def test_a_non_finite_loss_stops_at_the_last_finite_iterate():
    opt, fun = climb(), blows_up_above(2.5)  # x: 0 -> 1 -> 2 -> 3 (loss NaN at 3)
    s = loop.init(opt, X0)._replace(stop_at=jnp.int32(10))
    for _ in range(3):
        s, value = loop.step(opt, fun, s)
    np.testing.assert_allclose(s.x, 3.0)  # made; its loss is not known yet
    assert float(value) == 4.0 * (2.0 - 1.0) ** 2 and int(s.iteration) == 3
    s, value = loop.step(opt, fun, s)  # evaluates at 3: NaN
    assert np.isnan(float(value)) and not bool(s.finite)
    np.testing.assert_allclose(s.x, 2.0)  # back to the last iterate whose loss was finite
    np.testing.assert_allclose(s.x_prev, 3.0)  # the failing one, to say which term failed
    assert int(s.iteration) == 2 and int(s.evaluations) == 4  # the iterations that made x
    s_again, _ = loop.step(opt, fun, s)
    np.testing.assert_array_equal(s_again.x, s.x)  # stopped for good
    assert int(s_again.evaluations) == 4


def test_reject_stops_a_run_whose_last_iterate_the_caller_found_non_finite():
    s = loop.init(descent(), X0)._replace(stop_at=jnp.int32(3))
    s, _ = loop.step(descent(), quadratic, s)
    kept = loop.reject(s, False)
    assert bool(kept.finite) and np.array_equal(kept.x, s.x) and int(kept.iteration) == 1
    assert int(kept.opt_state) == int(s.opt_state) == 1  # a run that is not rejected goes on with its state
    stopped = loop.reject(s, True)
    assert not bool(stopped.finite) and int(stopped.iteration) == 0
    np.testing.assert_array_equal(stopped.x, X0)
    np.testing.assert_array_equal(stopped.x_prev, s.x)
    assert int(stopped.evaluations) == int(s.evaluations)  # rejecting costs no evaluation


def test_run_chunk_and_host_chunk_agree_and_stop_at_the_chunk_end():
    opt = descent()
    s = loop.init(opt, X0)._replace(stop_at=jnp.int32(3))
    a, values_a = jax.jit(loop.run_chunk, static_argnums=(0, 1, 3))(opt, quadratic, s, 5)
    b, values_b = loop.host_chunk(jax.jit(lambda st: loop.step(opt, quadratic, st)), s, 5)
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(leaf_a), np.asarray(leaf_b), rtol=1e-6)
    assert int(a.iteration) == 3  # stop_at, not max_steps
    np.testing.assert_allclose(values_a[:3], [4.0, 1.0, 0.25])
    assert np.isnan(values_a[3:]).all() and values_b.shape == (5,)
    np.testing.assert_allclose(values_b, values_a)


def test_run_chunks_runs_to_the_end_in_chunks_calling_back_at_each():
    opt = descent()
    step = jax.jit(lambda s: loop.step(opt, quadratic, s))
    seen = []
    for host in (True, False):
        programs = loop.Programs(
            step=step if host else None,
            chunk=jax.jit(lambda s, n: loop.run_chunk(opt, quadratic, s, n), static_argnums=1),
            terms=lambda x: {"total": quadratic(x)},
            reject=loop.reject,
            set_stop=lambda s, stop: s._replace(stop_at=jnp.asarray(stop, jnp.int32)))
        calls = []
        end = loop.run_chunks(programs, loop.init(opt, X0), 7, 3,
                              on_chunk=lambda s, terms, values: calls.append((int(s.iteration), values.shape)))
        assert calls == [(3, (3,)), (6, (3,)), (7, (3,))] and int(end.iteration) == 7
        seen.append(np.asarray(end.x))
    np.testing.assert_allclose(seen[0], seen[1])
    np.testing.assert_allclose(seen[0], 1 - 0.5 ** 7)


def test_run_chunks_stops_when_asked_and_rejects_a_bad_last_iterate():
    opt, fun = climb(), blows_up_above(2.5)
    programs = loop.Programs(step=jax.jit(lambda s: loop.step(opt, fun, s)), chunk=None,
                             terms=lambda x: {"total": fun(x)}, reject=loop.reject,
                             set_stop=lambda s, stop: s._replace(stop_at=jnp.asarray(stop, jnp.int32)))
    # One chunk of 3 ends at x = 3, whose loss only the driver evaluates: rejected, back to 2.
    end = loop.run_chunks(programs, loop.init(opt, X0), 10, 3)
    assert not bool(end.finite) and int(end.iteration) == 2
    np.testing.assert_allclose(end.x, 2.0)
    polls = []
    stopped = loop.run_chunks(programs, loop.init(opt, X0 - 10), 10, 2,
                              should_stop=lambda: polls.append(1) or True)
    assert int(stopped.iteration) == 2 and polls == [1]
    untouched = loop.run_chunks(programs, loop.init(opt, X0), 0, 2)
    assert int(untouched.iteration) == 0
    with_zero_chunk = loop.run_chunks(programs, loop.init(opt, X0 - 10), 2, 0)
    assert int(with_zero_chunk.iteration) == 2  # a chunk of at least one iteration


def test_restart_moves_to_a_new_image_and_keeps_counting():
    opt = descent()
    s = loop.init(opt, X0)._replace(stop_at=jnp.int32(2))
    s, _ = loop.step(opt, quadratic, s)
    big = jnp.full((4, 4, 1), 0.25)
    r = loop.restart(s, big, jnp.asarray(9))  # a weakly typed scalar, as optax's initial states hold
    assert r.x.shape == (4, 4, 1) and np.array_equal(r.x_prev, r.x) and int(r.opt_state) == 9
    # Strongly typed: otherwise the first step after a restart would compile once more (another argument type).
    assert not r.opt_state.weak_type and r.x.dtype == jnp.float32
    assert (int(r.iteration), int(r.iteration_prev), int(r.evaluations)) == (1, 1, 1)


def test_a_batch_of_runs_stops_each_on_its_own():
    opt, fun = climb(), blows_up_above(2.5)
    xs = jnp.stack([X0, X0 - 5.0, X0 + 1.0])
    states = jax.vmap(lambda x: loop.init(opt, x))(xs)._replace(stop_at=jnp.full((3,), 4, jnp.int32))
    step = jax.jit(jax.vmap(lambda s: loop.step(opt, fun, s)))
    states, values = loop.host_chunk(step, states, 6)
    assert values.shape == (3, 6) and np.isnan(values[:, 4:]).all()
    assert np.asarray(states.finite).tolist() == [False, True, False]
    assert np.asarray(states.iteration).tolist() == [2, 4, 1]
    np.testing.assert_allclose(np.asarray(states.x)[:, 0, 0, 0], [2.0, -1.0, 2.0])
