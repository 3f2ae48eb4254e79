"""Checkpoints of ``jaxstyle stylize`` runs: what one records, how ``--resume`` restores the run from it, and the
check that the inputs are still the ones the run started with.

A checkpoint is a :mod:`jaxstyle.io.checkpoint` file: the run state (``run/...``: the image, the optimiser state,
the counters) and, as its metadata, the run description: ``kind``, the run's :class:`~jaxstyle.cli.plan.Request`
(config, every input and output path, the intervals, ``--max-pixels``), the architecture of the network, the
sha256 of every input file (the weights included, unless random), the iteration, the loss history, and the state
of the reports (``monitor``: log records, loss values, saved frames) so a resumed run's log, loss curve and GIF
continue where the interrupted run's stopped. ``--resume`` restores the Request from it and plans the run with
the same function as a fresh one; the command line only adds what may change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

from ..errors import UsageError
from ..gatys.config import INITS
from ..gatys.run import state_template
from ..io import checkpoint
from ..io.checkpoint import CheckpointError
from ..nets import weights
from . import options
from .plan import NO_MASK, Request, derive

KIND = "jaxstyle stylize"
FIX = "start the run again without --resume"
_FIX = "start a new run without --resume"
# Options --resume lets the user change: --iterations (extend the run), -o (write elsewhere; the derived outputs
# follow it), -q (no effect on the result). Anything else must come from the checkpoint.
OVERRIDABLE = ("iterations",)


def sha256_file(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _inputs(request: Request) -> list[tuple[str, str]]:
    """(what, path) of every input file of a request."""
    entries = [("content image", request.content), *(("style image", s) for s in request.styles),
               ("init image", request.init_path), *(("content mask", m) for m in request.content_masks),
               *(("style mask", m) for m in request.style_masks if m != NO_MASK)]
    if request.weights != weights.RANDOM:
        entries.append(("weights", request.weights))
    return [(what, path) for what, path in entries if path is not None]


def input_hashes(request: Request) -> dict:
    """sha256 of every input file, keyed by its absolute path (None: unreadable; loading it says why)."""
    out = {}
    for _, path in _inputs(request):
        try:
            out[os.path.abspath(path)] = sha256_file(path)
        except OSError:
            out[os.path.abspath(path)] = None
    return out


def record(request: Request, arch: str, hashes: dict) -> dict:
    """The run description of a checkpoint (the report state and the history are added at each save)."""
    return {"kind": KIND, "request": request.to_json(), "arch": arch, "hashes": hashes}


def save(path, state, history: list, description: dict) -> None:
    """Write the run state, its loss history and the run description to the checkpoint ``path``."""
    checkpoint.save(path, {"run": state}, {**description, "history": history, "iteration": int(state.iteration)})


def open_checkpoint(ckpt: str) -> tuple[dict, dict, int]:
    """(run description, array shapes, iteration) of a stylize checkpoint; raises CheckpointError (exit 3)."""
    meta, shapes = checkpoint.describe(ckpt, fix=FIX)
    if meta.get("kind") != KIND or not isinstance(meta.get("iteration"), int):
        raise CheckpointError(ckpt, f"not a stylize checkpoint (kind {meta.get('kind')!r})", _FIX)
    return meta, shapes, meta["iteration"]


def read_state(ckpt: str, config, shapes: dict):
    """The run state of a checkpoint, every array checked against what a run of ``config`` holds."""
    if "run/x" not in shapes or len(shapes["run/x"].shape) != 3:
        raise CheckpointError(ckpt, "holds no HWC image (run/x)", FIX)
    like = {"run": state_template(config, shapes["run/x"].shape)}
    return checkpoint.load(ckpt, like, fix=FIX)[0]["run"]


def resume_request(args, description: dict, ckpt: str, iteration: int) -> Request:
    """The checkpoint's request with what the command line may change (``--iterations``, ``-o``).

    Raises UsageError (one line) for an option that contradicts the checkpoint, CheckpointError for a checkpoint
    whose run description this jaxstyle cannot read.
    """
    try:
        request = Request.from_json(description["request"])
    except (KeyError, TypeError, ValueError) as e:  # ConfigError is a ValueError
        raise CheckpointError(ckpt, f"its run description does not fit this jaxstyle ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:100]})", _FIX) from None
    if args.demo:
        raise UsageError(f"--demo cannot be combined with --resume — the checkpoint {ckpt} holds the run's settings")
    check_agreement(args, request, description.get("arch"), ckpt)
    if args.iterations is not None and args.iterations < iteration:
        raise UsageError(f"--iterations {args.iterations} is below the {iteration} iterations the checkpoint {ckpt} "
                         f"already ran — give at least {iteration}, or leave it out to finish the planned "
                         f"{request.config.iterations}")
    if args.iterations is not None:
        request = dataclasses.replace(request, config=dataclasses.replace(request.config,
                                                                          iterations=args.iterations))
    if getattr(args, "output_bits", None):  # how the output is written is not part of the run: may change
        request = dataclasses.replace(request, output_bits=args.output_bits)
    return request if args.output is None else dataclasses.replace(request, output=args.output)


def _contradiction(ckpt, flag, value, recorded):
    show = lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v
    raise UsageError(f"{flag} {show(value)} contradicts the checkpoint {ckpt}, whose run has {show(recorded)} — "
                     "leave it out: --resume takes the run's settings from the checkpoint (only --iterations and "
                     "-o may change)")


def _same_path(a, b) -> bool:
    return a is not None and b is not None and os.path.realpath(a) == os.path.realpath(b)


def check_agreement(args, request: Request, arch, ckpt) -> None:
    """Every option given with --resume (other than the overridable ones) must say what the checkpoint says."""
    config = request.config
    for name in options.CONFIG_OPTIONS:
        value = getattr(args, name, None)
        if value is None or name in OVERRIDABLE:
            continue
        if name == "init" and (value not in INITS or request.init_path is not None):
            if not _same_path(value, request.init_path):
                _contradiction(ckpt, "--init", value, request.init_path or config.init)
        elif (None if value == options.ORIGINAL else value) != getattr(config, name):
            recorded = getattr(config, name)
            _contradiction(ckpt, options.flag(name), value,
                           options.ORIGINAL if recorded is None and name == "image_size" else recorded)
    derived = derive(request, resuming=True)
    for flag, value, recorded in (("--content", args.content, request.content), ("--gif", args.gif, derived.gif),
                                  ("--log", args.log, request.log), ("--loss-curve", args.loss_curve,
                                                                     request.loss_curve),
                                  ("--checkpoint", args.checkpoint, derived.checkpoint)):
        if value is not None and not _same_path(value, recorded):
            _contradiction(ckpt, flag, value, recorded or "none")
    _check_inputs_agree(args, request, arch, ckpt)


def _check_inputs_agree(args, request: Request, arch, ckpt) -> None:
    if args.style is not None and (len(args.style) != len(request.styles)
                                   or not all(_same_path(a, b) for a, b in zip(args.style, request.styles))):
        _contradiction(ckpt, "--style", " ".join(args.style), " ".join(request.styles) or "none")
    if args.weights is not None and not (args.weights == request.weights == weights.RANDOM
                                         or _same_path(args.weights, request.weights)):
        _contradiction(ckpt, "--weights", args.weights, request.weights)
    if args.arch is not None and args.arch != arch:
        _contradiction(ckpt, "--arch", args.arch, arch)
    for name in ("print_every", "save_every", "checkpoint_every", "max_pixels"):
        value = getattr(args, name)
        if value is not None and value != getattr(request, name):
            _contradiction(ckpt, options.flag(name), value, getattr(request, name))


def verify_inputs(description: dict, request: Request, ckpt: str) -> dict:
    """Every input file must be the one the checkpoint was made with (sha256); raise CheckpointError naming it.

    Returns ``{path: sha256}`` of the inputs (for the checkpoints the resumed run writes)."""
    hashes = description.get("hashes") or {}
    for what, path in _inputs(request):
        if not os.path.isfile(path):
            raise CheckpointError(path, f"{what} of the checkpoint {ckpt} is missing",
                                  "put the original file back at this path, or " + _FIX)
        digest = sha256_file(path)
        if digest != hashes.get(path):
            raise CheckpointError(path, f"{what} has changed since the checkpoint {ckpt} was written (sha256 "
                                  f"{digest[:12]}..., recorded {str(hashes.get(path))[:12]}...)",
                                  "restore the original file, or " + _FIX)
    return hashes
