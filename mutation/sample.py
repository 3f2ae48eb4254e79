"""The random sample of the core's mutants that `make mutation` tests, sized for about an hour on 2 cores.

Testing every mutant of the core (8,634 of them, 2–30 s each on 2 cores) takes most of a day; `make
mutation-all` does that. `make mutation` tests a fixed random sample instead — random mutant sampling, the
standard way to estimate a mutation score at a fraction of the cost (Wong & Mathur 1995; Zhang et al., ISSTA
2013, show a 5–10 % sample predicts the full score within a point or two). A mutant is in the sample when the
BLAKE2b hash of its mutmut name falls below ``FRACTION``: the choice depends on nothing but the name, so it is
uniform over the core (every module is sampled in proportion to its size), independent of whether the tests
catch the mutant, and the same from run to run (a function that did not change keeps its mutants' names). A
smaller fraction's sample is part of every larger one's (the same hash, a lower bar).

Why 5 %: from a fresh start here, the 10 % sample (888 mutants) had tested 706 of its mutants after 68 minutes
(27 of them mutmut's stats and clean-test passes), the costliest still to come (docs/testing.md); 5 % halves the
mutants' part.

Names are enumerated with mutmut's own mutation operators (``mutate_file_contents``) from the files
``[tool.mutmut] only_mutate`` names, so the list exists before mutmut has generated anything.

    python mutation/sample.py [--fraction 0.05] [--count]   # prints one mutant name per line
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import pathlib
import sys
import tomllib

FRACTION = 0.05
ROOT = pathlib.Path(__file__).resolve().parent.parent


def in_sample(name: str, fraction: float = FRACTION) -> bool:
    """Whether mutant ``name`` is in the sample: its BLAKE2b-64 hash, read as a number in [0, 1), is below
    ``fraction``."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < fraction


def core_files(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """The source files ``[tool.mutmut] only_mutate`` selects, relative to ``root``, in a stable order."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    files = sorted(p.relative_to(root) for p in (root / "jaxstyle").rglob("*.py"))
    return [p for p in files if any(fnmatch.fnmatch(p.as_posix(), g) for g in config["only_mutate"])]


def all_mutants(root: pathlib.Path = ROOT) -> list[str]:
    """Every mutant name mutmut generates for the core, as ``mutmut run`` and its results spell them."""
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    names = []
    for path in core_files(root):
        mutated = mutate_file_contents(str(path), (root / path).read_text())
        names += [get_mutant_name(path, name) for name in mutated.mutant_names]
    return names


def sample(names: list[str], fraction: float = FRACTION) -> list[str]:
    return [n for n in names if in_sample(n, fraction)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=FRACTION, help=f"share of the mutants (default {FRACTION})")
    parser.add_argument("--count", action="store_true", help="print the sample's size and the core's instead")
    args = parser.parse_args(argv)
    if not 0.0 < args.fraction <= 1.0:
        parser.error(f"--fraction must be in (0, 1], not {args.fraction}")
    names = all_mutants()
    chosen = sample(names, args.fraction)
    if args.count:
        print(f"{len(chosen)} of {len(names)} mutants ({100.0 * len(chosen) / len(names):.1f} %)")
    else:
        print("\n".join(chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
