"""``jaxstyle apply``: stylise images with a trained fast style network, one forward pass each.

Inputs are files or folders (their images, sorted, not recursive); each output is ``OUTDIR/<name>.png`` (or
``--ext``). Every input's header is checked and every output path decided before any image is processed, so a
bad input or a clash fails at once with one line and nothing written; an input is never overwritten.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import ImageError, UsageError

HELP = "stylise images with a trained fast style network (jaxstyle train)"
EPILOG = """\
examples:
  jaxstyle apply --model models/starry.npz photo.jpg -o out/
  jaxstyle apply --model models/ab.npz photos/ --style-mix 0.7,0.3 --original-colors -o out/
  jaxstyle apply --model models/starry.npz huge_scan.tif --tile 1024 -o out/   # bounded device memory

exit status: 0 ok, 2 bad option or output, 3 unreadable model or image."""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("apply", help=HELP, description=HELP, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders of images")
    parser.add_argument("--model", required=True, metavar="MODEL.npz", help="a network from `jaxstyle train`")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (created)")
    parser.add_argument("--style-mix", metavar="W,...", help="one weight per style of the network, e.g. 0.7,0.3 "
                        "(normalised to sum 1); or a single style index (default: style 0)")
    parser.add_argument("--original-colors", action="store_true", help="keep the input's colours (luminance "
                        "transfer, Gatys et al. 2017)")
    parser.add_argument("--image-size", type=int, metavar="PX", help="resize each input's long side to PX "
                        "first (default: its own size)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N",
                        help="same-size images per call (on CPU they pass through the network 256x256 px at a time, "
                             "so memory does not grow with N)")
    parser.add_argument("--tile", type=int, metavar="PX", help="compute every layer in PX x PX windows with "
                        "whole-image statistics: same result, device memory bounded by the window (default: only "
                        "images over 16 Mpx, in 1024-px windows; 0: never)")
    parser.add_argument("--ext", default=".png", choices=(".png", ".jpg"), help="output format")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.set_defaults(execute=execute)
    return parser


def parse_mix(text: str | None):
    if text is None:
        return None
    parts = [t.strip() for t in text.split(",") if t.strip()]
    try:
        if len(parts) == 1 and parts[0].isdigit():
            return int(parts[0])
        return [float(t) for t in parts]
    except ValueError:
        raise UsageError(f"--style-mix: expected comma-separated numbers or a style index, got {text!r}") from None


def collect(inputs) -> list[str]:
    from ..fast.data import IMAGE_EXTENSIONS

    files = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item)
                           if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(item, f)))
            if not found:
                raise ImageError(item, "folder holds no images", "pass image files or a folder of them")
            files += found
        elif not os.path.exists(item):
            raise ImageError(item, "no such file", "check the path")
        else:
            files.append(item)
    for f in files:  # header check up front: fail before writing anything
        _header(f)
    return files


def _header(path: str) -> None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.size
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(path, f"not a readable image ({type(e).__name__})", "pass PNG, JPEG, ... files") from None


def plan_outputs(files, outdir: str, ext: str) -> list[str]:
    outs, seen = [], {}
    inputs = {os.path.realpath(f) for f in files}
    for f in files:
        out = os.path.join(outdir, os.path.splitext(os.path.basename(f))[0] + ext)
        if out in seen:
            raise UsageError(f"{f} and {seen[out]} would both be written to {out} — stylise them in separate runs")
        if os.path.realpath(out) in inputs:
            raise UsageError(f"{out}: output would overwrite an input — choose another output folder")
        seen[out] = f
        outs.append(out)
    return outs


def execute(args) -> int:
    from ..io import images
    from ..fast.inference import apply, check_tile, parse_mix as check_mix
    from ..fast.model_file import load_model

    if args.batch_size < 1 or (args.image_size is not None and args.image_size < 16):
        raise UsageError("--batch-size must be >= 1 and --image-size >= 16")
    check_tile(args.tile)  # before any image is read
    model = load_model(args.model)
    mix = parse_mix(args.style_mix)
    check_mix(model, mix)  # validate before reading images
    files = collect(args.inputs)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UsageError(f"{args.output}: output must be a folder")
    outs = plan_outputs(files, args.output, args.ext)
    os.makedirs(args.output, exist_ok=True)
    # Group same-size images (after the optional resize) so each group runs batch_size at a time.
    pending = list(zip(files, outs))
    while pending:
        chunk, pending = pending[:64], pending[64:]  # bounded memory: 64 decoded images at a time
        arrays = [images.load_image(f) for f, _ in chunk]
        if args.image_size:
            arrays = [images.resize_long_side(a, args.image_size) for a in arrays]
        results = apply(model, arrays, mix=mix, original_colors=args.original_colors,
                        batch_size=args.batch_size, tile=args.tile)
        for (src, out), image in zip(chunk, results):
            images.save_image(out, image)
            if not args.quiet:
                print(f"{src} -> {out}", file=sys.stderr)
    return 0
