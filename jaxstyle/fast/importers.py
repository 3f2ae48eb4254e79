"""Import the fast style networks other projects publish into jaxstyle model files: :func:`convert`.

- pytorch/examples ``fast_neural_style`` (``candy.pth``, ``mosaic.pth``, ``rain_princess.pth``, ``udnie.pth``): a
  ``TransformerNet`` state_dict, read with ``torch.load(weights_only=True)``. Like its ``neural_style.py``, the
  stale ``in*.running_mean``/``running_var`` keys that older PyTorch versions saved are deleted first; every
  other key must be exactly the network's. It computes in RGB 0-255 (:data:`~jaxstyle.fast.net.PREPROCESS`
  ``rgb255``) with the layout jaxstyle's own network has.
- jcjohnson/fast-neural-style ``.t7`` checkpoints (``instance_norm/*.t7``, ``eccv16/*.t7``): the Lua table
  ``{model = nn.Sequential, opt = ...}`` that its ``train.lua`` saves, read by :mod:`jaxstyle.io.torch7`. The
  ``nn.Sequential`` is matched module by module against the network ``models.lua`` builds with
  ``padding_type reflect-start`` (train.lua's default): the reflection padding the training loop inserts first,
  ``c9s1``, ``d``, ``d``, residual blocks (``ConcatTable`` of the block and ``ShaveImage(2)``, ``CAddTable``),
  two ``u`` layers (``SpatialFullConvolution``) or ``U2`` + ``c3s1`` (nearest), ``c9s1-3``, ``Tanh``,
  ``MulConstant``, ``TotalVariation`` (the identity when running). Instance norm (their
  ``InstanceNormalization``, its own epsilon) or ``SpatialBatchNormalization`` in evaluation mode, its running
  statistics folded into the affine. Input as ``opt.preprocessing`` says (``vgg`` unless given, as
  ``fast_neural_style.lua`` does). Other layouts are refused with the module where they differ.

Every array is checked (shape against the network it implies, finite), the provenance (project, file name,
sha256) is stored in the model's metadata, and nothing is written unless the whole file converted.
"""

from __future__ import annotations

import datetime
import os
import re

import jax
import numpy as np

from .._version import __version__
from ..errors import InputError, UsageError
from ..io import torch7
from ..nets import convert as vgg_convert
from .model_file import key_paths, save_model
from .net import FastModel, TransformerNet, initial_params

PYTORCH_EXAMPLES, FAST_NEURAL_STYLE = "pytorch-examples", "fast-neural-style"
FORMATS = (PYTORCH_EXAMPLES, FAST_NEURAL_STYLE)
PROJECTS = {PYTORCH_EXAMPLES: "pytorch/examples fast_neural_style", FAST_NEURAL_STYLE: "jcjohnson/fast-neural-style"}
STALE_KEY = re.compile(r"in\d+\.running_(mean|var)$")  # pytorch/examples' neural_style.py deletes these (re.search)
# jaxstyle module -> pytorch/examples attribute (the residual blocks r{i} -> res{i} keep their inner names).
EXAMPLES_CONVS = {"c1": "conv1", "d1": "conv2", "d2": "conv3", "u1": "deconv1", "u2": "deconv2", "c2": "deconv3"}
EXAMPLES_NORMS = {"c1_in": "in1", "d1_in": "in2", "d2_in": "in3", "u1_in": "in4", "u2_in": "in5"}


class NetworkImportError(InputError):
    """A style-network file from another project cannot be imported."""


