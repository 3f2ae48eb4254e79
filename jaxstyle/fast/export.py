"""Export a trained style network to ONNX, for onnxruntime, TensorRT, OpenVINO, browsers (onnxruntime-web) ...

The graph is written node by node with ``onnx.helper`` from the network's parameters, walking its layer sequence
(:func:`jaxstyle.fast.layers.sequence`: ``c9s1-w, d2w, d4w, R4w x n, u2w, uw, c9s1-3``), with
standard operators only (opset 17): ``Pad`` (reflect), ``Conv``, ``InstanceNormalization``, ``Resize`` (nearest,
asymmetric/floor = repeat x2), ``Relu``, ``Add``, ``Clip``, ``Slice``. Not a jaxpr converter (``jax2onnx`` would
pin an older orbax-checkpoint than flax brings): the network is small and fixed, and
``tests/test_fast_export.py`` runs every exported file in onnxruntime against :func:`jaxstyle.fast.apply`.

Interface of the exported file (NCHW, the ONNX convention):

- input ``images``: float32 ``(N, 3, H, W)``, RGB in [0, 1], any N, H, W >= 4 (padded to a multiple of 4 inside
  and cropped back, as the Flax module does);
- input ``style`` (only for networks with several styles): float32 ``(1, n_styles)`` weights, normalised by the
  caller to sum 1; it defaults to the mix chosen at export (an initializer of the same name, ONNX's way of giving
  an input a default), so ``session.run(None, {"images": x})`` works;
- output ``stylized``: float32 ``(N, 3, H, W)`` in [0, 1].

Colour preservation (``--original-colors``) is a post-process of :func:`jaxstyle.fast.apply`, not part of the graph.
"""

from __future__ import annotations

import json

import numpy as np

from ..atomic import atomic_write
from ..errors import UsageError
from . import layers
from .net import EPS, FastModel

OPSET = 17


class _Graph:
    """Accumulates nodes and initializers; every tensor gets a fresh name."""

    def __init__(self, onnx):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, stem: str, value) -> str:
        name = self.name(stem)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs, stem: str | None = None, **attrs) -> str:
        out = self.name(stem or op_type.lower())
        self.nodes.append(self.h.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _conv(g: _Graph, x: str, p: dict, op: layers.Conv) -> str:
    """``ConvLayer``: [nearest x2] -> reflection pad k//2 -> conv (Flax HWIO kernel -> ONNX OIHW)."""
    if op.upsample:
        x = g.op("Resize", [x, "", g.const("scales", np.array([1, 1, 2, 2], np.float32))], mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    if op.pad:
        x = g.op("Pad", [x, g.const("pads", np.array([0, 0, op.pad, op.pad] * 2, np.int64))], mode="reflect")
    w = np.transpose(np.asarray(p["conv"]["kernel"], np.float32), (3, 2, 0, 1))
    b = np.asarray(p["conv"]["bias"], np.float32)
    return g.op("Conv", [x, g.const("W", w), g.const("B", b)], kernel_shape=[op.kernel] * 2, strides=[op.stride] * 2)


def _norm(g: _Graph, x: str, p: dict, style: str | np.ndarray) -> str:
    """Conditional instance norm: plain instance norm, then ``gamma = style @ scale``, ``beta = style @ bias``."""
    scale, bias = np.asarray(p["scale"], np.float32), np.asarray(p["bias"], np.float32)
    c = scale.shape[1]
    if isinstance(style, np.ndarray):  # one style, or a mix fixed at export: fold into the normalisation
        return g.op("InstanceNormalization", [x, g.const("gamma", style @ scale), g.const("beta", style @ bias)],
                    epsilon=EPS)
    y = g.op("InstanceNormalization", [x, g.const("one", np.ones(c, np.float32)),
                                       g.const("zero", np.zeros(c, np.float32))], epsilon=EPS)
    shape = g.const("shape", np.array([1, c, 1, 1], np.int64))
    gamma = g.op("Reshape", [g.op("MatMul", [style, g.const("scale", scale)]), shape])
    beta = g.op("Reshape", [g.op("MatMul", [style, g.const("bias", bias)]), shape])
    return g.op("Add", [g.op("Mul", [y, gamma]), beta])


def _body(g: _Graph, x: str, params: dict, net, style) -> str:
    """The network's layer sequence (:func:`jaxstyle.fast.layers.sequence`) on a padded NCHW tensor."""
    saved = []
    for op in layers.sequence(net):
        if isinstance(op, layers.Conv):
            x = _conv(g, x, layers.lookup(params, op.path), op)
        elif isinstance(op, layers.Norm):
            x = _norm(g, x, layers.lookup(params, op.path), style)
            x = g.op("Relu", [x]) if op.relu else x
        elif isinstance(op, layers.SaveResidual):
            saved.append(x)
        else:
            x = g.op("Add", [saved.pop(), x])
    return x


def _pad_to_multiple_of_4(g: _Graph, images: str) -> tuple[str, str]:
    """Reflection-pad H and W at the end up to a multiple of 4; returns (padded, original HW as int64 (2,))."""
    hw = g.op("Slice", [g.op("Shape", [images]), g.const("s", np.array([2], np.int64)),
                        g.const("e", np.array([4], np.int64))])
    four = g.const("four", np.array([4], np.int64))
    extra = g.op("Mod", [g.op("Sub", [four, g.op("Mod", [hw, four])]), four])
    pads = g.op("Concat", [g.const("zeros", np.zeros(6, np.int64)), extra], axis=0)
    return g.op("Pad", [images, pads], mode="reflect"), hw


def build_graph(model: FastModel, mix: np.ndarray, onnx=None):
    """The ONNX ``ModelProto`` of ``model`` with ``mix`` (``(n_styles,)``, sums to 1) as the style (default)."""
    if onnx is None:
        import onnx
    net = model.net
    g = _Graph(onnx)
    style: str | np.ndarray = np.asarray(mix, np.float32)
    inputs = [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])]
    if net.n_styles > 1:
        inputs.append(onnx.helper.make_tensor_value_info("style", onnx.TensorProto.FLOAT, [1, net.n_styles]))
        g.inits.append(onnx.numpy_helper.from_array(style[None], "style"))
        style = "style"
    padded, hw = _pad_to_multiple_of_4(g, "images")
    y = _body(g, padded, model.params, net, style)
    y = g.op("Slice", [y, g.const("starts", np.zeros(2, np.int64)), hw, g.const("axes", np.array([2, 3], np.int64))])
    g.nodes.append(onnx.helper.make_node("Clip", [y, g.const("lo", np.float32(0)), g.const("hi", np.float32(1))],
                                         ["stylized"]))
    output = onnx.helper.make_tensor_value_info("stylized", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = onnx.helper.make_graph(g.nodes, "jaxstyle_fast_style", inputs, [output], g.inits)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="jaxstyle")
    # The model's metadata (styles, training configuration, provenance) travels in the file's metadata_props.
    onnx.helper.set_model_props(proto, {"jaxstyle": json.dumps(model.meta, sort_keys=True, default=str)})
    proto.ir_version = 8  # onnxruntime >= 1.14 reads it; newer IRs would lock out older runtimes
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: FastModel, path, mix: np.ndarray) -> None:
    """Write ``model`` as an ONNX file at ``path`` atomically (see the module docstring for its interface)."""
    try:
        import onnx
    except ImportError:
        raise UsageError("ONNX export needs the onnx package: pip install 'jaxstyle[onnx]'") from None
    proto = build_graph(model, mix, onnx)
    with atomic_write(path, "wb") as f:
        f.write(proto.SerializeToString())
