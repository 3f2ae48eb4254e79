"""``jaxstyle sweep``: many stylizations of one content/style pair in one vmapped, sharded optimisation.

The swept settings take comma lists; the runs are their product (or, with ``--zip``, the lists paired in order).
Every other hyperparameter flag is ``jaxstyle stylize``'s own definition (:data:`jaxstyle.cli.stylize.CONFIG_OPTIONS`,
defaults read from :class:`~jaxstyle.StyleConfig`), except that a sweep's optimiser defaults to
:data:`jaxstyle.gatys.sweep.SWEEP_OPTIMIZER` (why: docs/sweep.md). This module only parses, checks, reads and writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import sys

import numpy as np

from ..atomic import atomic_write
from ..errors import EXIT_INTERRUPTED, EXIT_NONFINITE, UsageError
from ..gatys import sweep
from ..gatys.config import INITS, SWEEPABLE, StyleConfig
from ..gatys.cost import evaluation_flops
from ..io import compilation_cache, images, profiling
from ..io.target_cache import TargetCache
from ..nets import weights as weights_lib
from . import distributed, options
from .interrupt import StopRequest

HELP = "many stylizations at once: a grid (or --zip) of weights and seeds, vmapped and sharded over devices"
DESCRIPTION = """\
Run K stylizations of one content image in a single vectorised optimisation (jax.vmap), split over every
available device. Swept settings take comma lists (--style-weight 1,10,100); the runs are the product of the
lists, or with --zip the lists paired in order (equal lengths). Targets are computed once for all runs."""
EPILOG = f"""\
outputs in OUTDIR: one image per run named by its settings (sw1e+01_tv0_seed0.png), sweep.json (each run's
settings, final loss terms and status) and contact_sheet.png (all runs, labelled). All written atomically.

examples:
  jaxstyle sweep --content photo.jpg --style starry.jpg -o out/sweep --style-weight 1,10,100 --tv-weight 0,1e-3
  jaxstyle sweep --content photo.jpg --style starry.jpg -o out/seeds --seed 0,1,2,3
  jaxstyle sweep --content photo.jpg --style a.jpg b.jpg -o out/blend --style-blend-weights 1,0 1,1 0,1
  jaxstyle sweep --content photo.jpg --style s.jpg -o out/z --zip --style-weight 1,10 --tv-weight 0,1e-3

