"""`make mutation`'s per-mutant test selection (tests/conftest.py): while mutmut runs a mutant's tests, the mutated
module's own test files run first, then the rest, each fastest first by mutmut's recorded durations, only as
many as fit in the budget, and each mutant's cost is appended to mutation-times.jsonl; in a normal run nothing
changes. Runs pytest on five trivial tests beside a copy of the conftest, as mutmut does (from the directory
that holds mutmut-stats.json)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DURATIONS = {"tests/test_four.py::test_ten": 10.0, "tests/test_four.py::test_one": 1.0,
             "tests/test_four.py::test_twenty_five": 25.0,  # test_unknown: never timed
             "tests/test_colour.py::test_own": 12.0}  # colour.py's own test file (conftest.OWN_TESTS)


def _pytest(tmp_path, mutant, budget=None):
    (tmp_path / "tests").mkdir(exist_ok=True)
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "tests" / "conftest.py")
    (tmp_path / "tests" / "test_four.py").write_text(
        "".join(f"def test_{name}():\n    pass\n\n\n" for name in ("ten", "one", "twenty_five", "unknown")))
    (tmp_path / "tests" / "test_colour.py").write_text("def test_own():\n    pass\n")
    (tmp_path / "mutmut-stats.json").write_text(json.dumps({"duration_by_test": DURATIONS}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUTANT_UNDER_TEST": mutant}
    env.pop("JAXSTYLE_MUTANT_TEST_BUDGET_S", None)
    if budget is not None:
        env["JAXSTYLE_MUTANT_TEST_BUDGET_S"] = budget
    done = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/test_four.py",
                           "tests/test_colour.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line.split()[0].split("::")[1] for line in done.stdout.splitlines() if " PASSED" in line]


def test_a_mutant_runs_its_modules_tests_then_the_fastest_within_the_budget_and_is_timed(tmp_path):
    ran = _pytest(tmp_path, "jaxstyle.colour.x_grey__mutmut_7")
    assert ran == ["test_own", "test_one", "test_ten"]  # 12 + 1 + 10 <= 30 < 48
    (record,) = [json.loads(line) for line in (tmp_path / "mutation-times.jsonl").read_text().splitlines()]
    assert record["mutant"] == "jaxstyle.colour.x_grey__mutmut_7" and record["tests"] == 3
    assert record["status"] == 0 and 0 <= record["seconds"] < 60


@pytest.mark.parametrize("budget, ran", [
    ("0", ["test_one"]),  # always at least one test
    ("inf", ["test_one", "test_ten", "test_own", "test_twenty_five", "test_unknown"]),  # make mutation-all
])
def test_the_budget_is_set_from_the_environment(tmp_path, budget, ran):
    # A mutant of a module with no own tests here: the fastest first.
    assert _pytest(tmp_path, "jaxstyle.io.images.x__decode__mutmut_2", budget) == ran


@pytest.mark.parametrize("mutant", ["", "stats"])
def test_outside_a_mutant_every_test_runs_in_file_order_untimed(tmp_path, mutant):
    assert _pytest(tmp_path, mutant) == ["test_ten", "test_one", "test_twenty_five", "test_unknown", "test_own"]
    assert not (tmp_path / "mutation-times.jsonl").exists()
