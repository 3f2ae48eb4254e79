"""``jaxstyle features``: load VGG weights, run one image through them and print each layer's feature shape.

The quickest check that a converted weights file loads and runs (the foundation issue's first job)."""

from __future__ import annotations

import argparse
import functools

import numpy as np

from ..gatys.config import StyleConfig
from ..gatys.problem import long_side_shape
from ..io import compilation_cache, images
from ..nets import vgg
from . import options

HELP = "print the feature shapes a VGG weights file gives for an image"
DEFAULT_IMAGE_SIZE = StyleConfig.image_size  # the size stylize would use


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "features", help=HELP, description="Load VGG weights (or the random VGG), run IMAGE through them and print "
        "the shape (height, width, channels) and mean activation of each requested layer.")
    parser.error = functools.partial(options.one_line_error, parser)
    parser.add_argument("--image", metavar="IMAGE", help="input image (required unless --info)")
    parser.add_argument("--info", action="store_true",
                        help="print what the weights file is (architecture, preprocessing, source, checksum and "
                             "provenance) and, without --image, nothing else")
    parser.add_argument("--weights", metavar="NPZ", help=f"converted VGG weights, or 'random' (default: "
                        f"{options.DEFAULT_WEIGHTS} if it exists, else random, with a warning)")
    parser.add_argument("--layers", type=options.name_list, metavar="L,...", help="comma-separated layers (default: "
                        "all layers of the network)")
    parser.add_argument("--image-size", type=options.image_size_or_original, metavar="PX", default=DEFAULT_IMAGE_SIZE,
                        help="resize so the long side is PX pixels, or 'original' (default: %(default)s, as stylize)")
    parser.add_argument("--max-pixels", type=int, metavar="N", default=images.DEFAULT_MAX_PIXELS,
                        help="refuse images above N pixels (0: no limit) (default: %(default)s)")
    parser.set_defaults(execute=execute)
    return parser


def execute(args) -> int:
    compilation_cache.enable()
    from ..errors import UsageError
    from ..gatys.problem import resize
    from ..nets.model import extract_features, load_vgg

    if args.info:
        print_info(options.weights_path(args.weights))
        if args.image is None:
            return 0
    if args.image is None:
        raise UsageError("--image is required (or --info to describe the weights only)")
    size = None if args.image_size == options.ORIGINAL else args.image_size
    if size is not None and size < vgg.MIN_SIZE:
        raise UsageError(f"--image-size must be >= {vgg.MIN_SIZE}, not {size}")
    if args.layers is not None:
        try:  # names are checked against vgg19 now (vgg16's are a subset), against the loaded network below
            vgg.validate_layers("vgg19", args.layers)
        except ValueError as e:
            raise UsageError(f"--layers: {e}") from None
    model = load_vgg(options.weights_path(args.weights))
    layers = args.layers or model.layer_names()
    try:
        vgg.validate_layers(model.arch, layers)
    except ValueError as e:
        raise UsageError(f"--layers: {e}") from None
    image = images.load_image(args.image, max_pixels=args.max_pixels or None, role="input")
    if size is not None:
        image = resize(image, long_side_shape(image.shape[:2], size))
    feats = extract_features(model, image, tuple(layers))
    print(f"{model.arch} weights {model.source} (preprocess {model.preprocess.name}, pooling {model.pooling}); "
          f"input {image.shape[0]}x{image.shape[1]}")
    width = max(len(l) for l in layers)
    for layer in layers:
        f = np.asarray(feats[layer])
        print(f"{layer:<{width}}  {str(tuple(f.shape)):<16}  mean {f.mean():.4g}")
    return 0


def print_info(path: str) -> None:
    """The weights file's metadata, one ``key: value`` per line (the random VGG says what it is)."""
    from ..nets import weights as weights_lib

    if path == weights_lib.RANDOM:
        print("weights: random (deterministic He-initialised VGG19: textures, not meaningful art)")
        return
    arch, _, preprocess, info = weights_lib.load_converted(path)
    print(f"weights: {path}")
    print(f"architecture: {arch}")
    print(f"preprocessing: {preprocess.name} ({'BGR' if preprocess.bgr else 'RGB'}, x{preprocess.scale:g}, "
          f"mean {', '.join(f'{m:g}' for m in preprocess.mean)}, std {', '.join(f'{s:g}' for s in preprocess.std)})")
    print(f"source: {info['source']} ({info['source_format']})")
    print(f"source sha256: {info['source_sha256']}")
    for key, value in sorted((info.get("provenance") or {}).items()):
        print(f"provenance {key}: {value}")