def detect(path) -> str | None:
    """:data:`PYTORCH_EXAMPLES` or :data:`FAST_NEURAL_STYLE` when ``path`` looks like one of their networks
    (decided by the file's contents, never its name), else None (VGG weights, or not a network at all)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if torch7.is_t7(head):
        return FAST_NEURAL_STYLE
    legacy = head.startswith(vgg_convert._TORCH_LEGACY_MAGIC)
    if legacy and not _legacy_mentions(path, b"conv2d.weight"):
        return None  # a legacy file's key names precede its tensors: not ours, and not worth a full load
    if head.startswith(b"PK\x03\x04") or legacy:
        keys = _torch_keys(path)
        if "conv1.conv2d.weight" in keys or any(k.startswith(("deconv", "res1.")) for k in keys):
            return PYTORCH_EXAMPLES
    return None


def _legacy_mentions(path, name: bytes, span: int = 1 << 16) -> bool:
    """Whether a legacy (pre-zip) torch file names ``name`` among its first bytes: its pickled dict, keys
    included, comes before the tensor data (a few kB for a TransformerNet)."""
    with open(path, "rb") as f:
        return name in f.read(span)


def _torch_keys(path) -> set:
    """The keys of a torch file, or nothing when it cannot be read (the VGG converter then says why)."""
    import torch

    try:  # mmap: a zip checkpoint's tensors are not read (a legacy file's are, once more than necessary)
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=path_is_zip(path))
    except Exception:  # noqa: BLE001 - any failure here is reported by the reader that takes the file
        return set()
    return {k for k in state if isinstance(k, str)} if isinstance(state, dict) else set()


def path_is_zip(path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


# ---------------------------------------------------------------------------------------- assembling


def assemble(path, net: TransformerNet, arrays: dict, labels: dict) -> dict:
    """The parameter pytree of ``net`` from ``arrays`` keyed like the model file (``params/c1/conv/kernel``),
    each in jaxstyle's layout; every leaf must be there with its shape and finite. ``labels`` names each key's
    origin in the source file, for the error messages."""
    template = jax.eval_shape(lambda: initial_params(net))
    leaves = []
    for key, leaf in zip(key_paths(template), jax.tree.leaves(template)):
        a = np.asarray(arrays[key], np.float32)
        if a.shape != leaf.shape:
            short = key.removeprefix("params/params/")
            raise NetworkImportError(path, f"{labels[key]} does not fit the network the other layers make (as "
                                           f"{short}: shape {a.shape}, needs {leaf.shape})", "pass an unmodified file")
        if not np.all(np.isfinite(a)):
            raise NetworkImportError(path, f"{labels[key]} holds non-finite values", "download the file again")
        leaves.append(a)
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    return np.asarray(w).transpose(2, 3, 1, 0)  # OIHW -> HWIO


# ---------------------------------------------------------------------------------- pytorch/examples


def read_pytorch_examples(path) -> tuple[FastModel, dict]:
    """A pytorch/examples ``TransformerNet`` state_dict -> (model, notes)."""
    arrays = vgg_convert.load_torch_state_dict(path)
    stale = sorted(k for k in arrays if STALE_KEY.search(k))
    arrays = {k: v for k, v in arrays.items() if k not in stale}
    blocks = sorted(int(m.group(1)) for k in arrays if (m := re.fullmatch(r"res(\d+)\.conv1\.conv2d\.weight", k)))
    names = {**{f"{j}/conv": f"{t}.conv2d" for j, t in EXAMPLES_CONVS.items()}, **EXAMPLES_NORMS}
    for i in range(1, len(blocks) + 1):
        names.update({f"r{i}/conv1/conv": f"res{i}.conv1.conv2d", f"r{i}/conv2/conv": f"res{i}.conv2.conv2d",
                      f"r{i}/in1": f"res{i}.in1", f"r{i}/in2": f"res{i}.in2"})
    expected = {f"{t}.{p}" for t in names.values() for p in ("weight", "bias")}
    if set(arrays) != expected:
        extra, missing = sorted(set(arrays) - expected), sorted(expected - set(arrays))
        what = f"unexpected key {extra[0]!r}" if extra else f"missing key {missing[0]!r}"
        raise NetworkImportError(path, f"not a pytorch/examples TransformerNet state_dict ({what})",
                                 "pass a state_dict saved from fast_neural_style's TransformerNet")
    first = arrays["conv1.conv2d.weight"]
    if first.ndim != 4:
        raise NetworkImportError(path, f"conv1.conv2d.weight has shape {first.shape}, expected OIHW",
                                 "pass an unmodified file")
    net = TransformerNet(width=int(first.shape[0]), n_residual=len(blocks), preprocess="rgb255", fit="crop")
    ours, labels = {}, {}
    for j, t in names.items():
        conv = j.endswith("conv")
        w, b = arrays[f"{t}.weight"], arrays[f"{t}.bias"]
        key = f"params/params/{j}/{'kernel' if conv else 'scale'}"
        ours[key] = _conv_kernel(w) if conv and w.ndim == 4 else (w if conv else w[None])
        ours[f"params/params/{j}/bias"] = b if conv else b[None]
        labels.update({key: f"key {t}.weight", f"params/params/{j}/bias": f"key {t}.bias"})
    params = assemble(path, net, ours, labels)
    return FastModel(params=params, net=net, meta={}), {"dropped_stale_keys": stale}


# ------------------------------------------------------------------------------ fast-neural-style (.t7)


class _Modules:
    """A cursor over a flattened ``nn.Sequential``: each :meth:`take` checks the next module's class."""

    def __init__(self, path, modules: list, labels: dict | None = None):
        self.path, self.modules, self.pos = path, modules, 0
        self.labels = {} if labels is None else labels  # model-file key -> where it came from

    def label(self, key: str, what: str) -> None:
        module = self.modules[self.pos - 1]
        self.labels[key] = f"layer {self.pos} ({module.classname}) {what}"

    def fail(self, problem: str):
        raise NetworkImportError(self.path, "not a fast-neural-style network as models.lua builds it "
                                            f"(reflect-start): layer {self.pos + 1}: {problem}",
                                 "pass a checkpoint saved by jcjohnson/fast-neural-style's train.lua")

    def peek(self) -> str:
        return self.modules[self.pos].classname if self.pos < len(self.modules) else "the end"

    def take(self, *classes) -> dict:
        if self.peek() not in classes:
            self.fail(f"expected {' or '.join(classes)}, found {self.peek()}")
        fields = self.modules[self.pos].fields
        self.pos += 1
        return fields if isinstance(fields, dict) else {}


