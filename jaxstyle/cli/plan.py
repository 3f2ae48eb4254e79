"""What a ``jaxstyle stylize`` command asks for (:class:`Request`) and everything decided from it before any
computation (:class:`Plan`: the checked inputs and every path that will be written).

A Request is what a checkpoint records: it serialises itself (:meth:`Request.to_json`, absolute paths) and is
restored from it (:meth:`Request.from_json`), so ``--resume`` rebuilds the same Plan with the same function as a
fresh run (:func:`build`), with no command line in between.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path

from ..errors import UsageError
from ..gatys.config import INITS, StyleConfig
from ..io import images, report
from ..nets import weights
from . import options

MAX_CHUNK = 25  # iterations per compiled call at most: the progress bar moves at least every 25 iterations
DEFAULT_PRINT_EVERY = 50
LOG_EXTENSIONS = (".jsonl", ".json", ".log", ".txt")
# --demo: the README's first job. Modest so it finishes in a few minutes on a 2-core CPU (see docs/stylize.md).
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"
DEMO = {"content": EXAMPLES / "chelsea.jpg", "style": [EXAMPLES / "starry_night.jpg"],
        "output": os.path.join("out", "demo.png"), "image_size": 256, "iterations": 200, "save_every": 20}
NO_MASK = "none"  # --style-mask none: that style image is used whole
_PATHS = ("content", "init_path", "output", "gif", "loss_curve", "log", "checkpoint")


@dataclasses.dataclass(frozen=True)
class Request:
    """A stylize command as asked: the config, the inputs, and the outputs as given (None: derived from -o)."""

    config: StyleConfig
    content: str | None
    styles: tuple[str, ...]
    init_path: str | None  # an init image (config.init then says which kind of start it is not)
    weights: str  # a converted weights file, or "random"
    arch: str | None  # architecture required by --arch (None: what the weights file holds)
    output: str
    gif: str | None = None
    loss_curve: str | None = None
    log: str | None = None
    checkpoint: str | None = None
    print_every: int = DEFAULT_PRINT_EVERY
    save_every: int = 0
    checkpoint_every: int = 0
    max_pixels: int = images.DEFAULT_MAX_PIXELS  # 0: no limit
    # Spatial control: one content mask per style image (its region of the output), and optionally one style
    # mask per style image (the part of it to use; NO_MASK: all of it).
    content_masks: tuple[str, ...] = ()
    style_masks: tuple[str, ...] = ()
    output_bits: int = 8  # 16: 16-bit PNG output (the final image and the last good one; frames stay 8-bit)

    def to_json(self) -> dict:
        """This request as JSON, every path absolute (a resumed run may start in another directory)."""
        out = dataclasses.asdict(self)
        for name in _PATHS:
            out[name] = _abs(out[name])
        out["styles"] = [_abs(s) for s in self.styles]
        out["content_masks"] = [_abs(m) for m in self.content_masks]
        out["style_masks"] = [m if m == NO_MASK else _abs(m) for m in self.style_masks]
        out["weights"] = self.weights if self.weights == weights.RANDOM else _abs(self.weights)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Request":
        """The request :meth:`to_json` wrote. Raises TypeError/ValueError (a ConfigError among them) for anything
        else; the caller says which file it came from."""
        data = dict(data)
        config = data.pop("config")
        if not isinstance(config, dict):
            raise TypeError("config is not an object")
        masks = {name: tuple(data.get(name, ())) for name in ("content_masks", "style_masks")}
        return cls(config=StyleConfig(**config), **{**data, "styles": tuple(data["styles"]), **masks})


def _abs(path):
    return None if path is None else os.path.abspath(path)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything decided before any computation: the request, and every path that will be written."""

    request: Request
    last_good: str
    gif: str | None  # the progression GIF (given, or derived from -o with --save-every); None: none
    checkpoint: str | None  # where checkpoints go (given, or derived from -o); None: no checkpoints
    chunk: int
    frame_digits: int

    def __getattr__(self, name):  # the request's fields read as the plan's: plan.output, plan.config...
        if name == "request":
            raise AttributeError(name)
        return getattr(self.request, name)

    def frame_path(self, iteration: int) -> str:
        stem, ext = os.path.splitext(self.request.output)
        return f"{stem}.iter{iteration:0{self.frame_digits}d}{ext}"


def choose_chunk(print_every: int, save_every: int, checkpoint_every: int = 0, cap: int = MAX_CHUNK) -> int:
    """Iterations per compiled call: the gcd of the active intervals (so every print/save/checkpoint point is a
    chunk end), reduced to its largest divisor <= ``cap`` so the progress bar still moves."""
    active = [n for n in (print_every, save_every, checkpoint_every) if n > 0]
    g = math.gcd(*active) if active else cap
    return max(d for d in range(1, min(g, cap) + 1) if g % d == 0)


def _demo_defaults(args) -> None:
    """--demo fills what was not given: the bundled images, out/demo.png, its size, iterations and frames."""
    for name in ("image_size", "iterations"):
        if getattr(args, name) is None:
            setattr(args, name, DEMO[name])
    if not args.save_every:
        args.save_every = DEMO["save_every"]
    if args.content is None and args.style is None:
        if not all(p.is_file() for p in (DEMO["content"], *DEMO["style"])):
            raise UsageError(f"--demo: example images not found in {EXAMPLES} — run from a jaxstyle source "
                             "checkout, or pass --content and --style")
        args.content, args.style = str(DEMO["content"]), [str(p) for p in DEMO["style"]]
    if args.output is None:
        args.output = DEMO["output"]
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
    if args.loss_curve is None:
        args.loss_curve = os.path.splitext(args.output)[0] + ".loss.png"


