"""Shared test setup: one persistent XLA compilation cache for the whole run.

The same loss-and-gradient programs are compiled by many tests and by the CLI subprocesses they start; the
cache (inherited by subprocesses through the environment) compiles each once. It lives in .pytest_cache.
"""

import json
import os
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

compilation_cache.enable()


@pytest.fixture(scope="session")
def model():
    """The deterministic random VGG19 (its warning silenced), loaded once for every test that uses it."""
    import jaxstyle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxstyle.RandomWeightsWarning)
        return jaxstyle.load_vgg("random")


def pytest_collection_modifyitems(config, items):
    """Mutation testing: while a mutant's tests run (mutmut sets MUTANT_UNDER_TEST to the mutant's name), run the
    fastest first, by the durations of mutmut's stats pass, so a caught mutant stops (``-x``) at the cheapest test
    that sees it. mutmut's fork runner orders them so; its fork server (our ``process_isolation``) passes them in
    set order. Nothing changes in a normal run."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    try:
        with open("mutmut-stats.json") as f:  # mutmut runs the tests from mutants/, beside its stats
            durations = json.load(f)["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    items.sort(key=lambda item: durations.get(item.nodeid, float("inf")))
