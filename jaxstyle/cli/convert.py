"""``jaxstyle convert``: turn a downloaded VGG weights file into jaxstyle's validated ``.npz``, or a fast style
network published by pytorch/examples or jcjohnson/fast-neural-style into a jaxstyle model file."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..nets import convert as converter
from ..nets import vgg

STYLE_FORMATS = ("pytorch-examples", "fast-neural-style")  # jaxstyle.fast.importers.FORMATS (imported lazily)

HELP = ("convert pretrained VGG weights (Keras, torchvision, Caffe .pth, Gatys, MatConvNet, safetensors), or a "
        "published fast style network (pytorch/examples .pth, fast-neural-style .t7)")
DESCRIPTION = """\
Convert pretrained VGG19/VGG16 weights into jaxstyle's pickle-free .npz (conv layers only; the fully
connected head is dropped). The architecture is inferred from the file (16 convs = VGG19, 13 = VGG16) and the
preprocessing the weights expect is recorded with them. Sources, URLs and checksums: weights/README.md.

A fast style network trained by pytorch/examples' fast_neural_style (a TransformerNet state_dict such as
candy.pth) or by jcjohnson/fast-neural-style (a .t7 checkpoint such as candy.t7) becomes a model file for
`jaxstyle apply` (default models/<name>.npz), with the original network's conventions: docs/fast.md."""
EPILOG = """\
examples:
  jaxstyle convert vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 -o weights/vgg19.npz
  jaxstyle convert vgg19-dcbb9e9d.pth -o weights/vgg19.npz
  jaxstyle convert my_export.safetensors --preset torchvision -o weights/vgg19.npz
  jaxstyle convert imagenet-vgg-verydeep-19.mat -o weights/vgg19-matconvnet.npz
  jaxstyle convert saved_models/candy.pth -o models/candy.npz
  jaxstyle convert models/instance_norm/candy.t7 -o models/candy-t7.npz

exit status: 0 ok, 2 bad option or output path, 3 unreadable or invalid source file."""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("convert", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="SOURCE", help="the downloaded weights file (.h5, .pth, .safetensors, .mat, "
                        ".onnx) or style network (.pth, .t7)")
    parser.add_argument("-o", "--output", metavar="PATH", default=None,
                        help="converted file to write (default: weights/<arch>.npz, or models/<name>.npz for a "
                        "style network); never the source itself")
    parser.add_argument("--format", default="auto", choices=("auto", *converter.FORMATS, *STYLE_FORMATS),
                        help="source format; auto (default) detects it from the file's contents, not its extension")
    parser.add_argument("--preset", default=None, choices=tuple(vgg.PRESETS),
                        help="preprocessing the weights expect, overriding the format's own; required for "
                             "torchvision-layout files (.pth, .safetensors) whose origin is unknown: "
                             "torchvision = RGB 0-1 ImageNet mean/std, caffe = BGR 0-255 minus mean pixel")
    parser.add_argument("--force", action="store_true", help="overwrite the output if it already exists")
    parser.set_defaults(execute=execute)
    return parser


def execute(args) -> int:
    from ..fast import importers

    kind = importers.detect(args.source) if args.format in ("auto", *STYLE_FORMATS) else None
    if args.format in STYLE_FORMATS and kind != args.format:
        raise UsageError(f"{args.source}: --format {args.format} given but the file is "
                         f"{kind or 'not a style network'} — use --format auto or the right --format")
    if kind is not None:
        if args.preset is not None:
            raise UsageError("--preset is for VGG weights; a style network keeps its own conventions")
        info = importers.convert(args.source, args.output, kind=kind, overwrite=args.force)
        net = info["net"]
        print(f"wrote {info['output']}: {info['project']} network, width {net.width}, {net.n_residual} residual "
              f"blocks, {net.norm} norm, {net.upsample} upsampling, {net.output} output, {net.preprocess} input; "
              f"from {info['source']} (sha256 {info['source_sha256']})")
        return 0
    info = converter.convert(args.source, args.output, format=args.format, preset=args.preset,
                             overwrite=args.force)
    print(format_summary(info))
    return 0


def format_summary(info: dict) -> str:
    return (f"wrote {info['output']}: {info['arch']}, {info['layers']} conv layers, preset {info['preset']}, "
            f"from {info['source']} ({info['source_format']}, sha256 {info['source_sha256']})")
