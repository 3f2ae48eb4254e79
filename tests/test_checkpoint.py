"""The one pickle-free tree format (jaxstyle.io.checkpoint) on its own: names, round trips, the template checks
and every way a file can be wrong, each a one-line CheckpointError naming the file."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.io import checkpoint
from jaxstyle.io.checkpoint import CheckpointError


def tree():
    return {"run": {"x": np.arange(6, dtype=np.float32).reshape(2, 3),
                    "opt_state": (np.int32(4), [np.ones(2, np.float64), np.zeros((), np.bool_)])},
            "step": np.int64(7)}


def test_names_follow_key_paths_in_leaf_order():
    assert checkpoint.names(tree()) == ["run/opt_state/0", "run/opt_state/1/0", "run/opt_state/1/1", "run/x",
                                        "step"]

    class Adam(NamedTuple):
        mu: np.ndarray
        nu: np.ndarray

    # A NamedTuple's leaves are named by their fields (GetAttrKey).
    assert checkpoint.names({"s": Adam(np.ones(1), np.ones(1))}) == ["s/mu", "s/nu"]


@pytest.mark.parametrize("bad", [{"": np.ones(1)}, {"__format__": np.ones(1)}])
def test_empty_or_reserved_leaf_names_are_refused(bad):
    with pytest.raises(ValueError, match="empty or reserved"):
        checkpoint.names(bad)


def test_flatten_maps_names_to_numpy_arrays():
    flat = checkpoint.flatten({"a": jnp.ones((2,)), "b": [np.int32(3)]})
    assert list(flat) == ["a", "b/0"]
    assert all(isinstance(v, np.ndarray) for v in flat.values())
    np.testing.assert_array_equal(flat["a"], [1.0, 1.0])


def test_round_trip_with_a_template_keeps_structure_values_dtypes_and_metadata(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, tree(), {"optimizer": "adam", "memory": 10})
    like = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), tree())
    got, meta = checkpoint.load(path, like)
    assert meta == {"optimizer": "adam", "memory": 10}
    assert jax.tree.structure(got) == jax.tree.structure(tree())
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(tree())):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)
    # The file is a plain npz: the reserved entries say the format and hold the metadata as JSON.
    with np.load(path, allow_pickle=False) as z:
        assert str(z["__format__"]) == checkpoint.FORMAT
        assert json.loads(str(z["__metadata__"])) == meta


def test_without_a_template_load_returns_nested_dicts_and_no_metadata_is_an_empty_object(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, tree())
    got, meta = checkpoint.load(path)
    assert meta == {}
    assert sorted(got) == ["run", "step"] and sorted(got["run"]) == ["opt_state", "x"]
    assert sorted(got["run"]["opt_state"]) == ["0", "1"] and sorted(got["run"]["opt_state"]["1"]) == ["0", "1"]
    np.testing.assert_array_equal(got["run"]["x"], tree()["run"]["x"])
    assert int(got["step"]) == 7


def test_describe_gives_metadata_shapes_and_dtypes_without_the_arrays(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, tree(), {"k": 1})
    meta, shapes = checkpoint.describe(path)
    assert meta == {"k": 1}
    assert shapes == {"run/x": jax.ShapeDtypeStruct((2, 3), np.float32),
                      "run/opt_state/0": jax.ShapeDtypeStruct((), np.int32),
                      "run/opt_state/1/0": jax.ShapeDtypeStruct((2,), np.float64),
                      "run/opt_state/1/1": jax.ShapeDtypeStruct((), np.bool_), "step": jax.ShapeDtypeStruct((), np.int64)}


def test_a_huge_header_is_refused_alike_by_describe_and_load(tmp_path):
    # numpy writes a format 2.0 header past 64 KiB (a structured dtype with many fields) and, for safety,
    # reads none over 10,000 bytes: both readers turn that into the same one-line error.
    many = np.zeros(2, dtype=[(f"f{i:05d}", np.float32) for i in range(4000)])
    path = tmp_path / "c.npz"
    with pytest.warns(UserWarning, match="format 2.0"):
        checkpoint.save(path, {"m": many})
    for read in (checkpoint.describe, checkpoint.load):
        with pytest.raises(CheckpointError, match="not a valid jaxstyle checkpoint.*Header info length"):
            read(path)


def test_save_is_atomic_and_files_get_the_umask_permissions(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, tree())
    old = os.umask(0o027)
    try:
        checkpoint.save(path, {"a": np.ones(1)})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left beside it
    assert list(checkpoint.load(path)[0]) == ["a"]


def _template():
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), tree())


def test_other_arrays_than_the_template_name_the_missing_and_unexpected(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"run": {"x": np.ones((2, 3), np.float32), "extra": np.ones(1)}, "step": np.int64(1)})
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path, _template(), fix="start afresh")
    msg = str(e.value)
    assert str(path) in msg and "missing ['run/opt_state/0'" in msg and "unexpected ['run/extra']" in msg
    assert "start afresh" in msg and "\n" not in msg


@pytest.mark.parametrize("change", ["shape", "dtype"])
def test_a_leaf_of_another_shape_or_dtype_is_refused(tmp_path, change):
    t = tree()
    t["run"]["x"] = np.zeros((3, 2), np.float32) if change == "shape" else np.zeros((2, 3), np.float64)
    path = tmp_path / "c.npz"
    checkpoint.save(path, t)
    with pytest.raises(CheckpointError, match=r"run/x is \((3, 2|2, 3)\) float(32|64), expected \(2, 3\) float32"):
        checkpoint.load(path, _template())


def _damaged(tmp_path, kind):
    path = tmp_path / "c.npz"
    if kind == "missing":
        return path, "no such checkpoint file"
    if kind == "single array":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
        return path, "a single array, not an archive"
    if kind == "other format":
        np.savez(path, __format__=np.str_("jaxstyle-tree-0"), a=np.ones(1))
        return path, "format: jaxstyle-tree-0"
    if kind == "no format":
        np.savez(path, a=np.ones(1))
        return path, "format: none"
    if kind == "pickled":
        np.savez(path, __format__=np.str_(checkpoint.FORMAT), __metadata__=np.str_("{}"),
                 a=np.array([{"x": 1}], dtype=object))
        return path, "not a valid jaxstyle checkpoint"
    if kind == "metadata not an object":
        np.savez(path, __format__=np.str_(checkpoint.FORMAT), __metadata__=np.str_("[1, 2]"), a=np.ones(1))
        return path, "(ValueError: metadata is not a JSON object)"
    if kind == "truncated":
        checkpoint.save(path, tree())
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "not a valid jaxstyle checkpoint, or truncated"
    raise AssertionError(kind)


KINDS = ["missing", "single array", "other format", "no format", "pickled", "metadata not an object", "truncated"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_damaged_file_is_one_checkpoint_error_naming_it(tmp_path, kind):
    path, needle = _damaged(tmp_path, kind)
    readers = [lambda: checkpoint.load(path, fix="rerun")]
    if kind != "pickled":  # describe reads no arrays, so it cannot see a pickled one (load refuses it)
        readers.append(lambda: checkpoint.describe(path, fix="rerun"))
    for read in readers:
        with pytest.raises(CheckpointError) as e:
            read()
        msg = str(e.value)
        assert msg.startswith(str(path)) and needle in msg and "rerun" in msg and "\n" not in msg
        assert e.value.exit_code == 3


def test_a_pickled_leaf_is_refused_by_load(tmp_path):
    path, _ = _damaged(tmp_path, "pickled")
    with pytest.raises(CheckpointError, match="Object arrays cannot be loaded"):
        checkpoint.load(path)
    assert zipfile.is_zipfile(path)  # the file was read, not replaced


def test_a_pytree_key_of_unknown_kind_is_refused_naming_it():
    class Key:
        def __repr__(self):
            return "Key()"

    class Node:
        def __init__(self, v):
            self.v = v

    jax.tree_util.register_pytree_with_keys(Node, lambda n: (((Key(), n.v),), None), lambda _, ch: Node(*ch))
    with pytest.raises(TypeError, match=r"unsupported pytree key Key\(\)"):
        checkpoint.names({"a": Node(np.ones(1))})


def test_metadata_is_stored_with_sorted_keys_so_equal_runs_write_equal_files(tmp_path):
    checkpoint.save(tmp_path / "a.npz", {"x": np.ones(2)}, {"b": 1, "a": {"d": 2, "c": 3}})
    checkpoint.save(tmp_path / "b.npz", {"x": np.ones(2)}, {"a": {"c": 3, "d": 2}, "b": 1})
    with np.load(tmp_path / "a.npz") as za, np.load(tmp_path / "b.npz") as zb:
        assert str(za["__metadata__"]) == str(zb["__metadata__"]) == '{"a": {"c": 3, "d": 2}, "b": 1}'


def test_a_template_of_other_shapes_is_refused_with_the_name_both_shapes_and_the_fix(tmp_path):
    path = str(tmp_path / "run.npz")
    checkpoint.save(path, {"x": np.zeros((2, 3), np.float32), "n": np.int32(4)})
    like = {"x": jnp.zeros((3, 3), jnp.float32), "n": jnp.int32(0)}
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, like, fix="start the run without --resume")
    assert str(info.value) == (f"{path}: x is (2, 3) float32, expected (3, 3) float32: another optimiser or "
                               "settings? — start the run without --resume")
