"""The persistent target cache: a hit skips both forward passes and is bit-identical to recomputing; anything
the targets depend on changes the key; an unusable entry or directory is a miss, never an error."""

from __future__ import annotations

import dataclasses
import importlib
import os

import jax
import numpy as np
import pytest
from PIL import Image

from jaxstyle.cli import main
from jaxstyle.gatys import StyleConfig, prepare, run_stylize
from jaxstyle.io.target_cache import TargetCache

problem_mod = importlib.import_module("jaxstyle.gatys.problem")

CONFIG = StyleConfig(image_size=32, iterations=3, content_layers=("relu2_2",),
                     style_layers=("relu1_1", "relu2_1", "relu3_1"))


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(3)
    return rng.random((30, 36, 3), np.float32), [rng.random((32, 32, 3), np.float32),
                                                rng.random((28, 40, 3), np.float32)]


@pytest.fixture
def forwards(monkeypatch):
    """Counts the target forward passes prepare runs."""
    calls = {"content": 0, "style": 0}
    content_fn, style_fn = problem_mod._content_targets_jit, problem_mod._style_targets_jit

    def content(*a):
        calls["content"] += 1
        return content_fn(*a)

    def style(*a):
        calls["style"] += 1
        return style_fn(*a)

    monkeypatch.setattr(problem_mod, "_content_targets_jit", content)
    monkeypatch.setattr(problem_mod, "_style_targets_jit", style)
    return calls


def _equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_hit_skips_the_forward_passes_and_equals_recomputing(pictures, model, tmp_path, forwards):
    cache = TargetCache(str(tmp_path))
    fresh = prepare(model, *pictures, CONFIG)
    assert forwards == {"content": 1, "style": 1}
    first = prepare(model, *pictures, CONFIG, cache)  # miss: computes and stores
    assert forwards == {"content": 2, "style": 2} and len(os.listdir(tmp_path)) == 1
    again = prepare(model, *pictures, dataclasses.replace(CONFIG, style_weight=1e4, iterations=9),
                                cache)  # weights and iterations are not part of the targets: a hit
    assert forwards == {"content": 2, "style": 2}
    _equal(first.targets, fresh.targets)
    _equal(again.targets, fresh.targets)
    assert [a.dtype for a in jax.tree.leaves(again.targets)] == [a.dtype for a in jax.tree.leaves(fresh.targets)]


def test_a_run_from_cached_targets_is_bit_identical(pictures, model, tmp_path):
    cache = TargetCache(str(tmp_path))
    plain = run_stylize(*pictures, model, CONFIG, chunk=3)
    miss = run_stylize(*pictures, model, CONFIG, chunk=3, target_cache=cache)
    hit = run_stylize(*pictures, model, CONFIG, chunk=3, target_cache=cache)
    np.testing.assert_array_equal(miss.image, plain.image)
    np.testing.assert_array_equal(hit.image, plain.image)


def test_everything_the_targets_depend_on_changes_the_key(pictures, model):
    cache = TargetCache("unused")
    content, styles = pictures
    base = (model, content, styles, ("relu2_2",), ("relu1_1", "relu2_1"), "float32")
    key = cache.key(*base)
    assert cache.key(*base) == key  # deterministic
    nudged = content.copy()
    nudged[0, 0, 0] = np.nextafter(nudged[0, 0, 0], 2.0)  # one pixel, one ulp
    inner = dict(model.params["params"])
    inner["conv1_1"] = dict(inner["conv1_1"], bias=inner["conv1_1"]["bias"].at[0].add(1e-3))
    params = {"params": inner}
    changed = {
        "content pixel": (model, nudged, styles, *base[3:]),
        "style order": (model, content, styles[::-1], *base[3:]),
        "one style fewer": (model, content, styles[:1], *base[3:]),
        "style mode": (model, None, styles, *base[3:]),
        "content layers": (model, content, styles, ("relu3_1",), *base[4:]),
        "style layers": (model, content, styles, base[3], ("relu1_1",), "float32"),
        "precision": (*base[:5], "bfloat16"),
        "one weight": (model.replace(params=params), *base[1:]),
        "pooling": (model.replace(module=model.module.clone(pooling="avg")), *base[1:]),
    }
    keys = {name: cache.key(*args) for name, args in changed.items()}
    for name, k in keys.items():
        assert k != key, name
    assert len(set(keys.values())) == len(keys)


def test_a_change_to_the_code_that_computes_the_targets_is_a_miss(pictures, model, tmp_path, forwards,
                                                                   monkeypatch):
    """The key holds a digest of jaxstyle's sources: the same code elsewhere gives the same key, an edited Gram
    matrix (or any other edit, or another version) a new one, so a cache filled by other code is never read."""
    import shutil

    from jaxstyle.io import target_cache as tc

    cache = TargetCache(str(tmp_path / "cache"))
    prepare(model, *pictures, CONFIG, cache)  # stored by this code
    assert forwards == {"content": 1, "style": 1}
    copy = tmp_path / "jaxstyle"
    shutil.copytree(tc.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "static"))
    assert tc.code_digest(str(copy)) == tc.code_digest()  # content, not location
    copy = shutil.copytree(copy, tmp_path / "edited" / "jaxstyle")  # (digests are read once per directory)
    losses = copy / "objective" / "losses.py"
    source = losses.read_text()
    assert "def gram_matrix(" in source
    losses.write_text(source.replace("def gram_matrix(", "def gram_matrix_unused(", 1) + "\n"
                      "def gram_matrix(features):\n    return 2 * gram_matrix_unused(features)\n")
    assert tc.code_digest(str(copy)) != tc.code_digest()
    monkeypatch.setattr(tc, "PACKAGE_DIR", str(copy))
    prepare(model, *pictures, CONFIG, cache)
    assert forwards == {"content": 2, "style": 2}  # a miss: recomputed
    monkeypatch.setattr(tc, "__version__", "0.0.0-other")  # another version of the same code
    monkeypatch.setattr(tc, "_CODE_DIGESTS", {})
    prepare(model, *pictures, CONFIG, cache)
    assert forwards == {"content": 3, "style": 3}


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "wrong layers", "wrong content layers", "non-finite",
                                    "wrong dtype"])
