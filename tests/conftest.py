"""Shared test setup: one persistent XLA compilation cache for the whole run.

The same loss-and-gradient programs are compiled by many tests and by the CLI subprocesses they start; the
cache (inherited by subprocesses through the environment) compiles each once. It lives in .pytest_cache.
"""

import json
import os
import re
import time
import warnings

import pytest

os.environ.setdefault(
    "JAXSTYLE_CACHE_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, ".pytest_cache", "jaxstyle-xla"),
)

# The CLI's target cache likewise lives beside the test run, never in the user's ~/.cache.
os.environ.setdefault(
    "JAXSTYLE_TARGET_CACHE",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, ".pytest_cache", "jaxstyle-targets"),
)

# Mutation testing (`make mutation`, docs/testing.md): mutmut's coverage pass sets MUTANT_UNDER_TEST=stats in the
# environment and in its own process. The CLI subprocesses some tests start would inherit the variable, and
# mutmut's recording, which they are not set up for, would fail them; its in-process copy is kept.
if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    del os.environ["MUTANT_UNDER_TEST"]

from jaxstyle.io import compilation_cache  # noqa: E402

# Mutation testing: the seconds of tests (by mutmut's stats pass) one mutant may spend, fastest tests first.
# `make mutation` samples with 30 (docs/testing.md: what it costs and what it misses); `make mutation-all`
# and JAXSTYLE_MUTANT_TEST_BUDGET_S=inf run every test that reaches the mutated function.
MUTANT_TEST_BUDGET_S = float(os.environ.get("JAXSTYLE_MUTANT_TEST_BUDGET_S", "30"))

compilation_cache.enable()


@pytest.fixture(scope="session")
def model():
    """The deterministic random VGG19 (its warning silenced), loaded once for every test that uses it."""
    import jaxstyle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxstyle.RandomWeightsWarning)
        return jaxstyle.load_vgg("random")


# Mutation testing: each core module's own test files, whose tests a mutant of the module runs first (by name, not
# by measurement: where a module's behaviour is checked on purpose, as against every test that happens to call it).
OWN_TESTS = {
    "jaxstyle.objective.losses": ("test_losses", "test_normalization"),
    "jaxstyle.objective.perceptual": ("test_losses", "test_normalization"),
    "jaxstyle.objective.targets": ("test_losses", "test_problem"),
    "jaxstyle.objective.guidance": ("test_guidance", "test_masks"),
    "jaxstyle.objective.tiled": ("test_tiled", "test_tiled_run"),
    "jaxstyle.nets.convert": ("test_convert", "test_convert_messages", "test_onnx", "test_neural_style"),
    "jaxstyle.nets.model": ("test_network", "test_precision", "test_remat"),
    "jaxstyle.nets.precision": ("test_precision", "test_precision_config"),
    "jaxstyle.nets.vgg": ("test_network", "test_remat"),
    "jaxstyle.nets.weights": ("test_weights_validation",),
    "jaxstyle.optim.optimizers": ("test_optimizer_settings", "test_optimize"),
    "jaxstyle.optim.loop": ("test_loop", "test_accelerator_path"),
    "jaxstyle.gatys.config": ("test_style_config",),
    "jaxstyle.gatys.problem": ("test_problem", "test_masks"),
    "jaxstyle.gatys.run": ("test_stylize_api", "test_resume", "test_coarse_to_fine", "test_tiled_run"),
    "jaxstyle.gatys.sweep": ("test_sweep",),
    "jaxstyle.io.checkpoint": ("test_checkpoint", "test_resume"),
    "jaxstyle.io.images": ("test_images",),
    "jaxstyle.io.target_cache": ("test_target_cache",),
    "jaxstyle.colour": ("test_colour",),
    "jaxstyle.atomic": ("test_checkpoint", "test_images"),
}


def pytest_collection_modifyitems(config, items):
    """Mutation testing: while a mutant's tests run (mutmut sets MUTANT_UNDER_TEST to the mutant's name), run its
    module's own tests (``OWN_TESTS``) first, then the others, each group fastest first by the durations of
    mutmut's stats pass, so a caught mutant stops (``-x``) early; and only as many as fit in
    ``MUTANT_TEST_BUDGET_S`` of those durations (at least one). mutmut's fork server (our ``process_isolation``)
    passes them in set order and runs every test that reaches the function, which for a function every run calls
    (the loss, the feature extraction, the config checks) is most of the suite, up to 4 minutes per surviving
    mutant. Nothing changes in a normal run."""
    mutant = _mutant()
    if mutant is None:
        return
    try:
        with open("mutmut-stats.json") as f:  # mutmut runs the tests from mutants/, beside its stats
            durations = json.load(f)["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    own = OWN_TESTS.get(re.split(r"\.x[_ǁ]", mutant)[0], ())

    def key(item):
        return (item.path.stem not in own, durations.get(item.nodeid, float("inf")))

    items.sort(key=key)
    kept, spent = [], 0.0
    for item in items:
        spent += durations.get(item.nodeid, float("inf"))
        if kept and spent > MUTANT_TEST_BUDGET_S:
            break
        kept.append(item)
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=items[len(kept):])
        items[:] = kept


def _mutant() -> str | None:
    name = os.environ.get("MUTANT_UNDER_TEST", "")
    return name if "__mutmut_" in name else None


def pytest_sessionstart(session):
    session.config._mutant_started = time.monotonic()


def pytest_sessionfinish(session, exitstatus):
    """Mutation testing: append what one mutant cost (wall seconds from the start of its test session, tests
    run, pytest's exit status) to ``mutation-times.jsonl`` beside mutmut's results, which mutmut's fork server
    does not time. mutation/report.py --times summarises it."""
    name = _mutant()
    if name is None:
        return
    record = {"mutant": name, "seconds": round(time.monotonic() - session.config._mutant_started, 2),
              "tests": session.testscollected, "status": int(exitstatus)}
    with open("mutation-times.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
