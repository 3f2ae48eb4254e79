"""A trained style network as one pickle-free ``.npz`` file, checked completely on load.

Layout (big_vision's flat checkpoints): one float32 array per parameter, keyed by its "/"-joined path under
``params/`` (``params/r1/conv1/conv/kernel``), plus ``meta/json``: a JSON document with the format name and
version, the architecture (styles, width, residual blocks, and the variant fields of imported networks,
:data:`jaxstyle.fast.net.VARIANTS`), the style names, the full training configuration and
the provenance (loss-network weights and digest, dataset, steps, jaxstyle version, date). Read with
``allow_pickle=False``; every key, shape, dtype and value is checked against the architecture the metadata names,
so a wrong, damaged or foreign file is a one-line :class:`ModelFileError`, never a traceback.
"""

from __future__ import annotations

import json
import os
import zipfile

import jax
import numpy as np

from ..atomic import atomic_write
from ..errors import InputError
from .net import NUMBERS, VARIANTS, FastModel, TransformerNet, initial_params, variant_fields

FORMAT = "jaxstyle-fast-style-network"
# Version 2 adds the variant fields (imported networks). A network with the default variant is still written as
# version 1, readable by every jaxstyle; a variant one as 2, which older jaxstyles refuse rather than run wrongly.
FORMAT_VERSION = 2
SIZES = ("n_styles", "width", "n_residual")
META_KEY = "meta/json"
PREFIX = "params/"


class ModelFileError(InputError):
    """A style-network file is missing, unreadable, damaged, or not one of ours."""


def architecture(net: TransformerNet) -> dict:
    """The sizes, and each variant field whose value is not the default (so jaxstyle's own networks are
    described exactly as before the variants existed)."""
    arch = {"name": "johnson2016", **{k: getattr(net, k) for k in SIZES}}
    return arch | variant_fields(net)


def key_paths(tree) -> list[str]:
    """The file key of every leaf, in ``jax.tree.leaves`` order: ``params/`` + the "/"-joined dict keys."""
    return [PREFIX + "/".join(str(k.key) for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def flatten(params) -> dict[str, np.ndarray]:
    return dict(zip(key_paths(params), (np.asarray(a, np.float32) for a in jax.tree.leaves(params))))


def save_model(path, model: FastModel) -> None:
    """Write ``model`` atomically (the previous file, if any, stays intact until the new one is complete)."""
    arch = architecture(model.net)
    version = 1 if set(arch) == {"name", *SIZES} else FORMAT_VERSION
    meta = {**model.meta, "format": FORMAT, "format_version": version, "architecture": arch}
    arrays = flatten(model.params)
    arrays[META_KEY] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def _read_meta(path: str, data) -> dict:
    if META_KEY not in data.files:
        raise ModelFileError(path, "not a jaxstyle style network (no meta/json entry)",
                             "pass a file written by `jaxstyle train`")
    try:
        meta = json.loads(np.asarray(data[META_KEY], np.uint8).tobytes().decode())
    except (ValueError, UnicodeDecodeError):
        raise ModelFileError(path, "damaged metadata (meta/json is not valid JSON)", "re-train or re-copy it")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(path, f"not a jaxstyle style network (format {meta.get('format')!r})"
                             if isinstance(meta, dict) else "damaged metadata", "pass a file from `jaxstyle train`")
    if meta.get("format_version") not in (1, FORMAT_VERSION):
        raise ModelFileError(path, f"format version {meta.get('format_version')} is not supported "
                                   f"(this jaxstyle reads versions 1 and {FORMAT_VERSION})", "upgrade jaxstyle")
    return meta


def _net_from(path: str, arch, version: int) -> TransformerNet:
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")

    ok = (isinstance(arch, dict) and arch.get("name") == "johnson2016"
          and all(isinstance(arch.get(k), int) and arch[k] >= (0 if k == "n_residual" else 1) for k in SIZES)
          and set(arch) <= {"name", *SIZES, *((*VARIANTS, *NUMBERS) if version > 1 else ())}
          and all(arch[k] in VARIANTS[k] for k in VARIANTS if k in arch)
          and all(number(arch[k]) for k in NUMBERS if k in arch))
    if not ok:
        raise ModelFileError(path, f"unknown or invalid architecture {arch!r}", "pass a file from `jaxstyle train`")
    return TransformerNet(**{k: v for k, v in arch.items() if k != "name"})


def load_model(path) -> FastModel:
    """Read and fully validate a style-network file; raises :class:`ModelFileError` (one line) if unusable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(path, "no such file" if not os.path.exists(path) else "not a file",
                             "check the --model path")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = _read_meta(path, data)
            net = _net_from(path, meta.get("architecture"), meta["format_version"])
            template = jax.eval_shape(lambda: initial_params(net))
            expected = dict(zip(key_paths(template), jax.tree.leaves(template)))
            missing = sorted(set(expected) - set(data.files))
            extra = sorted(set(data.files) - set(expected) - {META_KEY})
            if missing or extra:
                raise ModelFileError(path, f"parameters do not match the architecture it names (missing "
                                           f"{missing[:3]}, unexpected {extra[:3]})", "the file is damaged")
            flat = {k: data[k] for k in expected}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(path, f"unreadable or damaged file ({type(e).__name__}: {e})",
                             "pass a complete .npz written by `jaxstyle train`") from None
    for key, shape in expected.items():
        a = flat[key]
        if a.shape != shape.shape or a.dtype != np.float32:
            raise ModelFileError(path, f"{key}: {a.dtype}{list(a.shape)}, expected float32{list(shape.shape)}",
                                 "the file is damaged")
        if not np.all(np.isfinite(a)):
            raise ModelFileError(path, f"{key} holds non-finite values", "the training diverged; use another file")
    leaves = [jax.numpy.asarray(flat[k]) for k in expected]
    params = jax.tree.unflatten(jax.tree.structure(template), leaves)
    return FastModel(params=params, net=net, meta=meta)
