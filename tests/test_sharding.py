"""stylize_many sharded over several devices: 4 CPU devices forced with XLA_FLAGS in a subprocess.

The flag must be set before jax is imported, so the work runs in a child Python; it prints one JSON object that
the tests below check. Sharded vs unsharded (a 1-device mesh) are different programs, so "equal" is max abs
pixel difference <= 1e-4 with average pooling, as in test_sweep.py (which says why not max pooling).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

DEVICES = 4
TOL = 1e-4

CHILD = textwrap.dedent("""
    import dataclasses, json, warnings
    import numpy as np
    import jax
    from jaxstyle.io import compilation_cache
    compilation_cache.enable()
    from jaxstyle import load_vgg
    from jaxstyle.gatys.sweep import DEFAULT_CONFIG, stylize_many

    warnings.simplefilter("ignore")
    model = load_vgg("random")
    rng = np.random.default_rng(0)
    content = rng.random((28, 32, 3), np.float32)
    style = rng.random((32, 32, 3), np.float32)
    config = dataclasses.replace(DEFAULT_CONFIG, image_size=32, iterations=4, content_layers=("relu2_2",),
                                 style_layers=("relu1_1", "relu2_1"), pooling="avg")
    five = {"style_weight": [10.0, 100.0, 30.0, 10.0, 50.0], "tv_weight": [0.0, 1e-3, 0.0, 1e-2, 1e-3],
            "seed": [0, 1, 2, 3, 4]}
    four = {k: v[:4] for k, v in five.items()}
    one_device = jax.make_mesh((1,), ("runs",), devices=jax.devices()[:1])
    unsharded = stylize_many(content, style, four, model=model, config=config, mesh=one_device, chunk=4)
    sharded = stylize_many(content, style, four, model=model, config=config, chunk=4)  # default: all devices
    padded = stylize_many(content, style, five, model=model, config=config, chunk=4)

    def layout(r):
        s = r.x.sharding
        return {"spec": [list(p) if isinstance(p, tuple) else p for p in s.spec], "axis_names": list(s.mesh.axis_names),
                "mesh_devices": int(s.mesh.size), "shape": list(r.x.shape),
                "shards": sorted([[d.id, list(sh.data.shape)] for sh in r.x.addressable_shards
                                  for d in [sh.device]])}

    print(json.dumps({
        "device_count": jax.device_count(),
        "sharded_vs_unsharded": float(np.abs(sharded.images - unsharded.images).max()),
        "runs_differ": float(np.abs(sharded.images[0] - sharded.images[1]).max()),
        "padded_vs_sharded": float(np.abs(padded.images[:4] - sharded.images).max()),
        "padded_images_shape": list(padded.images.shape), "padded": padded.padded,
        "padded_terms": {k: len(v) for k, v in padded.terms.items()},
        "padded_status": padded.status, "padded_iterations": padded.iterations.tolist(),
        "padded_style_weight": padded.settings["style_weight"].tolist(),
        "layout_sharded": layout(sharded), "layout_padded": layout(padded), "layout_unsharded": layout(unsharded),
    }))
""")


@pytest.fixture(scope="module")
def child():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={DEVICES}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_child_sees_the_forced_devices(child):
    assert child["device_count"] == DEVICES


def test_sharded_equals_unsharded(child):
    assert child["sharded_vs_unsharded"] <= TOL
    assert child["runs_differ"] > 0.01  # the runs really are different settings


def test_k_not_a_multiple_of_the_device_count_is_padded_and_the_padding_dropped(child):
    assert child["padded"] == 3  # 5 runs on 4 devices: 8 lanes, 3 repeats of the last setting
    assert child["padded_images_shape"] == [5, 28, 32, 3]
    assert child["padded_terms"] == {"content": 5, "style": 5, "tv": 5, "total": 5}
    assert child["padded_status"] == ["done"] * 5 and child["padded_iterations"] == [4] * 5
    assert child["padded_style_weight"] == [10.0, 100.0, 30.0, 10.0, 50.0]
    assert child["padded_vs_sharded"] <= TOL  # the first four runs are unaffected by the fifth and the padding


def test_output_is_sharded_over_the_mesh_axis(child):
    for name, lanes in (("layout_sharded", 4), ("layout_padded", 8)):
        layout = child[name]
        assert layout["axis_names"] == ["runs"] and layout["mesh_devices"] == DEVICES
        assert layout["spec"][0] in ("runs", ["runs"])  # the leading (run) axis is split over the mesh axis
        assert layout["shape"][0] == lanes
        assert [d for d, _ in layout["shards"]] == list(range(DEVICES))  # one shard on each device
        assert all(shape[0] == lanes // DEVICES for _, shape in layout["shards"])
    assert child["layout_unsharded"]["mesh_devices"] == 1
