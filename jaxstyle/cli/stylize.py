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
import os
import sys

import numpy as np

from ..errors import EXIT_INTERRUPTED, EXIT_NONFINITE, NonFiniteLossError, UsageError
from ..gatys.run import run_stylize
from ..gatys.cost import evaluation_flops
from ..io import compilation_cache, images, profiling, report
from ..io.target_cache import TargetCache
from ..nets import vgg
from . import checkpointing, options
from .interrupt import StopRequest
from .monitor import Monitor
from .plan import DEFAULT_PRINT_EVERY, DEMO, NO_MASK, Plan, Request, build, request_from_args

GIF_FRAME_MS = 120

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
  jaxstyle stylize --content photo.jpg --style sky.jpg ground.jpg --content-mask top.png bottom.png -o out.png
  jaxstyle stylize --mode style --style texture.jpg --image-size 256 -o texture.png
  jaxstyle stylize --content photo.jpg --style starry_night.jpg -o out.png --checkpoint-every 50
  jaxstyle stylize --resume out.ckpt.npz

exit status: 0 ok, 2 bad option or output path, 3 unreadable input or weights, 4 non-finite loss, 130 interrupted."""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("stylize", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.error = functools.partial(options.one_line_error, parser)  # the framework creates the parser
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--content", metavar="IMAGE", help="content image (not needed with --mode style)")
    io.add_argument("--style", metavar="IMAGE", nargs="+", help="one or more style images (not needed with "
                    "--mode content)")
    io.add_argument("--content-mask", metavar="MASK", nargs="+", help="spatial control (Gatys et al. 2017): one "
                    "greyscale mask per style image, in --style order: where in the output that style goes (white: "
                    "there; black: not; any size, resized to the output); parts no mask covers get no style")
    io.add_argument("--style-mask", metavar="MASK|none", nargs="+", help="with --content-mask: one mask per style "
                    "image, the part of it whose style is used ('none': the whole image)")
    io.add_argument("-o", "--output", metavar="OUT", help="output image, .png or .jpg (written atomically)")
    io.add_argument("--output-bits", type=options.integer, choices=images.OUTPUT_BITS, default=None,
                    help="bits per channel of the output: 8, or 16 for a 16-bit sRGB-tagged PNG (high-resolution "
                         "work to be edited further; needs pypng) (default: 8)")
    io.add_argument("--weights", metavar="NPZ", help=f"converted VGG weights, or 'random' (default: "
                    f"{options.DEFAULT_WEIGHTS} if it exists, else random, with a warning)")
    io.add_argument("--arch", choices=vgg.ARCHITECTURES, help="require this VGG architecture: a weights file "
                    "holding another is refused; with random weights, the random network's (default: what the "
                    "weights file holds; random: vgg19)")
    # default=None here and for --print-every/--save-every: --resume must tell an option given from its default.
    io.add_argument("--max-pixels", type=options.integer, metavar="N", default=None,
                    help="refuse input images above N pixels, read from the header (0: no limit) "
                         f"(default: {images.DEFAULT_MAX_PIXELS})")
    io.add_argument("--demo", action="store_true",
                    help=f"stylize the bundled example (chelsea.jpg with starry_night.jpg) into {DEMO['output']}, "
                         f"with a GIF and a loss curve; size {DEMO['image_size']}, {DEMO['iterations']} iterations "
                         "unless given")

    hp = parser.add_argument_group("hyperparameters (defaults from jaxstyle.StyleConfig)")
    for name, (kwargs, text, none) in options.CONFIG_OPTIONS.items():
        # default=None: an option not given is not passed, so StyleConfig's own default applies.
        hp.add_argument(options.flag(name), dest=name, default=None,
                        help=f"{text} (default: {options.show(options.DEFAULTS[name], none or 'none')})", **kwargs)

    rep = parser.add_argument_group("progress and reports")
    rep.add_argument("--print-every", type=options.integer, metavar="N", default=None,
                     help="log the loss terms every N iterations: a line on stderr when it is not a terminal "
                          "(a terminal gets a progress bar), a record in --log; 0: only the last "
                          f"(default: {DEFAULT_PRINT_EVERY})")
    rep.add_argument("--save-every", type=options.integer, metavar="N", default=None,
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
    options.add_profile(rep)

    ck = parser.add_argument_group("checkpoints and resuming")
    ck.add_argument("--checkpoint-every", type=options.integer, metavar="N", default=None,
                    help="every N iterations write the image, optimiser state and run configuration to the "
                         "checkpoint file (atomically), and again at the end and on Ctrl-C (default: 0, off)")
    ck.add_argument("--checkpoint", metavar="NPZ", help="the checkpoint file (default: OUT_stem.ckpt.npz); given "
                    "alone, a checkpoint is written only at the end and on Ctrl-C")
    ck.add_argument("--resume", metavar="CKPT", help="continue the run saved in CKPT with its own settings and "
                    "inputs (checked by sha256); only --iterations (to extend it), -o and -q may be given too")
    rep.add_argument("--dry-run", action="store_true",
                     help="print the estimate of the run's peak memory (and whether it fits) and exit; the "
                          "estimate is also printed at the start of every run")
    parser.set_defaults(execute=execute)
    return parser


# ------------------------------------------------------------------------------------------------ run


def _demo_weights(quiet: bool) -> str:
    """--demo without --weights: the best weights this machine can get (downloaded once), said on line one."""
    from ..nets.download import demo_weights

    path, description, notes = demo_weights(os.path.dirname(options.DEFAULT_WEIGHTS))
    print(f"weights: {description}", flush=True)
    if not quiet:
        for note in notes:
            print(f"  ({note})", flush=True)
    return path


def _request(args) -> tuple[Request, dict | None, dict | None]:
    """(the run's request, the checkpoint's run description and array shapes when resuming)."""
    if not getattr(args, "resume", None):
        request = request_from_args(args)
        if args.demo and args.weights is None:
            request = dataclasses.replace(request, weights=_demo_weights(args.quiet))
        return request, None, None
    # The run's settings come from the checkpoint; the command line may only extend or move it.
    description, shapes, iteration = checkpointing.open_checkpoint(args.resume)
    return checkpointing.resume_request(args, description, args.resume, iteration), description, shapes


def _load(p: Plan):
    """The input images (checked before anything else is computed), then the network."""
    read = lambda path, role: images.load_image(path, max_pixels=p.max_pixels or None, role=role)
    content = read(p.content, "content") if p.content else None
    styles = [read(s, "style") for s in p.styles]
    init = read(p.init_path, "init") if p.init_path else None
    mask = lambda path, role: images.load_mask(path, max_pixels=p.max_pixels or None, role=role)
    masks = {"content_masks": [mask(m, "content mask") for m in p.content_masks] or None,
             "style_masks": [None if m == NO_MASK else mask(m, "style mask") for m in p.style_masks] or None}
    from ..nets.model import load_vgg  # after the checks: loading weights is the first real work

    return content, styles, init, masks, load_vgg(p.weights, pooling=p.config.pooling, arch=p.arch)


def execute(args) -> int:
    compilation_cache.enable()
    request, description, shapes = _request(args)
    p = build(request, resuming=description is not None)
    hashes = checkpointing.verify_inputs(description, request, args.resume) if description else None
    content, styles, init, masks, model = _load(p)
    p.config.check_against(model.arch, len(styles) or None)  # the layers exist in this network: then estimate
    _check_memory(p, content if content is not None else styles[0], model.arch, args.quiet,
                  getattr(args, "dry_run", False))
    if getattr(args, "dry_run", False):
        return 0
    monitor = Monitor(p, args.quiet)
    resumed = None
    if description is not None:
        resumed = checkpointing.read_state(args.resume, p.config, shapes)
        monitor.restore(description.get("monitor") or {}, int(resumed.iteration))
    if p.checkpoint:
        base = checkpointing.record(request, model.arch, hashes or checkpointing.input_hashes(request))
        monitor.checkpoint = lambda state, history: checkpointing.save(p.checkpoint, state, history,
                                                                        {**base, "monitor": monitor.state()})
    cache = None if getattr(args, "no_target_cache", False) else TargetCache.from_env()
    profile = profiling.Profile(args.profile) if args.profile else None
    callback = monitor if profile is None else lambda pr: (monitor(pr), profile(pr.iteration))
    with StopRequest() as stop:
        result = run_stylize(content, styles, model, p.config, chunk=p.chunk, callback=callback, init=init,
                             resume=resumed, history=(description or {}).get("history", ()), should_stop=stop,
                             target_cache=cache, **masks)
    monitor.finish(result)
    if profile is not None:
        profile.stop()
        per_iteration = result.evaluations / max(result.iterations, 1)  # lbfgs's line search evaluates more
        profile.flops_per_step = (evaluation_flops(content, styles, model, p.config) or 0) * per_iteration or None
        print(profiling.summary(profile.write(), args.profile), file=sys.stderr)
    return _finish(p, result, monitor, args.quiet)


def available_memory() -> tuple[int, str]:
    """(bytes this run may use, where): the accelerator's memory limit, or on CPU the host's available memory
    (MemAvailable, plus what this process already holds, which the estimate counts)."""
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]), f"{device.platform} device memory"
    fields = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0]) * 1024
    with open("/proc/self/status") as f:
        rss = next((int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:")), 0)
    return fields.get("MemAvailable", fields.get("MemFree", 0)) + rss, "available host memory"


def _check_memory(p: Plan, image, arch: str, quiet: bool, dry_run: bool) -> None:
    """Print the peak-memory estimate (always with --dry-run); raise UsageError (one line) naming the largest size
    that fits when the run would not fit, before anything big is allocated."""
    import jax

    from ..gatys import memory

    host = jax.default_backend() == "cpu"
    est = memory.estimate(p.config, image.shape[:2], arch, host=host)
    available, where = available_memory()
    note = memory.lbfgs_history_note(p.config, est)
    if dry_run or not quiet:
        print(f"{est.line()}; {where} {available / memory.MiB:,.0f} MiB", file=sys.stdout if dry_run else sys.stderr)
        if note:
            print(f"  ({note})", file=sys.stdout if dry_run else sys.stderr)
    if est.total > available:
        best = memory.largest_fitting_size(p.config, image.shape[:2], arch, available, host=host)
        fix = (f"the largest output that fits with these settings is --image-size {best}" if best else
               "no size fits with these settings")
        others = [note.split("; ")[1]] if note else []
        others += [n for n in (memory.remat_note(p.config, image.shape[:2], arch, host=host),
                               memory.tile_note(p.config, image.shape[:2], arch, host=host)) if n]
        raise UsageError(f"this run needs about {est.total / memory.MiB:,.0f} MiB at {est.shape[1]}x{est.shape[0]} "
                         f"but {where} is {available / memory.MiB:,.0f} MiB — {fix}" +
                         "".join(f"; or {n}" for n in others))


def _write(p: Plan, result, monitor: Monitor) -> tuple[list, bool]:
    """Write the image and the reports; return what was written and whether a final checkpoint was."""
    last = result.history[-1] if result.history else None
    if result.status == "done" and not np.all(np.isfinite(result.image)):
        # The last chunk's final step produced a non-finite image that no loss evaluation saw.
        raise NonFiniteLossError(f"the image became non-finite at iteration {result.iterations} (loss "
                                 f"{last and last['total']}); no output written — lower --style-weight, "
                                 "--content-weight or --learning-rate")
    final = p.output if result.status == "done" else p.last_good
    images.save_image(final, result.image, bits=p.output_bits)
    written = [final]
    if p.gif:
        frames = [f for f in monitor.frames if os.path.isfile(f)]  # a resumed run's earlier frames may be gone
        if not frames or (monitor.history and monitor.history[-1]["iteration"] != monitor.last_saved):
            frames.append(final)  # the run ended between save points: its last image closes the animation
        report.save_progress_gif(p.gif, frames, duration_ms=GIF_FRAME_MS)
        written.append(f"{p.gif} ({len(frames)} frames)")
    if p.loss_curve and monitor.history:
        report.plot_loss_curve(p.loss_curve, monitor.history, monitor.totals,
                               title=f"{os.path.basename(p.output)}: {p.config.optimizer}, {p.config.normalization}")
        written.append(p.loss_curve)
    if p.log:
        report.write_jsonl(p.log, monitor.logged)  # complete even when nothing was logged during the run
        written.append(p.log)
    resumable = bool(p.checkpoint) and result.state is not None and result.status in ("done", "interrupted")
    if resumable:
        # Also at the end of a finished run: the checkpoint stays, so --resume CKPT --iterations M can extend it.
        monitor.checkpoint(result.state, result.history)
        written.append(p.checkpoint)
    return written, resumable


def _finish(p: Plan, result, monitor: Monitor, quiet: bool) -> int:
    """Write the outputs and say how the run ended; return the exit status."""
    written, resumable = _write(p, result, monitor)
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
    if not quiet:
        last = result.history[-1] if result.history else None
        extra = f"; also {', '.join(written[1:])}" if written[1:] else ""
        timing = f" in {last['seconds']:.1f} s" if last else ""
        print(f"wrote {p.output}: {result.iterations} iterations{timing}, {result.evaluations} loss evaluations, "
              f"final loss {last['total']:.4g}{extra}" if last else f"wrote {p.output} (0 iterations){extra}")
    return 0
