"""The converted-weights file: one ``.npz`` that loads without pickle.

Layout (big_vision style, flat "/"-keyed arrays, read with ``np.load(allow_pickle=False)``):

- ``conv{b}_{i}/kernel``: float32 HWIO ``(3, 3, Cin, Cout)``; ``conv{b}_{i}/bias``: float32 ``(Cout,)``.
  Kernels are stored exactly as the source trained them (Caffe-family kernels still expect BGR input; the
  preprocessing preset flips the image's channels).
- ``meta/format_version`` (int), ``meta/arch`` (``vgg19``/``vgg16``), ``meta/preset`` (preset name),
  ``meta/bgr`` (bool), ``meta/scale``, ``meta/mean`` (3,), ``meta/std`` (3,), ``meta/source`` (the source file's
  name), ``meta/source_sha256``, ``meta/source_format`` (keras, torchvision, onnx, ...).
- optional ``meta/provenance``: a JSON object saying where the weights come from when that is more than a file
  name (package, version, sha256 of what was downloaded, what the network was trained for, licence).

Every way a file can be wrong (missing, truncated, a pickle, missing or extra keys, wrong shape or dtype,
non-finite values, another architecture than asked for) raises :class:`WeightsError` naming the file and key.
"""

from __future__ import annotations

import functools
import json
import os
import warnings

import numpy as np

from . import vgg
from ..atomic import atomic_write
from ..errors import DAMAGED_ARCHIVE as _CORRUPT
from ..errors import WeightsError

FORMAT_VERSION = 1
META_KEYS = (
    "meta/format_version", "meta/arch", "meta/preset", "meta/bgr", "meta/scale", "meta/mean", "meta/std",
    "meta/source", "meta/source_sha256", "meta/source_format",
)
OPTIONAL_META_KEYS = ("meta/provenance",)
RANDOM = "random"
RANDOM_SEED = 0


class RandomWeightsWarning(UserWarning):
    """Issued whenever the deterministic random VGG is used: its results are textures, not meaningful art."""


def save_converted(path, arch: str, convs: dict, preprocess: vgg.Preprocess, *, source: str,
                   source_sha256: str, source_format: str, provenance: dict | None = None) -> None:
    """Write converted weights atomically. ``convs`` maps ``conv{b}_{i}`` to ``(kernel_hwio, bias)``;
    ``provenance`` (JSON-serialisable) is stored as ``meta/provenance``."""
    expected = vgg.conv_shapes(arch)
    if set(convs) != set(expected):
        missing, extra = sorted(set(expected) - set(convs)), sorted(set(convs) - set(expected))
        raise WeightsError(source, f"converted layers do not match {arch} (missing {missing}, extra {extra})")
    arrays = {}
    for name, shape in expected.items():
        kernel, bias = (np.asarray(a, dtype=np.float32) for a in convs[name])
        if kernel.shape != shape or bias.shape != (shape[-1],):
            raise WeightsError(source, f"{name}: kernel {kernel.shape} / bias {bias.shape}, expected {shape}")
        arrays[f"{name}/kernel"], arrays[f"{name}/bias"] = kernel, bias
    arrays.update({
        "meta/format_version": np.int64(FORMAT_VERSION),
        "meta/arch": np.str_(arch),
        "meta/preset": np.str_(preprocess.name),
        "meta/bgr": np.bool_(preprocess.bgr),
        "meta/scale": np.float64(preprocess.scale),
        "meta/mean": np.asarray(preprocess.mean, np.float64),
        "meta/std": np.asarray(preprocess.std, np.float64),
        "meta/source": np.str_(os.path.basename(str(source))),
        "meta/source_sha256": np.str_(source_sha256),
        "meta/source_format": np.str_(source_format),
    })
    if provenance:
        arrays["meta/provenance"] = np.str_(json.dumps(provenance, sort_keys=True))
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def load_converted(path, arch: str | None = None) -> tuple[str, dict, vgg.Preprocess, dict]:
    """Read and fully validate a converted file.

    Returns ``(arch, params, preprocess, meta)`` where ``params`` is the Flax pytree
    ``{"params": {"conv1_1": {"kernel": ..., "bias": ...}, ...}}`` of numpy float32 arrays.
    ``arch``, if given, is the architecture the caller requires.
    """
    path = os.fspath(path)
    archive = _open_archive(path)
    read = functools.partial(_read, archive, path)
    with archive:
        keys = set(archive.files)
        missing_meta = [k for k in META_KEYS if k not in keys]
        if missing_meta:
            raise WeightsError(path, f"missing key {missing_meta[0]!r} (not a jaxstyle converted file?)", _FIX)
        meta = {k.split("/", 1)[1]: read(k) for k in META_KEYS}
        file_arch = _check_header(path, meta, arch)
        shapes = vgg.conv_shapes(file_arch)
        expected = {f"{n}/{p}" for n in shapes for p in ("kernel", "bias")} | set(META_KEYS)
        provenance = _provenance(path, read) if "meta/provenance" in keys else {}
        if "meta/provenance" in keys:
            expected.add("meta/provenance")
        if keys - expected:
            raise WeightsError(path, f"unexpected key {sorted(keys - expected)[0]!r} for {file_arch}", _FIX)
        if expected - keys:
            raise WeightsError(path, f"missing key {sorted(expected - keys)[0]!r} for {file_arch}", _FIX)
        params = {name: {part: _checked(path, f"{name}/{part}", read(f"{name}/{part}"), want)
                         for part, want in (("kernel", shape), ("bias", shape[-1:]))}
                  for name, shape in shapes.items()}
        preprocess = _preprocess(path, meta)
    info = {k: (v.item() if np.ndim(v) == 0 else v.tolist()) for k, v in meta.items()}
    info["provenance"] = provenance
    return file_arch, {"params": params}, preprocess, info


