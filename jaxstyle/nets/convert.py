"""Read pretrained VGG weights from every common source and write jaxstyle's converted ``.npz``.

Each reader follows the published layout exactly (see ``weights/README.md``) and checks it the way nanoGPT's
``from_pretrained`` does: an explicit list of expected keys, the conv count asserted (16 = VGG19, 13 = VGG16),
every shape asserted. Nothing is guessed from names that the file does not declare, and nothing is unpickled
except through ``torch.load(weights_only=True)``.

Readers return :class:`Source` ``(arch, convs, preprocess, source_format)`` with ``convs`` mapping
``conv{b}_{i}`` to ``(kernel_hwio, bias)`` float32 arrays; :func:`convert` writes it with
:func:`jaxstyle.nets.weights.save_converted`. The fully connected head is always dropped.

Kernels are kept exactly as trained: Caffe-family kernels (Keras, Caffe-converted .pth, Gatys' vgg_conv.pth)
still expect BGR input, and the recorded preprocessing preset flips the image's channels instead.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from typing import NamedTuple

import numpy as np

from . import vgg, weights
from ..errors import UsageError, WeightsError

FORMATS = ("keras", "torchvision", "caffe-pth", "gatys", "matconvnet", "safetensors", "onnx")
PRESET_NAMES = tuple(vgg.PRESETS)

# Index k of each conv in torchvision's ``features`` nn.Sequential (conv, relu, ..., maxpool between blocks).
TORCHVISION_INDICES: dict[str, tuple[int, ...]] = {
    "vgg19": (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34),
    "vgg16": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}
# Published file names whose preprocessing is known. Anything else with torchvision-style keys is ambiguous:
# torchvision's own weights and Caffe weights converted to PyTorch have identical keys and shapes.
KNOWN_FILES: dict[str, str] = {
    "vgg19-dcbb9e9d.pth": "torchvision",
    "vgg16-397923af.pth": "torchvision",
    "vgg19-d01eb7cb.pth": "caffe-pth",
    "vgg16-00b39a1b.pth": "caffe-pth",
}
FORMAT_PRESET = {"keras": "caffe", "torchvision": "torchvision", "caffe-pth": "caffe", "gatys": "gatys"}
# ONNX files whose preprocessing is known from their published name: the ONNX model zoo's VGGs (converted from
# MXNet Gluon, documented with the ImageNet mean/std on RGB in [0, 1]).
KNOWN_ONNX_FILES: dict[str, str] = {"vgg16-7.onnx": "torchvision", "vgg19-7.onnx": "torchvision",
                                    "vgg16-12.onnx": "torchvision"}
# ONNX producers that identify the framework, and so the preprocessing: Keras' VGGs were converted from Caffe.
ONNX_PRODUCER_PRESET = {"tf2onnx": "caffe", "keras2onnx": "caffe"}
_ARCH_BY_COUNT = {len(vgg.conv_names(a)): a for a in vgg.ARCHITECTURES}

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # pickled torch magic number
_EXTRAS = {"torch": "torch", "scipy": "scipy", "safetensors": "safetensors", "onnx": "onnx"}
# ModelProto's first field is ir_version (field 1, varint: byte 0x08); what follows it is one of these tags.
_ONNX_SECOND_TAGS = frozenset(b"\x12\x1a\x22\x28\x32\x3a\x42\x72")


class Source(NamedTuple):
    """What a reader found: architecture, ``{conv: (kernel_hwio, bias)}``, preprocessing, source format."""

    arch: str
    convs: dict
    preprocess: vgg.Preprocess
    source_format: str


def file_sha256(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _require(module: str, path):
    """Import an optional dependency or explain the one-line install."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        extra = _EXTRAS[module.split(".")[0]]
        raise WeightsError(path, f"reading this format needs the optional dependency {extra}",
                           f"pip install 'jaxstyle[{extra}]'") from None