def request_from_args(args) -> Request:
    """The request of a command line (not a resumed one); raises UsageError (one line)."""
    args = argparse.Namespace(**vars(args))  # --demo fills in defaults: not into the caller's namespace
    if getattr(args, "demo", False):
        _demo_defaults(args)
    config = options.config_from_args(args)
    styles = options.check_inputs(config, args.content, args.style)
    if args.output is None:
        raise UsageError("-o/--output is required (or use --demo)")
    init_path = args.init if args.init is not None and args.init not in INITS else None
    intervals = {n: (getattr(args, n) if getattr(args, n, None) is not None else d) for n, d in
                 (("print_every", DEFAULT_PRINT_EVERY), ("save_every", 0), ("checkpoint_every", 0))}
    max_pixels = images.DEFAULT_MAX_PIXELS if getattr(args, "max_pixels", None) is None else args.max_pixels
    return Request(config, args.content, tuple(styles), init_path, options.weights_path(args.weights),
                   getattr(args, "arch", None), args.output, args.gif, args.loss_curve, args.log,
                   getattr(args, "checkpoint", None), max_pixels=max_pixels,
                   content_masks=tuple(getattr(args, "content_mask", None) or ()),
                   style_masks=tuple(getattr(args, "style_mask", None) or ()),
                   output_bits=getattr(args, "output_bits", None) or 8, **intervals)


def _check_masks(r: Request) -> None:
    """One content mask per style image (and, if any, one style mask per style image), before anything runs."""
    if r.style_masks and not r.content_masks:
        raise UsageError("--style-mask needs --content-mask: one per style image, the region of the output "
                         "its style goes to")
    if not r.content_masks:
        return
    if r.config.mode == "content":
        raise UsageError("--content-mask assigns style images to regions; --mode content has no style")
    for flag, masks in (("--content-mask", r.content_masks), ("--style-mask", r.style_masks)):
        if masks and len(masks) != len(r.styles):
            raise UsageError(f"{flag} got {len(masks)} mask(s) for {len(r.styles)} style image(s) — give one "
                             f"per style image, in the order of --style" +
                             (f" ({NO_MASK}: use that style image whole)" if flag == "--style-mask" else ""))


def _check_request(r: Request) -> None:
    if r.config.init == "content" and r.config.mode == "style":
        raise UsageError("--init content needs a content image to start from; with --mode style use noise, "
                         "style or an image file")
    for name in ("print_every", "save_every", "checkpoint_every"):
        if getattr(r, name) < 0:
            raise UsageError(f"{options.flag(name)} must be >= 0, not {getattr(r, name)}")
    if r.max_pixels < 0:
        raise UsageError(f"--max-pixels must be >= 0 (0: no limit), not {r.max_pixels}")
    if r.gif and not r.save_every:
        raise UsageError("--gif needs --save-every N (the GIF is made of the images saved every N iterations)")
    _check_masks(r)
    if r.output_bits == 16 and os.path.splitext(r.output)[1].lower() != ".png":
        raise UsageError(f"{r.output}: --output-bits 16 needs a .png output (JPEG holds 8 bits per channel)")
    stages = len(r.config.scales) if r.config.scales else r.config.num_scales
    if stages > 1 and (r.checkpoint or r.checkpoint_every):
        raise UsageError("--checkpoint/--checkpoint-every cannot yet save a coarse-to-fine run (--scales, "
                         "--num-scales): run it without, or as single-stage runs with --init of the previous result")


def derive(r: Request, *, resuming: bool = False) -> Plan:
    """The plan of ``r`` without any check: the paths derived from -o, the chunk length."""
    stem = os.path.splitext(r.output)[0]
    gif = r.gif or (f"{stem}.gif" if r.save_every else None)
    checkpoint = r.checkpoint or (f"{stem}.ckpt.npz" if r.checkpoint_every or resuming else None)
    return Plan(r, f"{stem}.last-good.png", gif, checkpoint, choose_chunk(r.print_every, r.save_every,
                                                                         r.checkpoint_every),
                max(4, len(str(r.config.total_iterations))))


def build(r: Request, *, resuming: bool = False) -> Plan:
    """Check the request and every output path; raise UsageError (one line) before anything is computed.

    ``resuming``: a checkpoint path is derived from -o even without --checkpoint-every (the run had one)."""
    _check_request(r)
    inputs = [r.content, *r.styles, r.init_path, *r.content_masks,
              *(m for m in r.style_masks if m != NO_MASK)] + ([r.weights] if r.weights != weights.RANDOM else [])
    output = images.check_output_path(r.output, inputs)
    plan = derive(r, resuming=resuming)
    gif, checkpoint = plan.gif, plan.checkpoint
    paths = {"-o/--output": output, "last good image": plan.last_good}
    for what, path, allowed in (("--gif", gif, (".gif",)), ("--loss-curve", r.loss_curve, report.CURVE_EXTENSIONS),
                                ("--log", r.log, LOG_EXTENSIONS), ("--checkpoint", checkpoint, (".npz",))):
        if path:
            paths[what] = images.check_output_path(path, inputs, allowed=allowed)
    images.check_output_path(plan.last_good, inputs)
    for it in range(r.save_every, r.config.total_iterations + 1, r.save_every) if r.save_every else ():
        paths[f"iteration {it}"] = images.check_output_path(plan.frame_path(it), inputs)
    seen = {}
    for what, path in paths.items():
        real = os.path.realpath(path)
        if real in seen:
            raise UsageError(f"{path}: {what} and {seen[real]} would be the same file — choose other names")
        seen[real] = what
    return plan