_FIX = "convert it again with scripts/convert_weights.py"


def _open_archive(path: str):
    """The file as an open npz archive; a missing, pickled, foreign or damaged file raises WeightsError."""
    if not os.path.exists(path):
        raise WeightsError(path, "no such file", "convert or download weights first (see weights/README.md)")
    if os.path.isdir(path):
        raise WeightsError(path, "is a directory, not a weights file", "pass the .npz file itself")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic.startswith(b"PK"):  # an .npz is a zip archive
        if magic[:1] == b"\x80":  # pickle protocol 2+ (also the legacy torch.save format)
            raise WeightsError(path, "is a pickle, which is never loaded",
                               "convert the source with scripts/convert_weights.py")
        what = "empty" if not magic else "a single .npy array" if magic == b"\x93NUMPY" else "not a zip archive"
        raise WeightsError(path, f"not a converted weights file ({what})", _FIX)
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise WeightsError(path, f"not a converted weights file ({e})", _FIX) from None
    except _CORRUPT as e:
        raise WeightsError(path, f"unreadable or truncated ({type(e).__name__})", _FIX) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise WeightsError(path, "holds a single array, not a converted weights archive", _FIX)
    return archive


def _read(archive, path: str, key: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as e:
        if "allow_pickle" in str(e):  # object arrays need pickle
            raise WeightsError(path, f"key {key!r} holds pickled objects ({e})", _FIX) from None
        # numpy's own words for a member cut short ("EOF: reading array header ..."), not a pickle
        raise WeightsError(path, f"key {key!r} is unreadable or truncated ({e})", _FIX) from None
    except (*_CORRUPT, KeyError) as e:
        raise WeightsError(path, f"key {key!r} is unreadable or truncated ({type(e).__name__})", _FIX) from None


def _check_header(path: str, meta: dict, arch: str | None) -> str:
    """The file's architecture, after checking the format version and that it is the one required."""
    try:
        version = int(meta["format_version"])
    except (TypeError, ValueError, OverflowError) as e:
        raise WeightsError(path, f"key 'meta/format_version' is not an integer ({e})", _FIX) from None
    if version != FORMAT_VERSION:
        raise WeightsError(path, f"format version {version}, this jaxstyle reads {FORMAT_VERSION}", _FIX)
    file_arch = str(meta["arch"])
    if file_arch not in vgg.ARCHITECTURES:
        raise WeightsError(path, f"key 'meta/arch' names unknown architecture {file_arch!r}", _FIX)
    if arch is not None and file_arch != arch:
        raise WeightsError(path, f"holds {file_arch} weights but {arch} was requested",
                           f"pass a {arch} file or ask for {file_arch}")
    return file_arch


def _provenance(path: str, read) -> dict:
    try:
        provenance = json.loads(str(read("meta/provenance")))
    except ValueError as e:
        raise WeightsError(path, f"key 'meta/provenance' is not valid JSON ({e})", _FIX) from None
    if not isinstance(provenance, dict):
        raise WeightsError(path, "key 'meta/provenance' is not a JSON object", _FIX)
    return provenance


def _checked(path: str, key: str, value: np.ndarray, shape) -> np.ndarray:
    if value.dtype != np.float32:
        raise WeightsError(path, f"key {key!r} has dtype {value.dtype}, expected float32", _FIX)
    if value.shape != shape:
        raise WeightsError(path, f"key {key!r} has shape {value.shape}, expected {shape}", _FIX)
    if not np.all(np.isfinite(value)):
        raise WeightsError(path, f"key {key!r} contains non-finite values", _FIX)
    return value


def _preprocess(path: str, meta: dict) -> vgg.Preprocess:
    try:
        mean = tuple(float(m) for m in np.asarray(meta["mean"]).reshape(3))
        std = tuple(float(s) for s in np.asarray(meta["std"]).reshape(3))
        preprocess = vgg.Preprocess(str(meta["preset"]), bool(meta["bgr"]), float(meta["scale"]), mean, std)
    except (TypeError, ValueError) as e:
        raise WeightsError(path, f"invalid preprocessing metadata ({e})", _FIX) from None
    if not all(np.isfinite(preprocess.mean + preprocess.std + (preprocess.scale,))) or min(std) <= 0:
        raise WeightsError(path, "invalid preprocessing metadata (non-finite mean/scale or std <= 0)", _FIX)
    return preprocess


def random_params(arch: str = "vgg19", seed: int = RANDOM_SEED) -> dict:
    """Deterministic He-initialised conv weights (He et al. 2015, normal, fan-in), zero biases.

    numpy's PCG64 generator gives the same weights on every platform and, unlike per-layer ``jax.random``
    calls, compiles nothing (loading is instant). Useful for smoke runs and tests only.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in vgg.conv_shapes(arch).items():
        fan_in = shape[0] * shape[1] * shape[2]
        kernel = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        params[name] = {"kernel": kernel, "bias": np.zeros(shape[-1], np.float32)}
    return {"params": params}


def warn_random() -> None:
    warnings.warn(
        "using RANDOM VGG weights (deterministic He init): results are texture-like, not meaningful art. "
        "Convert real weights with scripts/convert_weights.py or scripts/download_weights.py.",
        RandomWeightsWarning,
        stacklevel=3,
    )


def describe(path, *, short: bool = False) -> str:
    """What converted weights are, in one line, from their own metadata: architecture, origin (the provenance
    when recorded, else the source file), preprocessing. ``short``: architecture and origin only (captions).
    ``"random"`` describes the random VGG19."""
    if path == RANDOM:
        return "random VGG19 (He init) — textures, not art"
    arch, _, preprocess, info = load_converted(path)
    prov = info.get("provenance") or {}
    if prov.get("package"):
        origin = f"{prov['package']} {prov['version']} from PyPI" + ("" if short else f": {prov['description']}")
    else:
        origin = f"converted from {info['source']}" + ("" if short else f" ({info['source_format']})")
    return f"{arch.upper()}, {origin}" + ("" if short else f"; preprocessing {preprocess.name}")
