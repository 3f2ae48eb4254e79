"""``jaxstyle convert``: turn a downloaded VGG weights file into jaxstyle's validated ``.npz``."""

from __future__ import annotations

import argparse

from ..nets import convert as converter
from ..nets import vgg

HELP = "convert pretrained VGG weights (Keras, torchvision, Caffe .pth, Gatys, MatConvNet, safetensors)"
DESCRIPTION = """\
Convert pretrained VGG19/VGG16 weights into jaxstyle's pickle-free .npz (conv layers only; the fully
connected head is dropped). The architecture is inferred from the file (16 convs = VGG19, 13 = VGG16) and the
preprocessing the weights expect is recorded with them. Sources, URLs and checksums: weights/README.md."""
EPILOG = """\
examples:
  jaxstyle convert vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 -o weights/vgg19.npz
  jaxstyle convert vgg19-dcbb9e9d.pth -o weights/vgg19.npz
  jaxstyle convert my_export.safetensors --preset torchvision -o weights/vgg19.npz
  jaxstyle convert imagenet-vgg-verydeep-19.mat -o weights/vgg19-matconvnet.npz

exit status: 0 ok, 2 bad option or output path, 3 unreadable or invalid source file."""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("convert", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="SOURCE", help="the downloaded weights file (.h5, .pth, .safetensors, .mat)")
    parser.add_argument("-o", "--output", metavar="PATH", default=None,
                        help="converted file to write (default: weights/<arch>.npz); never the source itself")
    parser.add_argument("--format", default="auto", choices=("auto", *converter.FORMATS),
                        help="source format; auto (default) detects it from the file's contents, not its extension")
    parser.add_argument("--preset", default=None, choices=tuple(vgg.PRESETS),
                        help="preprocessing the weights expect, overriding the format's own; required for "
                             "torchvision-layout files (.pth, .safetensors) whose origin is unknown: "
                             "torchvision = RGB 0-1 ImageNet mean/std, caffe = BGR 0-255 minus mean pixel")
    parser.add_argument("--force", action="store_true", help="overwrite the output if it already exists")
    parser.set_defaults(execute=execute)
    return parser


def execute(args) -> int:
    info = converter.convert(args.source, args.output, format=args.format, preset=args.preset,
                             overwrite=args.force)
    print(format_summary(info))
    return 0


def format_summary(info: dict) -> str:
    return (f"wrote {info['output']}: {info['arch']}, {info['layers']} conv layers, preset {info['preset']}, "
            f"from {info['source']} ({info['source_format']}, sha256 {info['source_sha256']})")