def test_an_unusable_entry_is_a_miss_and_is_replaced(pictures, model, tmp_path, forwards, damage):
    cache = TargetCache(str(tmp_path))
    good = prepare(model, *pictures, CONFIG, cache)
    (path,) = [tmp_path / n for n in os.listdir(tmp_path)]
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "not a zip":
        path.write_text("hello")
    else:
        with np.load(path) as z:
            arrays = dict(z)
        name = "grams/relu1_1"
        if damage == "wrong layers":
            arrays["grams/relu9_9"] = arrays.pop(name)
        elif damage == "wrong content layers":
            arrays["content/relu9_9"] = arrays.pop(f"content/{CONFIG.content_layers[0]}")
        elif damage == "non-finite":
            arrays[name][0, 0, 0] = np.nan
        else:
            arrays[name] = arrays[name].astype(np.float64)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    calls = dict(forwards)
    again = prepare(model, *pictures, CONFIG, cache)  # no exception: recomputed
    assert forwards["style"] == calls["style"] + 1
    _equal(again.targets, good.targets)
    _, grams = cache.load(path.stem, CONFIG.content_layers, CONFIG.style_layers, 2)  # and stored again, intact
    np.testing.assert_array_equal(grams["relu1_1"], np.asarray(good.targets.grams["relu1_1"]))


def test_an_unusable_directory_never_stops_a_run(pictures, model, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("JAXSTYLE_TARGET_CACHE", str(blocker / "targets"))
    assert TargetCache.from_env() is None  # cannot be created
    monkeypatch.setenv("JAXSTYLE_TARGET_CACHE", "off")
    assert TargetCache.from_env() is None
    gone = TargetCache(str(blocker / "targets"))  # saving where no directory can be made is swallowed
    problem = prepare(model, *pictures, CONFIG, gone)
    assert problem.targets.grams["relu1_1"].shape == (2, 64, 64)


def test_the_directory_is_trimmed_least_recently_used_first(pictures, model, tmp_path):
    cache = TargetCache(str(tmp_path))
    content, styles = pictures
    prepare(model, content, styles[:1], CONFIG, cache)
    (first,) = os.listdir(tmp_path)
    size = os.path.getsize(tmp_path / first)
    os.utime(tmp_path / first, (1, 1))  # the oldest
    cache.max_bytes = int(size * 1.5)  # room for one entry of this size
    prepare(model, content, styles[1:], CONFIG, cache)
    assert first not in os.listdir(tmp_path) and len(os.listdir(tmp_path)) == 1


def test_cli_reuses_targets_and_can_be_told_not_to(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    paths = []
    for name in ("c.png", "s.png"):
        paths.append(str(tmp_path / name))
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(paths[-1])
    store = tmp_path / "targets"
    monkeypatch.setenv("JAXSTYLE_TARGET_CACHE", str(store))
    common = ["stylize", "--content", paths[0], "--style", paths[1], "--image-size", "32", "--iterations", "2",
              "--weights", "random", "--content-layers", "relu2_2", "--style-layers", "relu1_1,relu2_1", "-q"]
    assert main([*common, "--no-target-cache", "-o", str(tmp_path / "out_a.png")]) == 0
    assert not store.exists() or not os.listdir(store)
    assert main([*common, "-o", str(tmp_path / "out_b.png")]) == 0
    assert len(os.listdir(store)) == 1
    assert main([*common, "-o", str(tmp_path / "out_c.png")]) == 0  # from the cache
    assert len(os.listdir(store)) == 1
    a, b, c = (np.asarray(Image.open(tmp_path / f"out_{n}.png")) for n in "abc")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    capsys.readouterr()


def test_entries_describe_themselves_and_weight_digests_are_hashed_once(pictures, model, tmp_path, monkeypatch):
    from jaxstyle.io import checkpoint

    cache = TargetCache(str(tmp_path))
    prepare(model, *pictures, CONFIG, cache)
    (path,) = [tmp_path / n for n in os.listdir(tmp_path)]
    assert checkpoint.load(str(path))[1] == {"kind": "jaxstyle targets"}  # what `checkpoint describe` shows
    tc = importlib.import_module("jaxstyle.io.target_cache")
    hashed, real = [], tc._update
    monkeypatch.setattr(tc, "_update", lambda h, a: (hashed.append(1), real(h, a))[1])
    monkeypatch.setattr(tc, "_DIGESTS", {})
    digest = tc.weights_digest(model)
    assert len(hashed) == len(jax.tree_util.tree_leaves(model.params)) and len(digest) == 40
    assert tc.weights_digest(model) == digest and len(hashed) == len(jax.tree_util.tree_leaves(model.params))


def test_the_default_directory_is_the_users_cache(tmp_path, monkeypatch):
    # Without JAXSTYLE_TARGET_CACHE the CLI's targets go beside the compilation cache: $XDG_CACHE_HOME/jaxstyle/targets.
    monkeypatch.delenv("JAXSTYLE_TARGET_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = TargetCache.from_env()
    assert cache.path == str(tmp_path / "jaxstyle" / "targets") and os.path.isdir(cache.path)
