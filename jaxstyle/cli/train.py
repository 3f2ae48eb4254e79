"""``jaxstyle train``: train a fast style network (Johnson et al. 2016) on a folder of images.

Hyperparameter flags are generated from :class:`jaxstyle.fast.config.FastConfig`'s fields (a default is written
once, there); a flag not given is not passed. This module parses, checks and draws progress; the run is
:func:`jaxstyle.fast.session.train`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys

from ..errors import UsageError
from . import distributed, options

HELP = "train a fast style network on a folder of images (Johnson et al. 2016)"
DESCRIPTION = """\
Train an image transformation network so that one forward pass stylises any photo: perceptual losses from a fixed
VGG (content relu2_2, style relu1_2,relu2_2,relu3_3,relu4_3 by default), Adam, random crops streamed from DATASET.
Several --style images train one network with one instance-norm scale/shift per style (Dumoulin et al. 2017)."""
EPILOG = """\
outputs beside -o models/x.npz: models/x.ckpt/ (orbax checkpoints, the last 2), models/x.history.jsonl (one line
per step: loss terms, images/s, skipped files), models/x.preview/stepNNNNNNN.png (the preview image every
--preview-every steps). --resume continues from the latest checkpoint exactly as an uninterrupted run would.

examples:
  jaxstyle train --style starry_night.jpg --dataset coco/train2014 --weights weights/vgg16.npz -o models/starry.npz
  jaxstyle train --style a.jpg b.jpg --dataset photos/ --image-size 128 --steps 2000 -o models/ab.npz
  jaxstyle train --resume -o models/starry.npz

several processes (data parallel over every device of every process; process 0 writes; docs/multiprocess.md):
  jaxstyle train ... --coordinator 10.0.0.1:12345 --num-processes 2 --process-id 0   # and 1 on the other host

exit status: 0 ok, 2 bad option, 3 unreadable input, weights or dataset, 5 another process of a multi-process
job stopped, 130 interrupted (a checkpoint is saved; with several processes, the last periodic one stands)."""

LABELS = {"arch": "loss network (VGG architecture)", "content_layers": "content layers (comma-separated)",
          "style_layers": "style layers (comma-separated)", "content_weight": "weight of the feature loss",
          "style_weight": "weight of the style (Gram) loss", "tv_weight": "weight of total variation",
          "pixel_weight": "weight of the pixel loss", "image_size": "training crop size in pixels",
          "style_size": "long side of each style image in pixels", "batch_size": "images per step",
          "learning_rate": "Adam learning rate", "steps": "training steps (or give --epochs)",
          "seed": "seed of the initialisation and of the data order and crops",
          "width": "channels of the first layer (paper: 32)", "n_residual": "residual blocks (paper: 5)"}


def _names(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return names


def _number(kind):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    return parse


def register(subparsers) -> argparse.ArgumentParser:
    from ..fast.config import FastConfig

    parser = subparsers.add_parser("train", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--style", nargs="+", metavar="IMAGE", help="style image(s); several train one network")
    io.add_argument("--dataset", metavar="DIR", help="folder tree of training images (e.g. COCO train2014)")
    io.add_argument("-o", "--output", metavar="MODEL.npz", required=True, help="the trained network")
    io.add_argument("--weights", default="random", metavar="NPZ", help="converted VGG weights, or 'random'")
    io.add_argument("--epochs", type=_number(float), metavar="E", help="train E passes over the dataset")
    io.add_argument("--checkpoint-every", type=_number(int), default=1000, metavar="N")
    io.add_argument("--preview-every", type=_number(int), default=500, metavar="N")
    io.add_argument("--preview", metavar="IMAGE", help="preview image (default: the dataset's first file)")
    io.add_argument("--workers", type=_number(int), default=4, metavar="N", help="image decoding threads")
    io.add_argument("--resume", action="store_true", help="continue from the latest checkpoint beside -o")
    io.add_argument("-q", "--quiet", action="store_true")
    hp = parser.add_argument_group("hyperparameters")
    for f in dataclasses.fields(FastConfig):
        kind = _names if f.name.endswith("_layers") else _number(type(f.default)) if f.name != "arch" else str
        flag = "--residual-blocks" if f.name == "n_residual" else "--" + f.name.replace("_", "-")
        shown = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        hp.add_argument(flag, dest=f.name, type=kind, default=argparse.SUPPRESS,
                        help=f"{LABELS[f.name]} (default: {shown})")
    options.add_profile(io)
    distributed.add_options(parser)
    parser.set_defaults(execute=execute)
    return parser


def _check(args, given: dict) -> None:
    for name in ("checkpoint_every", "preview_every"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0")
    if args.workers < 1:
        raise UsageError("--workers must be >= 1")
    if args.resume:
        extra = ["--" + k.replace("_", "-") for k in sorted(set(given) - {"steps"})] + (["--style"] if args.style else [])
        if extra:
            raise UsageError(f"--resume continues with the checkpoint's settings; drop {', '.join(extra)} "
                             "(only --steps or --epochs may change)")
    elif not args.style or not args.dataset:
        raise UsageError("--style and --dataset are required (or --resume)")
    if args.epochs is not None and ("steps" in given or not math.isfinite(args.epochs) or args.epochs <= 0):
        raise UsageError("--epochs must be a positive number and cannot be combined with --steps")


def execute(args) -> int:
    from ..fast import config as config_lib
    from ..fast import data, session
    from ..io import compilation_cache, profiling

    compilation_cache.enable()  # as stylize and sweep: a warm start (or a resumed run) skips XLA compilation

    names = {f.name for f in dataclasses.fields(config_lib.FastConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    _check(args, given)
    config = None if args.resume else config_lib.FastConfig(**given)
    steps = given.get("steps")
    if args.epochs is not None:
        if not args.dataset:
            raise UsageError("--epochs needs --dataset to count its images")
        n = len(data.list_images(args.dataset))
        batch = given.get("batch_size", config_lib.FastConfig.batch_size)
        steps = max(1, math.ceil(args.epochs * n / batch))
    run_ = session.Run(styles=args.style or [], dataset=args.dataset, out=args.output, weights=args.weights,
                       checkpoint_every=args.checkpoint_every, preview_every=args.preview_every,
                       preview=args.preview, workers=args.workers, resume=args.resume)
    bar = _Progress(args.quiet)
    profile = profiling.Profile(args.profile) if args.profile else None
    try:
        model = session.train(run_, config, steps=steps, progress=bar, profile=profile)
    finally:
        bar.close()
    if profile is not None:
        report = profile.write()
        if distributed.is_writer():
            print(profiling.summary(report, args.profile), file=sys.stderr)
    if not args.quiet and distributed.is_writer():
        print(f"wrote {args.output} ({model.n_styles} style(s))", file=sys.stderr)
    return 0


class _Progress:
    """A tqdm bar with the loss terms and images/s (plain lines every 10 steps when stderr is not a terminal)."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar = quiet, None

    def __call__(self, step, metrics, rate, skipped):
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(initial=step - 1, file=sys.stderr, unit="step", dynamic_ncols=True, desc="train",
                             disable=None)  # None: off when stderr is not a terminal (plain lines instead)
        terms = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        text = f"{terms} {rate:.2f} img/s" + (f" skipped={skipped}" if skipped else "")
        if self.bar.disable:
            if step % 10 == 0 or step == 1:
                print(f"step {step}: {text}", file=sys.stderr)
        else:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()