def _children(module) -> list:
    mods = module.fields.get("modules") if isinstance(module.fields, dict) else None
    if not isinstance(mods, dict) or set(mods) != set(range(1, len(mods) + 1)):
        return []
    return [mods[i] for i in range(1, len(mods) + 1)]


def _is_residual(module) -> bool:
    kids = _children(module)
    return [getattr(k, "classname", None) for k in kids] == ["nn.ConcatTable", "nn.CAddTable"]


def _flatten(module, depth: int = 0) -> list:
    """Nested ``nn.Sequential``s spliced in order (residual blocks kept whole); ``TotalVariation`` (the identity
    when running forward; a gradient term in training) dropped. Too deep a nesting (a container holding
    itself) is returned as one unexpected module."""
    if not isinstance(module, torch7.TorchObject) or depth > 20:
        return [torch7.TorchObject("a container nested too deeply" if depth > 20 else type(module).__name__, None)]
    if module.classname == "nn.Sequential" and not _is_residual(module):
        return [m for child in _children(module) for m in _flatten(child, depth + 1)]
    return [] if module.classname == "nn.TotalVariation" else [module]


def _number(cur: _Modules, fields: dict, name: str, want=None) -> float:
    v = fields.get(name)
    if not isinstance(v, (int, float)) or not np.isfinite(v) or (want is None and v <= 0) or (
            want is not None and v != want):
        cur.pos -= 1
        cur.fail(f"{name} is {v!r}, expected {'a positive number' if want is None else want}")
    return float(v)


