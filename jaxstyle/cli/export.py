"""``jaxstyle export``: write a trained fast style network as an ONNX file for other runtimes."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import UsageError

HELP = "export a fast style network (jaxstyle train) to ONNX for onnxruntime and other runtimes"
EPILOG = """\
examples:
  jaxstyle export models/starry.npz -o models/starry.onnx
  jaxstyle export models/ab.npz --style-mix 0.7,0.3 -o models/ab.onnx   # default of the graph's `style` input

The file takes `images` float32 (N, 3, H, W) RGB in [0, 1] (any H, W >= 4) and returns `stylized`, the same
shape in [0, 1]; networks with several styles also take `style` (1, n_styles) weights summing to 1.

exit status: 0 ok, 2 bad option or output, 3 unreadable model."""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("export", help=HELP, description=HELP, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL.npz", help="a network from `jaxstyle train`")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument("--style-mix", metavar="W,...", help="the style (index or one weight per style) the file "
                        "uses by default (default: style 0)")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.set_defaults(execute=execute)
    return parser


def execute(args) -> int:
    from ..fast.export import export_onnx
    from ..fast.inference import parse_mix as check_mix
    from ..fast.model_file import load_model
    from .apply import parse_mix

    if not args.output.endswith(".onnx"):
        raise UsageError(f"{args.output}: the output name must end in .onnx")
    if os.path.realpath(args.output) == os.path.realpath(args.model):
        raise UsageError(f"{args.output}: output would overwrite the model — choose another name")
    model = load_model(args.model)
    mix = check_mix(model, parse_mix(args.style_mix))
    export_onnx(model, args.output, mix)
    if not args.quiet:
        print(f"{args.model} -> {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB, opset 17)",
              file=sys.stderr)
    return 0
