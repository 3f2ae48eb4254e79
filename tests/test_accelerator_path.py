"""The GPU/TPU path, run on CPU: ``host_loop=False`` runs each chunk as one compiled ``lax.while_loop`` (the
default off CPU) instead of host-dispatched steps. Both are built from the same step, so they must agree: on the
image (to float rounding: the two programs are fused differently), the iteration and evaluation counts, the
non-finite stop, resuming, and sweeps.

Light settings (32 px, layers up to relu2_1, as in test_optimize) so the extra compilations stay cheap, and average
pooling: max pooling's gradient jumps where two inputs of a window are nearly tied, so a rounding difference
between the two programs can send unit-step L-BFGS elsewhere (measured with max pooling: 0.12 apart after 20
iterations). Even with average pooling, unit-step L-BFGS can amplify a rounding difference once a curvature pair is
ill-conditioned: with the default TV weight of 1, lbfgs-nols is 6e-7 apart after 10 iterations and 0.03 after 20
(2.4e-6 after 20 without TV); adam 2.4e-7, lbfgs 0 after 20. The loop forms are therefore compared over 10
iterations in two chunks. See test_sweep's docstring.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from instrument import Probe, instrumented
from jaxstyle import gatys
from jaxstyle.io.images import load_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIGHT = gatys.StyleConfig(image_size=32, iterations=20, content_layers=("relu2_1",),
                          style_layers=("relu1_1", "relu2_1"), optimizer="lbfgs-nols", pooling="avg")
# The while-loop and the host-dispatched program sum in different orders (measured <= 6e-7, see above).
TOL = 1e-5


@pytest.fixture(scope="module")
def images():
    return (load_image(os.path.join(REPO, "examples", "images", "chelsea.jpg")),
            load_image(os.path.join(REPO, "examples", "images", "starry_night.jpg")))


def run(model, images, config=LIGHT, **kw):
    kw.setdefault("chunk", 10)
    return gatys.run_stylize(images[0], [images[1]], model, config, **kw)


@pytest.mark.parametrize("optimizer", ["lbfgs-nols", "adam", "lbfgs"])
def test_while_loop_equals_host_loop(model, images, optimizer):
    config = dataclasses.replace(LIGHT, optimizer=optimizer, iterations=10)
    device, host = (run(model, images, config, chunk=5, host_loop=h) for h in (False, True))
    assert device.status == host.status == "done"
    assert device.iterations == host.iterations == 10 and device.evaluations == host.evaluations
    assert np.abs(device.image - host.image).max() <= TOL
    np.testing.assert_allclose([h["total"] for h in device.history], [h["total"] for h in host.history], rtol=1e-4)


def test_while_loop_resume_continues_exactly(model, images):
    """10 iterations, then the returned resume state for 10 more: the uninterrupted run's image, bit for bit."""
    whole = run(model, images, host_loop=False)
    first = run(model, images, dataclasses.replace(LIGHT, iterations=10), host_loop=False)
    assert first.state is not None and int(first.state.iteration) == 10
    second = run(model, images, resume=first.state, history=first.history, host_loop=False)
    assert second.iterations == 20 and second.evaluations == whole.evaluations
    np.testing.assert_array_equal(second.image, whole.image)


@pytest.fixture(scope="module")
def probe(model, images):
    p = Probe()
    with instrumented(p):
        yield p


@pytest.mark.parametrize("bad", [8, 10], ids=["mid_chunk", "chunk_boundary"])
def test_while_loop_nan_mid_run_keeps_last_finite_iterate(model, images, probe, bad):
    """As test_optimize's host-loop test: NaN from evaluation bad+1 on (x_bad is the first non-finite iterate)."""
    probe.evals, probe.nan_after = 0, bad + 1
    r = run(model, images, chunk=5, host_loop=False)
    assert r.status == "nonfinite" and r.state is None
    assert np.isfinite(r.image).all()
    assert r.iterations == bad - 1, r.message
    assert f"iteration {bad}" in r.message and f"image of iteration {bad - 1}" in r.message, r.message
    probe.evals, probe.nan_after = 0, None
    reference = run(model, images, dataclasses.replace(LIGHT, iterations=bad - 1), chunk=5, host_loop=False)
    assert reference.status == "done"
    np.testing.assert_array_equal(r.image, reference.image)


def test_while_loop_nan_from_the_start(model, images, probe):
    probe.evals, probe.nan_after = 0, 1
    r = run(model, images, chunk=5, host_loop=False)
    probe.nan_after = None
    assert r.status == "nonfinite" and r.iterations == 0 and "iteration 1" in r.message
    start = gatys.init_image("noise", gatys.prepare(model, images[0], [images[1]], LIGHT).shape, seed=LIGHT.seed)
    np.testing.assert_array_equal(r.image, np.clip(np.asarray(start), 0, 1))


def test_while_loop_sweep_equals_host_loop_sweep_and_stops_runs_alone(model, images):
    # Run 1 overflows (non-finite from its first loss); the others must not notice.
    settings = {"style_weight": [10.0, 3e38, 100.0], "content_weight": [1.0, 3e38, 2.0], "seed": [0, 1, 2]}
    config = dataclasses.replace(LIGHT, iterations=6, pooling="avg")
    kw = dict(model=model, config=config, chunk=3)
    device = gatys.stylize_many(images[0], [images[1]], settings, host_loop=False, **kw)
    host = gatys.stylize_many(images[0], [images[1]], settings, host_loop=True, **kw)
    assert device.status == host.status == ["done", "nonfinite", "done"]
    np.testing.assert_array_equal(device.iterations, host.iterations)
    np.testing.assert_array_equal(device.iterations, [6, 0, 6])
    np.testing.assert_array_equal(device.evaluations, host.evaluations)
    assert np.isfinite(device.images).all()
    assert np.abs(device.images - host.images).max() <= 1e-4