def check_readable(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsError(path, "no such file", "download the source weights first (see weights/README.md)")
    if os.path.isdir(path):
        raise WeightsError(path, "is a directory, not a weights file", "pass the weights file itself")
    return path


# ----------------------------------------------------------------------------------------------- detection


def detect_format(path) -> str:
    """The container the file really is, from its bytes (never only from its extension).

    Returns ``"keras"``, ``"matconvnet"``, ``"safetensors"``, ``"onnx"`` or ``"torch"`` (a torch zip or legacy
    file whose keys decide between torchvision/caffe-pth and gatys).
    """
    path = check_readable(path)
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise WeightsError(path, f"cannot read ({e.strerror})", "check the file's permissions") from None
    if head.startswith(b"MATLAB 7.3"):
        raise WeightsError(path, "MATLAB v7.3 (HDF5) .mat files are not supported by scipy",
                           "re-save it in MATLAB with save(..., '-v7') or use another source")
    if head.startswith(b"MATLAB 5.0 MAT-file"):
        return "matconvnet"
    if head.startswith(_HDF5_MAGIC) or head[512:520] == _HDF5_MAGIC:
        return "keras"
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise WeightsError(path, f"truncated or corrupt zip archive ({e})", "download the file again") from None
        if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            return "torch"
        if names and all(n.endswith(".npy") for n in names):
            raise WeightsError(path, "is a numpy .npz archive, not a source weights file",
                               "if it is already converted, pass it to load_vgg / --weights directly")
        raise WeightsError(path, "zip archive that is not a PyTorch checkpoint", "pass a supported source")
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 0 < n <= size - 8:
            return "safetensors"
    if _looks_like_onnx(head):
        return "onnx"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise WeightsError(path, "is a plain pickle file, which is never loaded",
                           "save a state_dict with torch.save or use safetensors")
    if not head:
        raise WeightsError(path, "is empty", "download the file again")
    raise WeightsError(path, "unknown weights format (not HDF5, PyTorch, safetensors, ONNX or MATLAB v5)",
                       f"pass one of the supported sources; --format is one of {', '.join(FORMATS)}")


def _looks_like_onnx(head: bytes) -> bool:
    """An ONNX ``ModelProto``: field 1 (ir_version, a small varint) first, then another ModelProto field."""
    return len(head) >= 3 and head[0] == 0x08 and 0 < head[1] < 0x80 and head[2] in _ONNX_SECOND_TAGS


# --------------------------------------------------------------------------------------------- assembling


def _arch_for(path, count: int, what: str) -> str:
    if count not in _ARCH_BY_COUNT:
        raise WeightsError(path, f"found {count} conv layers ({what}); VGG19 has 16 and VGG16 13",
                           "pass a VGG19 or VGG16 weights file")
    return _ARCH_BY_COUNT[count]


def _as_f32(path, key: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise WeightsError(path, f"key {key!r} has dtype {array.dtype}, expected floating point",
                           "pass an unmodified weights file")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise WeightsError(path, f"key {key!r} contains non-finite values", "download the file again")
    return array


# Axis order of each source layout, as a permutation of HWIO (to state the expected shape in its own terms).
_LAYOUT_FROM_HWIO = {"HWIO": (0, 1, 2, 3), "OIHW": (3, 2, 0, 1), "[W,H,in,out]": (1, 0, 2, 3)}


def _checked(path, arch: str, name: str, kernel_key: str, kernel_hwio, bias_key: str, bias,
             layout: str = "HWIO", source_shape=None) -> tuple:
    """Assert one layer's kernel (already HWIO) and bias shapes against the architecture."""
    shape = vgg.conv_shapes(arch)[name]
    kernel, bias = _as_f32(path, kernel_key, kernel_hwio), _as_f32(path, bias_key, bias)
    if kernel.shape != shape:
        want = tuple(shape[i] for i in _LAYOUT_FROM_HWIO[layout])
        got = tuple(source_shape) if source_shape is not None else kernel.shape
        raise WeightsError(path, f"key {kernel_key!r} ({name}) has shape {got}, expected {layout} {want}",
                           "pass an unmodified VGG weights file")
    if bias.shape != (shape[-1],):
        raise WeightsError(path, f"key {bias_key!r} ({name}) has shape {bias.shape}, expected {(shape[-1],)}",
                           "pass an unmodified VGG weights file")
    return kernel, bias


# ------------------------------------------------------------------------------------------------- readers


def _state_dict_arrays(path, state: dict) -> dict[str, np.ndarray]:
    torch = _require("torch", path)
    if not isinstance(state, dict):
        raise WeightsError(path, f"holds a {type(state).__name__}, not a state_dict",
                           "save model.state_dict() rather than the model")
    out = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsError(path, f"entry {key!r} is not a tensor (a nested checkpoint?)",
                               "save model.state_dict() on its own")
        out[key] = value.detach().to("cpu", torch.float32).numpy() if value.is_floating_point() else value.numpy()
    return out


def load_torch_state_dict(path) -> dict[str, np.ndarray]:
    """A PyTorch state_dict file's tensors as numpy arrays (float32 for floating ones), through
    ``torch.load(weights_only=True)``; a pickled model or a damaged file is a one-line :class:`WeightsError`."""
    torch = _require("torch", path)
    try:
        # weights_only: tensors and plain containers only; arbitrary pickled code is refused.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(path, f"refused by torch.load(weights_only=True): {first}",
                           "save a plain state_dict (tensors only)") from None
    except Exception as e:  # torch raises RuntimeError/EOFError/zip errors for truncated files
        raise WeightsError(path, f"unreadable PyTorch file ({type(e).__name__})", "download the file again") from None
    return _state_dict_arrays(path, state)


def _load_safetensors(path) -> dict[str, np.ndarray]:
    st_numpy = _require("safetensors.numpy", path)
    try:
        return dict(st_numpy.load_file(path))
    except Exception as e:  # safetensors raises its own SafetensorError for bad headers/truncation
        raise WeightsError(path, f"unreadable safetensors file ({type(e).__name__}: {e})",
                           "download the file again") from None


def _from_torchvision_keys(path, arrays: dict) -> tuple[str, dict]:
    """``features.{k}.weight`` OIHW / ``features.{k}.bias``; ``classifier.*`` (the head) is dropped."""
    head = {k for k in arrays if k.startswith("classifier.")}
    features = {k for k in arrays if k.startswith("features.")}
    other = sorted(set(arrays) - head - features)
    if other:
        raise WeightsError(path, f"unexpected key {other[0]!r} for a torchvision-layout VGG",
                           "pass a plain (non batch-norm) VGG state_dict")
    conv_ks = sorted(int(m.group(1)) for k in features if (m := re.fullmatch(r"features\.(\d+)\.weight", k)))
    arch = _arch_for(path, len(conv_ks), "features.*.weight keys")
    expected_ks = TORCHVISION_INDICES[arch]
    expected = {f"features.{k}.{p}" for k in expected_ks for p in ("weight", "bias")}
    if features != expected:
        extra, missing = sorted(features - expected), sorted(expected - features)
        key = (extra or missing)[0]
        raise WeightsError(path, f"{'unexpected' if extra else 'missing'} key {key!r} for {arch}",
                           "pass a plain (non batch-norm) torchvision-layout VGG state_dict")
    keys = {name: f"features.{k}" for name, k in zip(vgg.conv_names(arch), expected_ks)}
    return arch, _oihw_convs(path, arch, arrays, keys, "pass a VGG state_dict")


def _oihw_convs(path, arch: str, arrays: dict, keys: dict, fix: str) -> dict:
    """``{conv name: (kernel HWIO, bias)}`` from PyTorch-layout arrays ``{prefix}.weight`` (OIHW) / ``.bias``,
    ``keys`` mapping each conv name to its prefix."""
    convs = {}
    for name, prefix in keys.items():
        wk, bk = f"{prefix}.weight", f"{prefix}.bias"
        w = np.asarray(arrays[wk])
        if w.ndim != 4:
            raise WeightsError(path, f"key {wk!r} has shape {w.shape}, expected OIHW", fix)
        convs[name] = _checked(path, arch, name, wk, w.transpose(2, 3, 1, 0), bk, arrays[bk],  # OIHW -> HWIO
                               layout="OIHW", source_shape=w.shape)
    return convs


def _from_gatys_keys(path, arrays: dict) -> tuple[str, dict]:
    """``conv{b}_{i}.weight`` OIHW / ``conv{b}_{i}.bias`` (Gatys et al.'s vgg_conv.pth has convs only)."""
    weight_keys = [k for k in arrays if re.fullmatch(r"conv\d_\d\.weight", k)]
    arch = _arch_for(path, len(weight_keys), "conv*_*.weight keys")
    expected = {f"{n}.{p}" for n in vgg.conv_names(arch) for p in ("weight", "bias")}
    if set(arrays) != expected:
        extra, missing = sorted(set(arrays) - expected), sorted(expected - set(arrays))
        key = (extra or missing)[0]
        raise WeightsError(path, f"{'unexpected' if extra else 'missing'} key {key!r} for {arch} (Gatys layout)",
                           "pass an unmodified vgg_conv.pth")
    return arch, _oihw_convs(path, arch, arrays, {n: n for n in vgg.conv_names(arch)}, "pass vgg_conv.pth")


def _keys_kind(path, arrays: dict) -> str:
    if any(k.startswith("features.") for k in arrays):
        return "torchvision"
    if any(re.fullmatch(r"conv\d_\d\.weight", k) for k in arrays):
        return "gatys"
    first = next(iter(arrays), None)
    raise WeightsError(path, f"unrecognised keys (first {first!r}); expected features.N.weight or conv1_1.weight",
                       "pass a torchvision, Caffe-converted or Gatys VGG state_dict")


def _read_keras(path) -> tuple[str, dict]:
    """Keras-2 legacy HDF5: root attr ``layer_names``; each layer group's ``weight_names`` lists kernel, bias."""
    import h5py

    def strings(attr) -> list[str]:
        return [s.decode("utf8") if isinstance(s, bytes) else str(s) for s in np.asarray(attr).reshape(-1)]

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(path, f"unreadable or truncated HDF5 file ({e})", "download the file again") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f  # full-model saves nest the weights
        if "layer_names" not in root.attrs:
            raise WeightsError(path, "HDF5 file without a 'layer_names' attribute (not a Keras-2 weights file)",
                               "pass vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5")
        convs_by_layer = []
        for layer in strings(root.attrs["layer_names"]):
            if layer not in root:
                raise WeightsError(path, f"layer {layer!r} is listed in 'layer_names' but missing",
                                   "download the file again")
            group = root[layer]
            names = strings(group.attrs.get("weight_names", []))
            if not names:
                continue  # input, pooling, flatten: no weights
            m = re.fullmatch(r"block(\d)_conv(\d)", layer)
            if m is None:
                if layer in ("fc1", "fc2", "predictions"):
                    continue  # the fully connected head is never needed
                raise WeightsError(path, f"unexpected layer {layer!r} with weights {names}",
                                   "pass an unmodified Keras VGG weights file")
            if len(names) != 2:
                raise WeightsError(path, f"layer {layer!r} lists {len(names)} weights {names}, expected kernel "
                                         "and bias", "pass an unmodified Keras VGG weights file")
            try:
                kernel, bias = (np.asarray(group[n]) for n in names)
            except (KeyError, OSError) as e:
                raise WeightsError(path, f"dataset {layer}/{names[0]!r} unreadable ({e})",
                                   "download the file again") from None
            convs_by_layer.append((f"conv{m.group(1)}_{m.group(2)}", f"{layer}/{names[0]}", kernel,
                                   f"{layer}/{names[1]}", bias))
    arch = _arch_for(path, len(convs_by_layer), "block*_conv* layers")
    order = [c[0] for c in convs_by_layer]
    if tuple(order) != vgg.conv_names(arch):
        bad = next(n for n, want in zip(order, vgg.conv_names(arch)) if n != want)
        raise WeightsError(path, f"layer order differs from {arch} at {bad!r}", "pass an unmodified Keras file")
    # Keras kernels are already HWIO.
    return arch, {name: _checked(path, arch, name, kk, k, bk, b) for name, kk, k, bk, b in convs_by_layer}


def _field(obj, *names):
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    return None


def _read_matconvnet(path) -> tuple[str, dict, vgg.Preprocess]:
    """MatConvNet ``.mat``: cell array ``layers`` of structs; conv weights ``[W,H,in,out]``; stored mean pixel."""
    sio = _require("scipy.io", path)
    try:
        mat = sio.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as e:  # scipy raises ValueError/TypeError/MatReadError for damaged files
        raise WeightsError(path, f"unreadable or truncated MATLAB file ({type(e).__name__})",
                           "download the file again") from None
    if "layers" not in mat:
        raise WeightsError(path, "no 'layers' variable (not a MatConvNet model)", "pass imagenet-vgg-verydeep-19.mat")
    convs_by_layer = []
    for index, layer in enumerate(np.atleast_1d(mat["layers"])):
        if str(_field(layer, "type")) != "conv":
            continue
        name = str(_field(layer, "name"))
        m = re.fullmatch(r"conv(\d)_(\d)", name)
        if m is None:
            continue  # fc6-fc8 are stored as convolutions: the head, never needed
        weights_cell = _field(layer, "weights")
        if weights_cell is not None:  # newer files: weights = {W, b}
            cell = np.atleast_1d(np.asarray(weights_cell, dtype=object))
            if cell.size != 2:
                raise WeightsError(path, f"layers{{{index + 1}}} ({name}).weights has {cell.size} entries, "
                                         "expected {W, b}", "pass an unmodified MatConvNet model")
            kernel, bias = cell[0], cell[1]
        else:  # older files: separate filters / biases fields
            kernel, bias = _field(layer, "filters"), _field(layer, "biases")
            if kernel is None or bias is None:
                raise WeightsError(path, f"layers{{{index + 1}}} ({name}) has neither 'weights' nor "
                                         "'filters'/'biases'", "pass an unmodified MatConvNet model")
        kernel, bias = np.asarray(kernel), np.asarray(bias)
        if kernel.ndim != 4:
            raise WeightsError(path, f"{name}.weights{{1}} has shape {kernel.shape}, expected [W,H,in,out]",
                               "pass an unmodified MatConvNet model")
        # MatConvNet stores [W, H, in, out] (MATLAB's column-major view); HWIO swaps the first two axes.
        # Biases come as (1, out) or (out, 1); squeeze_me already made them (out,).
        convs_by_layer.append((f"conv{m.group(1)}_{m.group(2)}", f"{name}.weights{{1}}", kernel.transpose(1, 0, 2, 3),
                               f"{name}.weights{{2}}", bias.reshape(-1), kernel.shape))
    arch = _arch_for(path, len(convs_by_layer), "conv-type layers named conv*_*")
    if tuple(c[0] for c in convs_by_layer) != vgg.conv_names(arch):
        raise WeightsError(path, f"conv layer names/order differ from {arch}", "pass an unmodified MatConvNet model")
    convs = {name: _checked(path, arch, name, kk, k, bk, b, layout="[W,H,in,out]", source_shape=shape)
             for name, kk, k, bk, b, shape in convs_by_layer}

    return arch, convs, vgg.matconvnet_preset(_matconvnet_mean(path, mat))


def _matconvnet_mean(path, mat) -> np.ndarray:
    """The mean pixel MatConvNet subtracts (RGB, 0-255), from ``meta.normalization.averageImage``."""
    meta = mat.get("meta")
    normalization = _field(meta, "normalization") if meta is not None else None
    if normalization is None:
        normalization = mat.get("normalization")  # older files keep it at the top level
    average = _field(normalization, "averageImage") if normalization is not None else None
    if average is None:
        raise WeightsError(path, "no normalization.averageImage (mean pixel) found",
                           "pass an unmodified MatConvNet model, or --preset to choose the preprocessing")
    average = np.asarray(average, dtype=np.float64)
    if average.size == 3:
        mean = average.reshape(3)
    elif average.ndim == 3 and average.shape[-1] == 3:
        mean = average.mean(axis=(0, 1))  # older files store a whole mean image; the model uses its mean pixel
    else:
        raise WeightsError(path, f"normalization.averageImage has shape {average.shape}, expected 3 or HxWx3",
                           "pass an unmodified MatConvNet model")
    if not np.all(np.isfinite(mean)):
        raise WeightsError(path, "normalization.averageImage contains non-finite values", "download the file again")
    return mean



def _onnx_model(path):
    onnx = _require("onnx", path)
    try:
        return onnx, onnx.load(path)  # parses the protobuf (and external data beside it); never runs the graph
    except Exception as e:  # DecodeError for damaged bytes, OSError for missing external data
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise WeightsError(path, f"unreadable or truncated ONNX file ({type(e).__name__}: {first})",
                           "download or export the file again") from None


def _onnx_constants(onnx, graph) -> dict:
    """Every named constant tensor: initializers, Constant nodes' values, and Identity nodes of those."""
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    constants[node.output[0]] = attr.t
        elif node.op_type == "Identity" and node.input and node.input[0] in constants:
            constants[node.output[0]] = constants[node.input[0]]
    return constants


def _onnx_conv_ok(onnx, node) -> bool:
    """A VGG conv: 3x3, stride 1, "same" padding (explicit 1s or SAME_*), no dilation or groups."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    same = pads == [1, 1, 1, 1] or (auto in ("SAME_UPPER", "SAME_LOWER") and not any(pads))
    return (list(attrs.get("kernel_shape", [3, 3])) == [3, 3] and list(attrs.get("strides", [1, 1])) == [1, 1]
            and list(attrs.get("dilations", [1, 1])) == [1, 1] and attrs.get("group", 1) == 1 and same)


def _read_onnx(path) -> tuple[str, dict, str]:
    """ONNX graph: the Conv nodes in graph order, OIHW kernels from initializers or Constant nodes.

    The graph is parsed, never executed. NCHW graphs (``torch.onnx.export``, the model zoo) and NHWC graphs
    (tf2onnx, whose Transpose moves the activations, not the kernels) store kernels alike. Convolutions that
    are not 3x3 after the last VGG conv (a head written as convolutions) are the head and are dropped.
    Returns ``(arch, convs, producer)``.
    """
    onnx, model = _onnx_model(path)
    from onnx import numpy_helper

    graph = model.graph
    constants = _onnx_constants(onnx, graph)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    vgg_convs = list(convs)
    while vgg_convs and not _onnx_conv_ok(onnx, vgg_convs[-1]) and len(vgg_convs) > 13:
        vgg_convs.pop()  # fully convolutional head (fc6 as a 7x7 conv ...)
    # Batch norm among the VGG convs (graph order is topological) changes the features: a batch-norm VGG. In the
    # dense head (fine-tuned VGGs often have one) it does not.
    last = vgg_convs[-1].output[0] if vgg_convs else None
    end = next((i for i, n in enumerate(graph.node) if n.op_type == "Conv" and n.output[0] == last), -1)
    if any(n.op_type == "BatchNormalization" and (i < end or last in n.input) for i, n in enumerate(graph.node)):
        raise WeightsError(path, "the graph has BatchNormalization nodes (a batch-norm VGG)",
                           "export a plain VGG16/VGG19 without batch norm")
    if not convs:
        raise WeightsError(path, "the ONNX graph has no Conv nodes", "pass a VGG16 or VGG19 ONNX model")
    arch = _arch_for(path, len(vgg_convs), "Conv nodes")
    out = {}
    for name, node in zip(vgg.conv_names(arch), vgg_convs):
        label = node.name or node.output[0]
        if not _onnx_conv_ok(onnx, node):
            raise WeightsError(path, f"Conv node {label!r} ({name}) is not a 3x3 stride-1 'same' convolution",
                               "pass a VGG16 or VGG19 ONNX model")
        if len(node.input) < 3 or not node.input[2]:
            raise WeightsError(path, f"Conv node {label!r} ({name}) has no bias", "pass an unmodified VGG model")
        missing = [i for i in node.input[1:3] if i not in constants]
        if missing:
            raise WeightsError(path, f"Conv node {label!r} ({name}): weight {missing[0]!r} is computed, not stored "
                                     "as an initializer or Constant", "export the model with its weights as constants")
        try:
            w, b = (numpy_helper.to_array(constants[i]) for i in node.input[1:3])
        except Exception as e:  # a tensor whose raw bytes do not match its declared shape
            raise WeightsError(path, f"tensor of Conv node {label!r} ({name}) is damaged ({type(e).__name__})",
                               "download or export the file again") from None
        if w.ndim != 4:
            raise WeightsError(path, f"weight {node.input[1]!r} ({name}) has shape {w.shape}, expected OIHW",
                               "pass an unmodified VGG model")
        out[name] = _checked(path, arch, name, node.input[1], w.transpose(2, 3, 1, 0), node.input[2], b,
                             layout="OIHW", source_shape=w.shape)  # OIHW -> HWIO
    return arch, out, model.producer_name


# ---------------------------------------------------------------------------------------------- front door


def read_source(path, format: str = "auto", preset: str | None = None) -> Source:
    """Read a source weights file. ``format``: ``"auto"`` (from the contents) or one of :data:`FORMATS`.

    ``preset`` overrides the preprocessing preset; it is required for torchvision-layout files whose origin
    (torchvision or Caffe) cannot be known from their contents or published name.
    """
    path = check_readable(path)
    if format != "auto" and format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; expected auto or one of {', '.join(FORMATS)}")
    if preset is not None and preset not in vgg.PRESETS:
        raise UsageError(f"unknown preset {preset!r}; expected one of {', '.join(vgg.PRESETS)}")
    container = detect_format(path)
    # torchvision, caffe-pth and gatys name the key layout (and preset); it may sit in a safetensors file.
    allowed = {"keras": ("keras",), "matconvnet": ("matconvnet",), "safetensors": ("safetensors",),
               "onnx": ("onnx",)}.get(format, ("torch", "safetensors"))
    if format != "auto" and container not in allowed:
        raise WeightsError(path, f"--format {format} given but the file's contents are {container}",
                           "use --format auto or the right --format")

    if container == "keras":
        arch, convs = _read_keras(path)
        return Source(arch, convs, vgg.PRESETS[preset or "caffe"], "keras")
    if container == "matconvnet":
        arch, convs, stored = _read_matconvnet(path)
        return Source(arch, convs, vgg.PRESETS[preset] if preset else stored, "matconvnet")
    if container == "onnx":
        arch, convs, producer = _read_onnx(path)
        known = KNOWN_ONNX_FILES.get(os.path.basename(path)) or ONNX_PRODUCER_PRESET.get(producer)
        if preset is None and known is None:
            raise WeightsError(path, f"the preprocessing of this ONNX file (producer {producer or 'unknown'!r}) "
                                     "cannot be known from its contents",
                               "pass --preset torchvision or --preset caffe (see the exporter's documentation)")
        return Source(arch, convs, vgg.PRESETS[preset or known], "onnx")

    arrays = _load_safetensors(path) if container == "safetensors" else load_torch_state_dict(path)
    kind = _keys_kind(path, arrays)
    if (format == "gatys" and kind != "gatys") or (format in ("torchvision", "caffe-pth") and kind != "torchvision"):
        raise WeightsError(path, f"--format {format} given but the keys are {kind}-style",
                           "use --format auto or the right --format")
    if kind == "gatys":
        arch, convs = _from_gatys_keys(path, arrays)
        return Source(arch, convs, vgg.PRESETS[preset or "gatys"],
                      "safetensors" if container == "safetensors" else "gatys")
    arch, convs = _from_torchvision_keys(path, arrays)
    origin = format if format in ("torchvision", "caffe-pth") else KNOWN_FILES.get(os.path.basename(path))
    if preset is None:
        if origin is None:
            raise WeightsError(path, "torchvision-layout weights are ambiguous: torchvision's and Caffe-converted "
                                     "files have the same keys",
                               "pass --preset torchvision or --preset caffe (or --format torchvision/caffe-pth)")
        preset = FORMAT_PRESET[origin]
    if container == "safetensors":
        source_format = "safetensors"
    else:
        source_format = origin or ("caffe-pth" if preset == "caffe" else "torchvision")
    return Source(arch, convs, vgg.PRESETS[preset], source_format)


def check_output(out, src: str, overwrite: bool) -> str:
    """``out`` if a converted file may be written there: never the source, a folder, or (without
    ``overwrite``) an existing file."""
    out = os.fspath(out)
    if os.path.exists(out) and os.path.samefile(out, src) or os.path.abspath(out) == os.path.abspath(src):
        raise UsageError(f"{out}: the output would overwrite the source file — choose another -o path")
    if os.path.isdir(out):
        raise UsageError(f"{out}: is a directory — pass an output file name such as weights/vgg19.npz")
    if os.path.exists(out) and not overwrite:
        raise UsageError(f"{out}: already exists — pass --force to overwrite it")
    return out


def default_output(arch: str) -> str:
    return os.path.join("weights", f"{arch}.npz")


def convert(src, dst=None, *, format: str = "auto", preset: str | None = None, overwrite: bool = False,
            source_name: str | None = None, provenance: dict | None = None) -> dict:
    """Convert ``src`` and write the result atomically to ``dst`` (default ``weights/<arch>.npz``).

    Refuses to overwrite ``dst`` unless ``overwrite`` and never writes over ``src``. ``source_name`` is the
    name recorded for the source (defaults to ``src``'s file name; download passes the published name);
    ``provenance`` is stored in the file's metadata (see :mod:`jaxstyle.nets.weights`). Returns a summary: ``arch, preset, layers, source, source_sha256, source_format, output``.
    """
    src = check_readable(src)
    if dst is not None:
        dst = check_output(dst, src, overwrite)  # fail before the (slow) read
    source = read_source(src, format=format, preset=preset)
    dst = check_output(dst if dst is not None else default_output(source.arch), src, overwrite)
    sha = file_sha256(src)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        weights.save_converted(dst, source.arch, source.convs, source.preprocess,
                               source=source_name or os.path.basename(src), source_sha256=sha,
                               source_format=source.source_format, provenance=provenance)
    except OSError as e:
        raise WeightsError(dst, f"cannot write the converted file ({e.strerror or e})",
                           "choose another -o path") from None
    return {"arch": source.arch, "preset": source.preprocess.name, "layers": len(source.convs),
            "source": source_name or os.path.basename(src), "source_sha256": sha,
            "source_format": source.source_format, "output": dst}