def _array(cur: _Modules, fields: dict, name: str, optional: bool = False):
    v = fields.get(name)
    if v is None and optional:
        return None
    if not isinstance(v, np.ndarray) or v.dtype.kind != "f":
        cur.pos -= 1
        cur.fail(f"{name} is not a floating-point tensor")
    return v.astype(np.float32)


def _conv(cur: _Modules, out: dict, name: str, kernel: int, stride: int, pad: int) -> int:
    f = cur.take("nn.SpatialConvolution", "nn.SpatialConvolutionMM")
    for field, want in (("kW", kernel), ("kH", kernel), ("dW", stride), ("dH", stride), ("padW", pad), ("padH", pad)):
        _number(cur, f, field, want)
    n_in, n_out = int(_number(cur, f, "nInputPlane")), int(_number(cur, f, "nOutputPlane"))
    w = _array(cur, f, "weight")
    if w.size != n_out * n_in * kernel * kernel:
        cur.pos -= 1
        cur.fail(f"weight has shape {w.shape}, expected {(n_out, n_in, kernel, kernel)}")
    b = _array(cur, f, "bias", optional=True)
    out[f"params/params/{name}/conv/kernel"] = _conv_kernel(w.reshape(n_out, n_in, kernel, kernel))  # MM: 2-D
    out[f"params/params/{name}/conv/bias"] = np.zeros(n_out, np.float32) if b is None else b
    cur.label(f"params/params/{name}/conv/kernel", "weight")
    cur.label(f"params/params/{name}/conv/bias", "bias")
    return n_out


def _full_conv(cur: _Modules, out: dict, name: str) -> None:
    f = cur.take("nn.SpatialFullConvolution")
    for field, want in (("kW", 3), ("kH", 3), ("dW", 2), ("dH", 2), ("padW", 1), ("padH", 1), ("adjW", 1),
                        ("adjH", 1)):
        _number(cur, f, field, want)
    w = _array(cur, f, "weight")  # (in, out, kH, kW)
    if w.ndim != 4:
        cur.pos -= 1
        cur.fail(f"weight has shape {w.shape}, expected (in, out, 3, 3)")
    b = _array(cur, f, "bias", optional=True)
    # A transposed convolution is a convolution of the dilated input with the spatially flipped kernel.
    out[f"params/params/{name}/conv/kernel"] = w.transpose(2, 3, 0, 1)[::-1, ::-1]
    out[f"params/params/{name}/conv/bias"] = np.zeros(w.shape[1], np.float32) if b is None else b
    cur.label(f"params/params/{name}/conv/kernel", "weight")
    cur.label(f"params/params/{name}/conv/bias", "bias")


def _norm(cur: _Modules, out: dict, key: str, found: dict) -> None:
    """One normalisation layer -> its per-channel affine; ``found`` collects the kind and the epsilon."""
    kind = {"nn.InstanceNormalization": "instance", "nn.SpatialBatchNormalization": "batch"}.get(cur.peek())
    f = cur.take("nn.InstanceNormalization", "nn.SpatialBatchNormalization")
    eps = _number(cur, f, "eps")
    if found.setdefault("norm", kind) != kind:
        cur.pos -= 1
        cur.fail(f"{kind} norm after {found['norm']} norm layers (a network mixes both)")
    w, b = _array(cur, f, "weight", optional=True), _array(cur, f, "bias", optional=True)
    stats = [_array(cur, f, k, optional=True) for k in ("running_mean", "running_var", "running_std")]
    if len({a.shape for a in (w, b, *stats) if a is not None} | {(-1,)}) > 2 or any(
            a.ndim != 1 for a in (w, b, *stats) if a is not None):
        cur.pos -= 1
        cur.fail("its weight, bias and running statistics are not vectors of one length")
    if kind == "instance":
        if found.setdefault("eps", eps) != eps:
            cur.pos -= 1
            cur.fail(f"eps {eps} differs from the first layer's {found['eps']}")
        scale, shift = w, b
    else:  # evaluation mode: (x - running_mean) / sqrt(running_var + eps) * weight + bias, folded
        mean = _array(cur, f, "running_mean")
        std = f.get("running_std")  # nn before 2016 stored running_std = 1 / sqrt(var + eps) instead
        inv = _array(cur, f, "running_std") if std is not None else 1 / np.sqrt(_array(cur, f, "running_var") + eps)
        scale = inv * (1 if w is None else w)
        shift = (0 if b is None else b) - mean * scale
    if scale is None or shift is None:
        cur.pos -= 1
        cur.fail("instance norm without weight and bias")
    out[f"{key}/scale"], out[f"{key}/bias"] = scale[None], np.broadcast_to(shift, scale.shape)[None]
    cur.label(f"{key}/scale", "weight")
    cur.label(f"{key}/bias", "bias")


