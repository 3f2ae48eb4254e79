"""Summarise a mutmut run (`make mutation`): the score per core module and the surviving mutants.

Reads the per-file results mutmut leaves in ``mutants/**/*.py.meta`` and classifies them with mutmut's own
table (``mutmut.stats.status_by_exit_code``). A mutant counts as *caught* when a test failed on it (killed) or
it made the tests hang past mutmut's limit (timeout, segfault); "no tests" and "survived" count against the
score; mutants not yet checked are left out and reported. Prints a Markdown table for docs/testing.md; with
``--sample``, only the random sample `make mutation` tests (mutation/sample.py) and the total's 95 % interval.

    python mutation/report.py [--sample [FRACTION] | --only mutation/tier1.txt] [--survivors | --diffs] [--json FILE]
    python mutation/report.py --times   # what the mutants cost (tests/conftest.py's mutants/mutation-times.jsonl)
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import json
import math
import pathlib
import sys

from mutmut.stats import status_by_exit_code

CAUGHT = {"killed", "timeout", "segfault", "caught by type check"}
MISSED = {"survived", "no tests"}


def read_results(root: pathlib.Path, only: list[str] | None = None,
                 keep=None) -> dict[str, dict[str, str]]:
    """{module path: {mutant name: status}} from mutmut's meta files under ``root``; with ``only`` (mutmut name
    globs), the mutants matching one of them; with ``keep`` (a predicate on names), those it accepts."""
    results = {}
    for meta in sorted(root.glob("**/*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if only is not None:
            codes = {k: v for k, v in codes.items() if any(fnmatch.fnmatch(k, g) for g in only)}
        if keep is not None:
            codes = {k: v for k, v in codes.items() if keep(k)}
        if codes:
            module = meta.relative_to(root).as_posix().removesuffix(".meta")
            results[module] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return results


def score_table(results: dict[str, dict[str, str]]) -> tuple[list[tuple], tuple]:
    """Per module (and in total): caught, missed, unchecked, score in percent of the checked mutants."""
    rows, total = [], collections.Counter()
    for module, statuses in results.items():
        count = collections.Counter("caught" if s in CAUGHT else "missed" if s in MISSED else "unchecked"
                                    for s in statuses.values())
        total.update(count)
        rows.append((module, count["caught"], count["missed"], count["unchecked"], _percent(count)))
    return rows, ("total", total["caught"], total["missed"], total["unchecked"], _percent(total))


def _percent(count: collections.Counter) -> float | None:
    checked = count["caught"] + count["missed"]
    return 100.0 * count["caught"] / checked if checked else None


def wilson_interval(caught: int, checked: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % for z = 1.96) of a proportion ``caught / checked``, in percent: how far the
    score of a random sample of mutants can be from the score of all of them."""
    if not checked:
        return (0.0, 100.0)
    p, n = caught / checked, checked
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (100.0 * (centre - half), 100.0 * (centre + half))


def _diff(name: str, module: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant  # mutmut's own `mutmut show`

    return get_diff_for_mutant(name, path=module)


def markdown(rows: list[tuple], total: tuple) -> str:
    lines = ["| module | caught | missed | not checked | score |", "|---|---:|---:|---:|---:|"]
    for module, caught, missed, unchecked, score in [*rows, total]:
        shown = "–" if score is None else f"{score:.1f} %"
        lines.append(f"| {module} | {caught} | {missed} | {unchecked} | {shown} |")
    return "\n".join(lines)


def times(path: pathlib.Path) -> str:
    """What the mutants' test runs cost, from the one line per mutant tests/conftest.py appends: how many, their
    wall seconds in total, the median and the slowest, and the tests run per mutant."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not records:
        return f"{path}: no mutant timed"
    seconds = sorted(r["seconds"] for r in records)
    tests = sorted(r["tests"] for r in records)
    slowest = max(records, key=lambda r: r["seconds"])
    caught = sum(r["status"] != 0 for r in records)
    return (f"{len(records)} mutant test runs ({caught} failed a test), {sum(seconds) / 60:.1f} min of tests in all: "
            f"median {seconds[len(seconds) // 2]:.1f} s, slowest {slowest['seconds']:.1f} s ({slowest['mutant']}); "
            f"tests per mutant: median {tests[len(tests) // 2]}, most {tests[-1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path("mutants"))
    parser.add_argument("--only", type=pathlib.Path,
                        help="a file of mutant name globs (mutation/tier1.txt): report those mutants only")
    parser.add_argument("--sample", nargs="?", type=float, const=-1.0, metavar="FRACTION",
                        help="report the random sample `make mutation` tests (mutation/sample.py) only; with a "
                             "FRACTION, that share's sample")
    parser.add_argument("--survivors", action="store_true", help="also list every missed mutant")
    parser.add_argument("--diffs", action="store_true", help="also show each missed mutant's diff")
    parser.add_argument("--json", type=pathlib.Path, help="write {module: {mutant: status}} here")
    parser.add_argument("--times", action="store_true", help="only summarise what the mutants' test runs cost")
    args = parser.parse_args(argv)
    if args.times:
        print(times(args.root / "mutation-times.jsonl"))
        return 0
    only = None
    if args.only:
        only = [line.strip() for line in args.only.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    keep = None
    if args.sample is not None:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        from sample import FRACTION, in_sample

        fraction = FRACTION if args.sample < 0 else args.sample
        keep = lambda name: in_sample(name, fraction)  # noqa: E731
    results = read_results(args.root, only, keep)
    if not results:
        print(f"{args.root}: no mutmut results; run `make mutation` first", file=sys.stderr)
        return 1
    rows, total = score_table(results)
    print(markdown(rows, total))
    if args.sample is not None:
        checked = total[1] + total[2]
        low, high = wilson_interval(total[1], checked)
        print(f"\nsample of {checked + total[3]} mutants, {checked} checked: the core's score is in "
              f"[{low:.1f} %, {high:.1f} %] with 95 % confidence (Wilson interval)")
    if args.survivors or args.diffs:
        for module, statuses in results.items():
            for name, status in statuses.items():
                if status in MISSED:
                    print(f"{status}: {name}")
                    if args.diffs:
                        print(_diff(name, module))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