The optimiser defaults to {sweep.SWEEP_OPTIMIZER} here (one loss evaluation per iteration per run; L-BFGS
with line search costs ~3x under vmap, see docs/sweep.md).
exit status: 0 ok, 2 bad option or output path, 3 unreadable input or weights, 4 a run's loss became
non-finite (its last good image is still written), 5 another process of a multi-process job stopped
(docs/multiprocess.md), 130 interrupted (last images written)."""

SWEPT = tuple(SWEEPABLE)
# Short names for file names and labels, in the order they appear there.
SHORT = {"content_weight": "cw", "style_weight": "sw", "tv_weight": "tv", "style_layer_weights": "lw",
         "style_blend_weights": "bw", "seed": "seed"}
SHEET = "contact_sheet.png"
REPORT = "sweep.json"
MAX_CHUNK = 25  # iterations per compiled call at most: progress is printed at least every 25 iterations


def _list(kind):
    def parse(text: str):
        return [kind(t) for t in options.name_list(text)]

    return parse


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("sweep", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.error = functools.partial(options.one_line_error, parser)
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--content", metavar="IMAGE", help="content image (not needed with --mode style)")
    io.add_argument("--style", metavar="IMAGE", nargs="+", help="one or more style images")
    io.add_argument("-o", "--output", metavar="OUTDIR", help="directory for the images, sweep.json and "
                    "contact_sheet.png (created if missing; files of the same names are replaced)")
    io.add_argument("--weights", metavar="NPZ", help=f"converted VGG weights, or 'random' (default: "
                    f"{options.DEFAULT_WEIGHTS} if it exists, else random, with a warning)")
    io.add_argument("--max-pixels", type=options.integer, metavar="N", default=images.DEFAULT_MAX_PIXELS,
                    help="refuse input images above N pixels (0: no limit) (default: %(default)s)")

    sw = parser.add_argument_group("swept settings (comma lists; one value = the same for every run)")
    defaults = options.DEFAULTS
    for name in ("content_weight", "style_weight", "tv_weight"):
        sw.add_argument(options.flag(name), dest=name, type=_list(options.number), metavar="V,...",
                        help=f"{options.CONFIG_OPTIONS[name][1]} (default: {defaults[name]})")
    sw.add_argument("--seed", dest="seed", type=_list(options.integer), metavar="N,...",
                    help=f"seeds of the noise init (default: {defaults['seed']})")
    for name, what in (("style_layer_weights", "style layer"), ("style_blend_weights", "style image")):
        sw.add_argument(options.flag(name), dest=name, type=options.number_list, nargs="+", metavar="W,...",
                        help=f"one comma vector per run, one weight per {what} "
                             f"(default: {options.show(defaults[name], options.CONFIG_OPTIONS[name][2])})")
    sw.add_argument("--zip", action="store_true", help="pair the lists in order (all of equal length) instead of "
                                                      "taking their product")

    hp = parser.add_argument_group("other hyperparameters (as jaxstyle stylize; defaults from StyleConfig)")
    for name, (kwargs, text, none) in options.CONFIG_OPTIONS.items():
        if name in SWEPT:
            continue
        default = sweep.DEFAULT_CONFIG.optimizer if name == "optimizer" else defaults[name]
        if name == "init":  # one shared start: no init image in a sweep
            kwargs = {**kwargs, "choices": INITS, "metavar": None}
            text = "starting image of every run: white noise (from --seed), the content or the style"
        if name == "optimizer":
            text += "; a sweep defaults to lbfgs-nols: the line search costs ~3x under vmap"
        hp.add_argument(options.flag(name), dest=name, default=None,
                        help=f"{text} (default: {options.show(default, none or 'none')})", **kwargs)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines or summary")
    parser.add_argument("--no-target-cache", action="store_true",
                        help="recompute the content/style targets instead of reusing stored ones (see stylize)")
    options.add_profile(parser)
    distributed.add_options(parser)
    parser.set_defaults(execute=execute)
    return parser


# ------------------------------------------------------------------------------------------------ planning


def runs_from_args(args) -> list[dict]:
    """The runs the options ask for: one dict per run holding only the swept settings that were given."""
    given = {name: getattr(args, name) for name in SWEPT if getattr(args, name, None) is not None}
    if not given:
        return [{}]
    names = list(given)
    if args.zip:
        lengths = {n: len(v) for n, v in given.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{options.flag(n)} has {k}" for n, k in lengths.items())
            raise UsageError(f"--zip needs lists of equal length: {shown} — give as many values to each, or drop "
                             "--zip for their product")
        return [dict(zip(names, values)) for values in zip(*given.values())]
    return [dict(zip(names, values)) for values in itertools.product(*given.values())]


def _number(v) -> str:
    """Compact, unambiguous number for file names: 0, 1e+01, 2.5e-03; integers (seeds) as they are."""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if v == 0:
        return "0"
    mantissa, exponent = f"{v:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"


def run_name(run: dict) -> str:
    parts = []
    for name in SWEPT:
        if name in run:
            v = run[name]
            value = "-".join(_number(x) for x in v) if isinstance(v, tuple) else _number(v)
            parts.append(f"{SHORT[name]}{value}")
    return "_".join(parts) or "run"


def run_label(run: dict) -> str:
    return " ".join(f"{SHORT[n]}={','.join(f'{x:g}' for x in v) if isinstance(v, tuple) else f'{v:g}'}"
                    for n, v in run.items()) or "defaults"


@dataclasses.dataclass
class Plan:
    config: StyleConfig
    content: str | None
    styles: list
    weights: str
    outdir: str
    runs: list
    paths: list  # one image path per run
    report: str
    sheet: str
    max_pixels: int | None
    chunk: int


def plan(args) -> Plan:
    """Check every option and output path; raise UsageError (one line) before anything is computed."""
    config = options.config_from_args(args, sweep.DEFAULT_CONFIG, skip=SWEPT)
    styles = options.check_inputs(config, args.content, args.style)
    if args.output is None:
        raise UsageError("-o/--output OUTDIR is required")
    if args.max_pixels < 0:
        raise UsageError(f"--max-pixels must be >= 0 (0: no limit), not {args.max_pixels}")
    runs = runs_from_args(args)
    outdir = args.output
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise UsageError(f"{outdir}: -o is a file — give a directory for the sweep's outputs")
    parent = os.path.dirname(os.path.abspath(outdir))
    if not os.path.isdir(parent):
        raise UsageError(f"{outdir}: parent directory {parent} does not exist — create it first")
    names, seen = [], {}
    for run in runs:
        name = run_name(run)
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")  # --zip may repeat a setting
    inputs = [args.content, *styles]
    if args.weights not in (None, "random"):
        inputs.append(args.weights)
    if not os.path.isdir(outdir) and not os.access(parent, os.W_OK):
        raise UsageError(f"{outdir}: parent directory {parent} is not writable — choose another -o")
    # The directory is made by execute() once every input has loaded, so a failed command leaves nothing behind.
    check = functools.partial(images.check_output_path, create_directory=True)
    paths = [check(os.path.join(outdir, f"{n}.png"), inputs) for n in names]
    sheet = check(os.path.join(outdir, SHEET), inputs)
    report = check(os.path.join(outdir, REPORT), inputs, allowed=(".json",))
    return Plan(config, args.content, styles, options.weights_path(args.weights), outdir, runs, paths,
                report, sheet, args.max_pixels or None, min(MAX_CHUNK, max(1, config.iterations)))


def settings_of(runs: list[dict]) -> dict:
    """The runs as ``stylize_many`` settings: one (K, ...) list per swept name that was given."""
    return {name: [run[name] for run in runs] for name in runs[0]}


# ------------------------------------------------------------------------------------------------ run


def execute(args) -> int:
    compilation_cache.enable()
    p = plan(args)
    content = images.load_image(p.content, max_pixels=p.max_pixels, role="content") if p.content else None
    styles = [images.load_image(s, max_pixels=p.max_pixels, role="style") for s in p.styles]
    from ..nets.model import load_vgg  # after the checks: loading weights is the first real work

    model = load_vgg(p.weights, pooling=p.config.pooling)
    config = p.config

    writer = distributed.is_writer()  # process 0 alone prints and writes; every process computes
    profile = profiling.Profile(args.profile) if args.profile else None

    def progress(pr: sweep.SweepProgress) -> None:
        if profile is not None:
            profile(pr.iteration)
        if writer and not args.quiet:
            total = pr.terms["total"]
            print(f"iteration {pr.iteration}/{pr.iterations}  total loss min {np.nanmin(total):.4g} max "
                  f"{np.nanmax(total):.4g}  ({pr.seconds:.1f} s)", file=sys.stderr)

    with StopRequest() as stop:
        result = sweep.stylize_many(content, styles, settings_of(p.runs), model=model, config=config,
                                    chunk=p.chunk, callback=progress,
                                    should_stop=lambda: distributed.any_process(stop()),
                                    target_cache=None if args.no_target_cache else TargetCache.from_env())
    if profile is not None:
        profile.stop()
        per_iteration = result.evaluations.sum() / max(int(result.iterations.max()), 1)  # all K runs together
        profile.flops_per_step = (evaluation_flops(content, styles, model, config) or 0) * per_iteration or None
        report = profile.write()
        if writer:
            print(profiling.summary(report, args.profile), file=sys.stderr)
    if writer:
        _write(p, result, model, config)
    return _status(args, p, result, writer)


def _write(p: Plan, result: sweep.SweepResult, model, config) -> None:
    """The images, the contact sheet and sweep.json (process 0)."""
    import jax

    # Only now, with results in hand: a command that fails on any input or setting leaves nothing behind.
    os.makedirs(p.outdir, exist_ok=True)
    for path, image in zip(p.paths, result.images):
        images.save_image(path, image)
    labels = [run_label(r) for r in p.runs]
    images.save_contact_sheet(p.sheet, list(result.images), labels,
                              title=f"weights: {weights_lib.describe(p.weights, short=True)}")
    report = {
        "content": p.content, "styles": p.styles, "weights": model.source,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in SWEPT},
        "devices": int(result.mesh.size), "processes": jax.process_count(), "padding_runs": int(result.padded),
        "seconds": result.seconds,
        "runs": [{
            "image": os.path.basename(path), "label": label,
            "settings": {k: np.asarray(v[i]).tolist() for k, v in result.settings.items()},
            "losses": {k: float(v[i]) for k, v in result.terms.items()},
            "iterations": int(result.iterations[i]), "evaluations": int(result.evaluations[i]),
            "status": result.status[i],
        } for i, (path, label) in enumerate(zip(p.paths, labels))],
    }
    with atomic_write(p.report, "w") as f:
        json.dump(report, f, indent=1, default=str)
        f.write("\n")


def _status(args, p: Plan, result: sweep.SweepResult, writer: bool) -> int:
    """The exit status (the same on every process: the results are); process 0 says why."""
    quiet = args.quiet or not writer
    bad = [i for i, s in enumerate(result.status) if s == "nonfinite"]
    for i in bad if writer else ():
        print(f"error: {os.path.basename(p.paths[i])}: loss became non-finite after {result.iterations[i]} "
              "iterations; kept its last good image — lower its weights", file=sys.stderr)
    if "interrupted" in result.status:
        if writer:
            print(f"interrupted; wrote the last good images to {p.outdir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if bad:
        return EXIT_NONFINITE
    if not quiet:
        print(f"wrote {len(p.paths)} images, {REPORT} and {SHEET} to {p.outdir} in {result.seconds:.1f} s "
              f"({result.mesh.size} device{'s' * (result.mesh.size > 1)})")
    return 0
