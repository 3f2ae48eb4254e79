"""A persistent cache of the content and style targets, so a re-run on the same images starts at once.

The targets (content features and style Gram matrices) are two truncated VGG forward passes: 335 GFLOP at
512², several seconds on a laptop CPU and most of a warm start (docs/benchmarks.md). Users re-run the same
content and style with other weights, optimisers or iteration counts all the time; the targets of those runs
are identical. The CLI therefore stores them, keyed by everything they depend on:

- the exact network: a digest of every weight (computed once per loaded model) and the module's settings
  (architecture, pooling, preprocessing preset);
- the exact pixels VGG sees: the content and style arrays after resizing and colour handling;
- the layers, the precision policy, the JAX version and the backend (another backend may round differently);
- the code that computes them: jaxstyle's version and a digest of every source file of the package (the
  network, its preprocessing, the precision policy and the Gram matrix live in several modules; hashing them
  all costs milliseconds once per process, and an upgrade or a local edit can never be served stale targets).

A hit is bit-identical to recomputing on the same backend (tested). Entries are :mod:`jaxstyle.io.checkpoint`
files (``content/<layer>``, ``grams/<layer>``); a missing, truncated, foreign or otherwise unusable entry is a miss, never an error, and
so is an unwritable directory. The directory is trimmed to ``max_bytes`` (least recently used first).

Location: ``$JAXSTYLE_TARGET_CACHE``, else ``~/.cache/jaxstyle/targets`` (``$XDG_CACHE_HOME`` respected);
``JAXSTYLE_TARGET_CACHE=off`` (or the CLI's ``--no-target-cache``) disables it.
"""

from __future__ import annotations

import hashlib
import os

import jax
import numpy as np

from . import checkpoint
from .compilation_cache import cache_dir

from .._version import __version__

FORMAT = 3  # bump when the layout of an entry or of the key changes
DEFAULT_MAX_BYTES = 2 << 30
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the jaxstyle package's sources
_DIGESTS: dict = {}  # id(first weight leaf) -> (that leaf, digest): one weights digest per loaded model
_CODE_DIGESTS: dict = {}  # package directory -> digest of its sources (read once per process)


def _update(h, a) -> None:
    a = np.ascontiguousarray(np.asarray(a))
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())


def weights_digest(model) -> str:
    """blake2b of every weight of ``model`` with its path, dtype and shape (memoised per loaded model)."""
    leaves = jax.tree_util.tree_leaves_with_path(model.params)
    first = leaves[0][1] if leaves else None
    hit = _DIGESTS.get(id(first))
    if hit is not None and hit[0] is first:
        return hit[1]
    h = hashlib.blake2b(digest_size=20)
    for path, leaf in leaves:
        h.update(jax.tree_util.keystr(path).encode())
        _update(h, leaf)
    digest = h.hexdigest()
    if len(_DIGESTS) >= 4:
        _DIGESTS.clear()
    _DIGESTS[id(first)] = (first, digest)
    return digest


def code_digest(package_dir: str | None = None) -> str:
    """blake2b of jaxstyle's version and of every ``.py`` file under ``package_dir`` (default: this package),
    by relative path and content, so two copies of the same code agree and any edit changes it."""
    root = package_dir or PACKAGE_DIR
    digest = _CODE_DIGESTS.get(root)
    if digest is None:
        h = hashlib.blake2b(digest_size=20)
        h.update(f"jaxstyle {__version__}|".encode())
        for dirpath, dirnames, files in os.walk(root):
            dirnames.sort()
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(dirpath, name)
                h.update(f"{os.path.relpath(path, root)}|".encode())
                with open(path, "rb") as f:
                    h.update(f.read())
        digest = _CODE_DIGESTS[root] = h.hexdigest()
    return digest


class TargetCache:
    """A directory of cached targets. Every method swallows I/O problems: the cache can only save time."""

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES):
        self.path = path
        self.max_bytes = max_bytes

    @classmethod
    def from_env(cls) -> "TargetCache | None":
        """The CLI's cache: ``$JAXSTYLE_TARGET_CACHE`` or the default directory; None if disabled/unusable."""
        path = cache_dir("JAXSTYLE_TARGET_CACHE", "targets")
        return None if path is None else cls(path)

    def key(self, model, content, styles, content_layers, style_layers, precision) -> str:
        """Everything the targets depend on, hashed. ``content`` may be None (style-only mode)."""
        h = hashlib.blake2b(digest_size=20)
        h.update(f"jaxstyle-targets-{FORMAT}|jax {jax.__version__}|{jax.default_backend()}|".encode())
        h.update(f"code {code_digest()}|".encode())
        h.update(f"{weights_digest(model)}|{model.module!r}|".encode())
        h.update(f"{tuple(content_layers)}|{tuple(style_layers)}|{precision}|".encode())
        if content is None:
            h.update(b"no content|")
        else:
            _update(h, content)
        h.update(f"{len(styles)} styles|".encode())
        for s in styles:
            _update(h, s)
        return h.hexdigest()

    def _file(self, key: str) -> str:
        return os.path.join(self.path, f"{key}.npz")

    def load(self, key: str, content_layers, style_layers, n_styles: int):
        """``(content_features, grams)`` as dicts of numpy arrays, or None on a miss or an unusable entry."""
        path = self._file(key)
        try:
            tree, _ = checkpoint.load(path)
        except checkpoint.CheckpointError:
            return None
        content, grams = tree.get("content", {}), tree.get("grams", {})
        if (set(tree) - {"content", "grams"} or not isinstance(content, dict) or not isinstance(grams, dict)
                or set(content) != set(content_layers) or set(grams) != set(style_layers)):
            return None
        for l, a in content.items():
            if a.dtype != np.float32 or a.ndim != 3 or not np.all(np.isfinite(a)):
                return None
        for l, a in grams.items():
            if (a.dtype != np.float32 or a.ndim != 3 or a.shape[0] != n_styles or a.shape[1] != a.shape[2]
                    or not np.all(np.isfinite(a))):
                return None
        try:
            os.utime(path)  # least-recently-used order for trimming
        except OSError:
            pass
        return content, grams

    def save(self, key: str, content: dict, grams: dict) -> None:
        try:
            os.makedirs(self.path, exist_ok=True)
            checkpoint.save(self._file(key), {"content": content, "grams": grams}, {"kind": "jaxstyle targets"})
            self._trim()
        except OSError:
            pass

    def _trim(self) -> None:
        entries = []
        for name in os.listdir(self.path):
            if name.endswith(".npz"):
                p = os.path.join(self.path, name)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            try:
                os.remove(p)
                total -= size
            except OSError:
                pass