def _relu(cur: _Modules) -> None:
    cur.take("nn.ReLU")


def _residual(cur: _Modules, out: dict, i: int, found: dict) -> None:
    """``Sequential{ConcatTable{Sequential{conv, norm, relu, conv, norm}, ShaveImage(2)}, CAddTable}``."""
    block = cur.modules[cur.pos]
    cur.take("nn.Sequential")
    branches = _children(_children(block)[0])
    shave = branches[1] if len(branches) == 2 else None
    if getattr(shave, "classname", None) != "nn.ShaveImage" or (shave.fields or {}).get("size") != 2:
        cur.pos -= 1
        cur.fail(f"residual block {i}'s shortcut is {getattr(shave, 'classname', None)}, not ShaveImage(2) "
                 "(only padding_type reflect-start networks are read)")
    inner = _Modules(cur.path, _flatten(branches[0], 1), cur.labels)
    inner.fail = lambda problem: cur.fail(f"in residual block {i}: {problem}")  # noqa: E731 (one line)
    _conv(inner, out, f"r{i}/conv1", 3, 1, 0)
    _norm(inner, out, f"params/params/r{i}/in1", found)
    _relu(inner)
    _conv(inner, out, f"r{i}/conv2", 3, 1, 0)
    _norm(inner, out, f"params/params/r{i}/in2", found)
    if inner.pos != len(inner.modules):
        inner.fail(f"unexpected {inner.peek()} after the second normalisation")


def _upsampling(cur: _Modules, out: dict, name: str) -> str:
    if cur.peek() == "nn.SpatialFullConvolution":
        _full_conv(cur, out, name)
        return "transpose"
    _number(cur, cur.take("nn.SpatialUpSamplingNearest"), "scale_factor", 2)
    _conv(cur, out, name, 3, 1, 1)
    return "nearest"


def _t7_network(path, model) -> tuple[dict, dict, dict]:
    """Walk the flattened ``nn.Sequential``; returns (parameters keyed like the model file, their labels,
    architecture)."""
    cur, out, found = _Modules(path, _flatten(model)), {}, {}
    pad = cur.take("nn.SpatialReflectionPadding")
    pads = [_number(cur, pad, k) for k in ("pad_l", "pad_r", "pad_t", "pad_b")]

    def normed(name):
        _norm(cur, out, f"params/params/{name}_in", found)
        _relu(cur)

    width = _conv(cur, out, "c1", 9, 1, 4)
    normed("c1")
    for name in ("d1", "d2"):
        _conv(cur, out, name, 3, 2, 1)
        normed(name)
    n = 0
    while cur.peek() == "nn.Sequential":
        n += 1
        _residual(cur, out, n, found)
    ups = set()
    for name in ("u1", "u2"):
        ups.add(_upsampling(cur, out, name))
        normed(name)
    _conv(cur, out, "c2", 9, 1, 4)
    cur.take("nn.Tanh")
    scale = _number(cur, cur.take("nn.MulConstant"), "constant_scalar")
    if cur.pos != len(cur.modules):
        cur.fail(f"unexpected {cur.peek()} after MulConstant")
    if len(ups) != 1 or set(pads) != {8 * n}:
        cur.pos = 0
        cur.fail(f"input padding {pads} with {n} residual blocks (the output would not keep the input's size)"
                 if len(ups) == 1 else "mixes transposed and nearest upsampling")
    arch = {"width": width, "n_residual": n, "padding": "reflect-start", "upsample": ups.pop(),
            "norm": found["norm"], "eps": found.get("eps", 1e-5), "output": "tanh", "output_scale": scale,
            "fit": "crop"}
    return out, cur.labels, arch


