"""``jaxstyle serve``: the local web studio (jaxstyle.studio; docs/studio.md)."""

from __future__ import annotations

import argparse
import functools
import os
import sys

from ..errors import UsageError
from . import options

HELP = "a local web studio: pick images, set weights, watch the image form, sweep, download"
EPILOG = """\
examples:
  jaxstyle serve                        # http://127.0.0.1:8765/
  jaxstyle serve --port 9000 --weights-dir weights --models-dir models

The page and its JSON API are described in docs/studio.md. Binds to 127.0.0.1 unless --host says otherwise:
anyone who can reach the port can use this machine's CPU/GPU and upload images to it."""


def register(subparsers) -> argparse.ArgumentParser:
    from ..studio.forms import Limits

    limits = Limits()
    parser = subparsers.add_parser("serve", help=HELP, description=HELP, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.error = functools.partial(options.one_line_error, parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s; anything "
                        "but a loopback address exposes the studio to the network, with a warning)")
    parser.add_argument("--port", type=options.integer, default=8765, help="port (default: %(default)s; 0: any "
                        "free port)")
    parser.add_argument("--weights-dir", default=os.path.dirname(options.DEFAULT_WEIGHTS), metavar="DIR",
                        help="converted VGG weights offered by name (default: %(default)s; vgg19.npz, else "
                             "vgg16.npz, else random is preselected)")
    parser.add_argument("--models-dir", default="models", metavar="DIR",
                        help="fast-style networks (jaxstyle train) offered by name (default: %(default)s)")
    parser.add_argument("--max-upload-mb", type=options.number, default=limits.max_upload_bytes / 2**20,
                        metavar="MB", help="largest uploaded file (default: %(default)g)")
    parser.add_argument("--max-pixels", type=options.integer, default=limits.max_pixels, metavar="N",
                        help="largest uploaded image in pixels, read from its header (default: %(default)s)")
    parser.add_argument("--max-image-size", type=options.integer, default=limits.max_image_size, metavar="PX",
                        help="largest output long side a run may ask for (default: %(default)s)")
    parser.add_argument("--sweep-batch", type=options.integer, metavar="N", help="sweep runs per vmapped "
                        "optimisation (default: a row of the grid on GPU/TPU, 1 on CPU; see docs/studio.md)")
    parser.set_defaults(execute=execute)
    return parser


def execute(args) -> int:
    from ..io import compilation_cache
    from ..io.target_cache import TargetCache
    from ..studio.forms import Limits

    try:
        from ..studio.app import make_app
        from ..studio.server import is_loopback, serve_forever
    except ImportError as e:
        raise UsageError(f"jaxstyle serve needs the studio extra ({e.name} is missing): "
                         "pip install 'jaxstyle[studio]'") from None

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be from 0 to 65535, not {args.port}")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0 or args.max_image_size < 16:
        raise UsageError("--max-upload-mb and --max-pixels must be > 0 and --max-image-size >= 16")
    if args.sweep_batch is not None and args.sweep_batch < 1:
        raise UsageError(f"--sweep-batch must be >= 1, not {args.sweep_batch}")
    if not is_loopback(args.host):
        print(f"warning: --host {args.host} exposes the studio beyond this machine: anyone who reaches the port "
              "can run jobs on it and upload images; there is no authentication", file=sys.stderr)
    compilation_cache.enable()
    upload = int(args.max_upload_mb * 2**20)
    limits = Limits(max_upload_bytes=upload, max_request_bytes=max(upload * 3, Limits().max_request_bytes),
                    max_pixels=args.max_pixels, max_image_size=args.max_image_size)
    app = make_app(args.weights_dir, args.models_dir, limits, target_cache=TargetCache.from_env(),
                   sweep_batch=args.sweep_batch)
    try:
        serve_forever(app, args.host, args.port,
                      on_ready=lambda url: print(f"jaxstyle studio: {url}  (Ctrl-C stops it)", flush=True),
                      on_stop=lambda: print("stopping: the current run ends with its chunk (Ctrl-C again: at "
                                            "once)", file=sys.stderr, flush=True))
    except OSError as e:  # the address is taken or cannot be bound
        raise UsageError(f"--host {args.host} --port {args.port}: cannot listen there ({e.strerror or e}) — "
                         "choose another --port (0: any free one)") from None
    return 0
