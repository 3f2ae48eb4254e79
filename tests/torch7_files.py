"""Test-side Torch7 files: a writer of the binary serialisation (torch7's File.lua ``writeObject``, written here
from the public format, independently of jaxstyle.io.torch7), the networks jcjohnson/fast-neural-style's
models.lua builds (padding_type reflect-start), and an independent PyTorch forward of the same module list.

A module is ``M(classname, **fields)``; containers hold ``modules=[...]``. Numpy float arrays are written as
``torch.FloatTensor`` (their own ``FloatStorage``), dicts and lists as Lua tables (lists with keys 1..n), and an
object met a second time as a reference to the first, as Torch7 does.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import torch
import torch.nn.functional as F

VGG_MEAN_BGR = (103.939, 116.779, 123.68)
RESNET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class M:
    def __init__(self, classname, **fields):
        self.classname, self.fields = classname, fields


class Function:
    """A Lua function (bytecode): Torch7 can serialise one; the reader must refuse it."""


def write_t7(obj) -> bytes:
    out, refs = io.BytesIO(), {}

    def i32(v):
        out.write(struct.pack("<i", v))

    def i64(*vs):
        out.write(struct.pack(f"<{len(vs)}q", *vs))

    def string(s):
        b = s.encode()
        i32(len(b))
        out.write(b)

    def ref(o, tag) -> bool:
        i32(tag)
        if id(o) in refs:
            i32(refs[id(o)][0])
            return True
        refs[id(o)] = (len(refs) + 1, o)  # keep o alive so its id is not reused
        i32(refs[id(o)][0])
        return False

    def tensor(a):
        a = np.ascontiguousarray(a, np.float32)
        string("V 1"), string("torch.FloatTensor")
        i32(a.ndim)
        if a.ndim:
            i64(*a.shape), i64(*(s // 4 for s in a.strides))
        i64(2)  # 1-based offset 2: the storage starts with one element that is not the tensor's
        i32(4), i32(len(refs) + 1)
        refs[("storage", id(a))] = (len(refs) + 1, a)
        string("V 1"), string("torch.FloatStorage")
        i64(a.size + 1)
        out.write(np.concatenate([[np.float32(-7)], a.ravel()]).astype("<f4").tobytes())

    def write(o):
        if o is None:
            i32(0)
        elif isinstance(o, bool):
            i32(5), i32(int(o))
        elif isinstance(o, (int, float)):
            i32(1), out.write(struct.pack("<d", float(o)))
        elif isinstance(o, str):
            i32(2), string(o)
        elif isinstance(o, Function):
            i32(6), i32(len(refs) + 1), i32(4), out.write(b"\x1bLua"), write(None)
        elif isinstance(o, np.ndarray):
            if not ref(o, 4):
                tensor(o)
        elif isinstance(o, M):
            if not ref(o, 4):
                string("V 1"), string(o.classname)
                write({k: ({i + 1: m for i, m in enumerate(v)} if k == "modules" else v) for k, v in o.fields.items()})
        elif isinstance(o, (dict, list)):
            if not ref(o, 3):
                items = list(o.items()) if isinstance(o, dict) else [(i + 1, v) for i, v in enumerate(o)]
                i32(len(items))
                for k, v in items:
                    write(k), write(v)
        else:
            raise TypeError(type(o))

    write(obj)
    return out.getvalue()


# --------------------------------------------------------------------------------- models.lua's networks


def _rand(rng, *shape, scale=0.3):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


EMPTY = np.zeros((0,), np.float32)  # shared by every module's output/gradInput: written once, then referenced


def _module(classname, **fields):
    return M(classname, output=EMPTY, gradInput=EMPTY, train=False, _type="torch.FloatTensor", **fields)


def conv(rng, cin, cout, k, s, p, mm=False):
    w = _rand(rng, cout, cin, k, k, scale=1 / np.sqrt(cin * k * k))
    return _module("nn.SpatialConvolutionMM" if mm else "nn.SpatialConvolution", nInputPlane=cin,
                   nOutputPlane=cout, kW=k, kH=k, dW=s, dH=s, padW=p, padH=p,
                   weight=w.reshape(cout, -1) if mm else w, bias=_rand(rng, cout))


def norm(rng, c, kind, old_std=False, eps=1e-5):
    if kind == "instance":
        return _module("nn.InstanceNormalization", nOutput=c, eps=eps, prev_N=-1,
                       weight=1 + _rand(rng, c), bias=_rand(rng, c))
    var = (0.5 + rng.random(c)).astype(np.float32)
    fields = dict(eps=eps, momentum=0.1, affine=True, weight=1 + _rand(rng, c), bias=_rand(rng, c),
                  running_mean=_rand(rng, c))
    fields.update(running_std=(1 / np.sqrt(var + 1e-5)).astype(np.float32)) if old_std else fields.update(
        running_var=var)
    return _module("nn.SpatialBatchNormalization", **fields)


def relu():
    return _module("nn.ReLU", threshold=0, val=0, inplace=True)


def up(rng, cin, cout, kind):
    if kind == "transpose":
        return [_module("nn.SpatialFullConvolution", nInputPlane=cin, nOutputPlane=cout, kW=3, kH=3, dW=2, dH=2,
                        padW=1, padH=1, adjW=1, adjH=1, weight=_rand(rng, cin, cout, 3, 3, scale=0.2),
                        bias=_rand(rng, cout))]
    return [_module("nn.SpatialUpSamplingNearest", scale_factor=2), conv(rng, cin, cout, 3, 1, 1)]


def residual(rng, c, kind, eps):
    body = M("nn.Sequential", modules=[conv(rng, c, c, 3, 1, 0), norm(rng, c, kind, eps=eps), relu(),
                                       conv(rng, c, c, 3, 1, 0), norm(rng, c, kind, eps=eps)])
    return M("nn.Sequential", modules=[M("nn.ConcatTable", modules=[body, _module("nn.ShaveImage", size=2)]),
                                       _module("nn.CAddTable")])


def network(seed=0, width=4, n_residual=2, norm_kind="instance", upsample="transpose", tanh=150.0, eps=1e-5):
    """models.lua's build_model for ``c9s1-w,d2w,d4w,R4w x n,u2w,uw,c9s1-3`` (or ``U2,c3s1`` for nearest)
    with the reflection padding train.lua inserts first; the first layers are nested in a Sequential and the
    last conv is a SpatialConvolutionMM (2-D weight), as older checkpoints have them."""
    rng = np.random.default_rng(seed)
    w1, w2, w4 = width, 2 * width, 4 * width
    p = 8 * n_residual
    head = M("nn.Sequential", modules=[_module("nn.SpatialReflectionPadding", pad_l=p, pad_r=p, pad_t=p, pad_b=p),
                                       conv(rng, 3, w1, 9, 1, 4), norm(rng, w1, norm_kind, eps=eps), relu()])
    mods = [head, conv(rng, w1, w2, 3, 2, 1), norm(rng, w2, norm_kind, old_std=True, eps=eps), relu(),
            conv(rng, w2, w4, 3, 2, 1), norm(rng, w4, norm_kind, eps=eps), relu()]
    mods += [residual(rng, w4, norm_kind, eps) for _ in range(n_residual)]
    mods += up(rng, w4, w2, upsample) + [norm(rng, w2, norm_kind, eps=eps), relu()]
    mods += up(rng, w2, w1, upsample) + [norm(rng, w1, norm_kind, eps=eps), relu()]
    mods += [conv(rng, w1, 3, 9, 1, 4, mm=True), _module("nn.Tanh"), _module("nn.MulConstant", constant_scalar=tanh),
             _module("nn.TotalVariation", strength=1e-6)]
    return M("nn.Sequential", modules=mods)


def checkpoint(model, preprocessing="vgg"):
    opt = {"arch": "c9s1-4,d8,d16,R16,R16,u8,u4,c9s1-3", "padding_type": "reflect-start", "tanh_constant": 150,
           "style_image": "images/styles/candy.jpg"}
    if preprocessing is not None:
        opt["preprocessing"] = preprocessing
    return {"opt": opt, "model": model, "train_loss_history": [3.5, 2.25]}


# ------------------------------------------------------------------------- the independent PyTorch forward


def _t(a):
    return torch.tensor(np.asarray(a, np.float32))


def forward(module: M, x: torch.Tensor) -> torch.Tensor:
    """Torch7 semantics of each module (nn's and fast-neural-style's Lua sources), in PyTorch."""
    f, name = module.fields, module.classname
    if name == "nn.Sequential":
        if [m.classname for m in f["modules"]] == ["nn.ConcatTable", "nn.CAddTable"]:
            outs = [forward(m, x) for m in f["modules"][0].fields["modules"]]
            return outs[0] + outs[1]
        for m in f["modules"]:
            x = forward(m, x)
        return x
    if name == "nn.SpatialReflectionPadding":
        return F.pad(x, (f["pad_l"], f["pad_r"], f["pad_t"], f["pad_b"]), mode="reflect")
    if name in ("nn.SpatialConvolution", "nn.SpatialConvolutionMM"):
        w = _t(f["weight"]).reshape(f["nOutputPlane"], f["nInputPlane"], f["kH"], f["kW"])
        return F.conv2d(x, w, _t(f["bias"]), stride=f["dW"], padding=f["padW"])
    if name == "nn.SpatialFullConvolution":
        return F.conv_transpose2d(x, _t(f["weight"]), _t(f["bias"]), stride=2, padding=1, output_padding=1)
    if name == "nn.InstanceNormalization":  # a training-mode batch norm over the (1, N*C, H, W) view
        n, c, h, w = x.shape
        y = F.batch_norm(x.reshape(1, n * c, h, w), None, None, training=True, eps=f["eps"])
        return y.reshape(n, c, h, w) * _t(f["weight"])[:, None, None] + _t(f["bias"])[:, None, None]
    if name == "nn.SpatialBatchNormalization":
        var = _t(f["running_var"]) if "running_var" in f else _t(f["running_std"]) ** -2 - f["eps"]
        return F.batch_norm(x, _t(f["running_mean"]), var, _t(f["weight"]), _t(f["bias"]), False, eps=f["eps"])
    if name == "nn.ShaveImage":
        s = f["size"]
        return x[:, :, s:-s, s:-s]
    simple = {"nn.ReLU": F.relu, "nn.Tanh": torch.tanh, "nn.TotalVariation": lambda v: v,
              "nn.SpatialUpSamplingNearest": lambda v: F.interpolate(v, scale_factor=2, mode="nearest"),
              "nn.MulConstant": lambda v: v * f.get("constant_scalar", 1.0)}
    return simple[name](x)


def stylize(model: M, rgb01: np.ndarray, preprocessing="vgg") -> np.ndarray:
    """fast_neural_style.lua's run_image without the median filter: preprocess, forward, deprocess (HWC RGB)."""
    x = torch.tensor(np.ascontiguousarray(rgb01.transpose(2, 0, 1))[None], dtype=torch.float64).float()
    if preprocessing == "vgg":
        x = x[:, [2, 1, 0]] * 255 - torch.tensor(VGG_MEAN_BGR).view(1, 3, 1, 1)
    else:
        x = (x - torch.tensor(RESNET[0]).view(1, 3, 1, 1)) / torch.tensor(RESNET[1]).view(1, 3, 1, 1)
    with torch.no_grad():
        y = forward(model, x.float())
    if preprocessing == "vgg":
        y = ((y + torch.tensor(VGG_MEAN_BGR).view(1, 3, 1, 1)) / 255)[:, [2, 1, 0]]
    else:
        y = y * torch.tensor(RESNET[1]).view(1, 3, 1, 1) + torch.tensor(RESNET[0]).view(1, 3, 1, 1)
    return y[0].numpy().transpose(1, 2, 0)
