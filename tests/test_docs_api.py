"""The documented API is the real one: every ``jaxstyle.…`` name and every ``jaxstyle/….py`` path written in
README.md or docs/*.md resolves, and no package attribute hides a submodule of the same name (the old
``jaxstyle.stylize`` function hid the ``jaxstyle.stylize`` module, so the documented ``jaxstyle.stylize.total_loss``
raised AttributeError)."""

from __future__ import annotations

import glob
import importlib
import os
import pkgutil
import re
import types

import pytest

import jaxstyle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO, "README.md"), *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]
NAME = re.compile(r"(?<![\w/.-])jaxstyle(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w/.-])jaxstyle/[\w/]+\.py\b")


def _documented(pattern: re.Pattern) -> list[tuple[str, str]]:
    found = set()
    for doc in DOCS:
        with open(doc, encoding="utf-8") as f:
            for name in pattern.findall(f.read()):
                found.add((os.path.relpath(doc, REPO), name))
    return sorted(found)


def resolve(dotted: str):
    """The object ``dotted`` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_docs_name_something():
    names = {n for _, n in _documented(NAME)}
    assert "jaxstyle.load_vgg" in names and len(names) >= 10  # the parser finds what the README shows


@pytest.mark.parametrize("doc, name", _documented(NAME))
def test_every_documented_name_resolves(doc, name):
    try:
        resolve(name)
    except (AttributeError, ModuleNotFoundError) as e:
        pytest.fail(f"{doc} names {name}, which does not resolve: {e}")


@pytest.mark.parametrize("doc, path", _documented(PATH))
def test_every_documented_module_path_exists(doc, path):
    assert os.path.isfile(os.path.join(REPO, path)), f"{doc} names {path}, which does not exist"


def test_no_attribute_hides_a_submodule():
    for info in pkgutil.walk_packages(jaxstyle.__path__, "jaxstyle."):
        parent, _, leaf = info.name.rpartition(".")
        importlib.import_module(info.name)
        attr = getattr(importlib.import_module(parent), leaf)
        assert isinstance(attr, types.ModuleType), f"{parent}.{leaf} is {attr!r}, hiding the module {info.name}"