OPT_NOTES = ("arch", "padding_type", "use_instance_norm", "tanh_constant", "preprocessing", "style_image",
             "style_image_size", "style_weights", "content_weights", "num_iterations")


def read_fast_neural_style(path) -> tuple[FastModel, dict]:
    """A jcjohnson/fast-neural-style checkpoint ``{model = nn.Sequential, opt = ...}`` -> (model, notes)."""
    checkpoint = torch7.load_t7(path)
    model = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(model, torch7.TorchObject):
        found = getattr(checkpoint, "classname", type(checkpoint).__name__)
        raise NetworkImportError(path, f"holds {found}, not a fast-neural-style checkpoint (a table with a model)",
                                 "pass a .t7 file saved by fast-neural-style's train.lua")
    opt = checkpoint.get("opt") if isinstance(checkpoint.get("opt"), dict) else {}
    preprocess = opt.get("preprocessing", "vgg")  # fast_neural_style.lua: checkpoint.opt.preprocessing or 'vgg'
    if preprocess not in ("vgg", "resnet"):
        raise NetworkImportError(path, f"opt.preprocessing is {preprocess!r}, expected vgg or resnet",
                                 "pass an unmodified file")
    arrays, labels, arch = _t7_network(path, model)
    net = TransformerNet(preprocess=preprocess, **arch)
    notes = {"opt": {k: opt[k] for k in OPT_NOTES if isinstance(opt.get(k), (str, int, float, bool))}}
    return FastModel(params=assemble(path, net, arrays, labels), net=net, meta={}), notes


# ---------------------------------------------------------------------------------------------- front door


def convert(src, dst=None, *, kind: str | None = None, overwrite: bool = False) -> dict:
    """Import ``src`` (``kind``: one of :data:`FORMATS`, or None to detect it) and write the jaxstyle model file
    ``dst`` (default ``models/<name>.npz``) atomically. Returns a summary for the command line."""
    src = vgg_convert.check_readable(src)
    kind = kind or detect(src)
    if kind not in FORMATS:
        raise NetworkImportError(src, "not a pytorch/examples TransformerNet state_dict or a fast-neural-style "
                                      ".t7 checkpoint", "pass one of the published style networks (docs/fast.md)")
    if dst is not None:
        dst = vgg_convert.check_output(dst, src, overwrite)  # before the read
    model, notes = (read_pytorch_examples if kind == PYTORCH_EXAMPLES else read_fast_neural_style)(src)
    name = os.path.basename(src)
    stem = os.path.splitext(name)[0]
    dst = vgg_convert.check_output(dst if dst is not None else os.path.join("models", f"{stem}.npz"), src, overwrite)
    sha = vgg_convert.file_sha256(src)
    provenance = {"source_project": PROJECTS[kind], "source_file": name, "source_sha256": sha, "source_format": kind,
                  "converted_by": f"jaxstyle {__version__}",
                  "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    model = model.replace(meta={"styles": [stem], "provenance": provenance, "import": notes})
    try:
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        save_model(dst, model)
    except OSError as e:
        raise UsageError(f"{dst}: cannot write the model file ({e.strerror or e}) — choose another -o path") from None
    return {"output": dst, "source": name, "source_sha256": sha, "project": PROJECTS[kind], "kind": kind,
            "width": model.net.width, "n_residual": model.net.n_residual, "net": model.net}
