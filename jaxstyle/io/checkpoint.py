"""One pickle-free file format for any named pytree: run checkpoints, the target cache, and (next) trained
networks and training states.

A file is an ``.npz`` archive with one array per leaf, named by the leaf's key path joined with "/"
(``run/opt_state/0/diff_params_memory``, as big_vision names its checkpoints), plus two reserved entries:
``__format__`` (this format's name and version) and ``__metadata__`` (JSON: whatever the writer needs to say
about the tree, such as the run's configuration). It is written atomically (temp file, fsync, rename), so a
crash leaves the previous file or the new one, and read with ``allow_pickle=False``.

Reading is against a template (``like``: the tree itself, or its ``jax.ShapeDtypeStruct`` s from
``jax.eval_shape``): the file must hold exactly the template's names, each with the template's dtype and shape,
and the result has the template's structure. :func:`describe` reads the metadata and the shapes without the
arrays, so a reader can build its template first; without a template :func:`load` returns nested dicts.

Weight files keep their own format (:mod:`jaxstyle.nets.weights`): a fixed, documented layout (``conv1_1/kernel``,
the preprocessing preset, the source's checksum) that converters write and check key by key, and that files
converted by earlier versions keep.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from ..atomic import atomic_write
from ..errors import DAMAGED_ARCHIVE, InputError

FORMAT = "jaxstyle-tree-1"
_FORMAT_KEY, _META_KEY = "__format__", "__metadata__"
_CORRUPT = (*DAMAGED_ARCHIVE, KeyError, ValueError)


class CheckpointError(InputError):
    """A checkpoint file is missing, unreadable, or does not hold the tree asked for (exit status 3)."""


def _key(entry) -> str:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey / FlattenedIndexKey
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    raise TypeError(f"unsupported pytree key {entry!r}")


def names(tree) -> list[str]:
    """The name of every leaf of ``tree`` (its key path joined with "/"), in leaf order."""
    out = ["/".join(_key(p) for p in path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    bad = [n for n in out if not n or n.startswith("__")]
    if bad:
        raise ValueError(f"leaf name {bad[0]!r} is empty or reserved")
    return out


def flatten(tree) -> dict[str, np.ndarray]:
    """``{"a/b/0": array}``: every leaf of ``tree`` by its name."""
    return dict(zip(names(tree), (np.asarray(leaf) for leaf in jax.tree.leaves(tree))))


def save(path, tree, metadata: dict | None = None) -> None:
    """Write ``tree`` (every leaf an array) and the JSON-serialisable ``metadata`` atomically to ``path``."""
    arrays = flatten(tree)
    arrays[_FORMAT_KEY] = np.str_(FORMAT)
    arrays[_META_KEY] = np.str_(json.dumps(metadata or {}, sort_keys=True))
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def _open(path, fix):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(path, "no such checkpoint file", fix)
    z = np.load(path, allow_pickle=False)
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise CheckpointError(path, "not a jaxstyle checkpoint (a single array, not an archive)", fix)
    if _FORMAT_KEY not in z.files or str(z[_FORMAT_KEY]) != FORMAT:
        found = str(z[_FORMAT_KEY]) if _FORMAT_KEY in z.files else "none"
        z.close()
        raise CheckpointError(path, f"not a jaxstyle checkpoint of format {FORMAT} (format: {found})", fix)
    return z


def _reading(path, fix, read):
    """``read(npz)`` with every way a file can be damaged turned into one CheckpointError."""
    try:
        with _open(path, fix) as z:
            return read(z)
    except CheckpointError:
        raise
    except _CORRUPT as e:  # ValueError also covers json.JSONDecodeError and pickled arrays
        detail = " ".join(str(e).split())[:120]
        raise CheckpointError(os.fspath(path), f"not a valid jaxstyle checkpoint, or truncated "
                              f"({type(e).__name__}: {detail})", fix) from None


def _metadata(z) -> dict:
    meta = json.loads(str(z[_META_KEY]))
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a JSON object")
    return meta


def _header(z, name) -> jax.ShapeDtypeStruct:
    with z.zip.open(f"{name}.npy") as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    return jax.ShapeDtypeStruct(shape, dtype)


def describe(path, *, fix: str | None = None) -> tuple[dict, dict[str, jax.ShapeDtypeStruct]]:
    """``(metadata, {name: shape and dtype})`` of a file, without reading its arrays."""
    def read(z):
        return _metadata(z), {n: _header(z, n) for n in z.files if not n.startswith("__")}

    return _reading(path, fix, read)


def load(path, like=None, *, fix: str | None = None):
    """``(tree, metadata)`` from ``path``: the tree in ``like``'s structure, every name, dtype and shape checked;
    without ``like``, nested dicts keyed by the names' parts. Raises :class:`CheckpointError` (one line)."""
    def read(z):
        stored = {n for n in z.files if not n.startswith("__")}
        if like is None:
            return _nested({n: z[n] for n in sorted(stored)}), _metadata(z)
        want = names(like)
        if stored != set(want):
            missing, extra = sorted(set(want) - stored), sorted(stored - set(want))
            raise CheckpointError(path, f"holds other arrays than expected (missing {missing[:3]}, unexpected "
                                  f"{extra[:3]}): another optimiser or settings?", fix)
        leaves = []
        for name, template in zip(want, jax.tree.leaves(like)):
            a, shape, dtype = z[name], tuple(np.shape(template)), np.dtype(template.dtype)
            if a.dtype != dtype or a.shape != shape:
                raise CheckpointError(path, f"{name} is {a.shape} {a.dtype}, expected {shape} {dtype}: another "
                                      "optimiser or settings?", fix)
            leaves.append(a)
        return jax.tree.unflatten(jax.tree.structure(like), leaves), _metadata(z)

    return _reading(path, fix, read)


def _nested(flat: dict) -> dict:
    out: dict = {}
    for name, a in flat.items():
        *parents, leaf = name.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = a
    return out
