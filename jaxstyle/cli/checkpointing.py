"""Checkpoints of ``jaxstyle stylize`` runs: what a checkpoint records, how ``--resume`` rebuilds the run from it,
and the check that the inputs are still the ones the run started with.

A checkpoint is a :mod:`jaxstyle.io.checkpoint` file holding the run state (``run/...``: the image, the optimiser
state, the counters) and, as its metadata, the loss history and the run description: the StyleConfig, every input path with its sha256, the weights
and their sha256 (or "random"), the architecture, every output path, the print/save/checkpoint intervals,
``--max-pixels``, the chunk length, and the state of the reports (log records, loss values, saved frames) so a
resumed run's log, loss curve and GIF continue where the interrupted run's stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os

from ..gatys.run import state_template
from ..io import checkpoint
from ..io.checkpoint import CheckpointError
from ..nets import weights
from ..errors import UsageError
from ..gatys.config import INITS, StyleConfig

KIND = "jaxstyle stylize"
# Options --resume lets the user change: --iterations (extend the run), -o (write elsewhere; the derived outputs
# follow it), -q (no effect on the result). Anything else must come from the checkpoint.
OVERRIDABLE = ("iterations", "output", "quiet", "resume")
FIX = "start the run again without --resume"
_FIX = "start a new run without --resume"


def sha256_file(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _abs(path):
    return None if path is None else os.path.abspath(path)


def run_record(plan, arch: str, hashes: dict) -> dict:
    """The JSON run description of a checkpoint (everything except the report state, added at each save)."""
    def entry(path):
        return None if path is None else {"path": _abs(path), "sha256": hashes[path]}

    return {
        "kind": KIND,
        "config": dataclasses.asdict(plan.config),
        "arch": arch,
        "inputs": {"content": entry(plan.content), "styles": [entry(s) for s in plan.styles],
                   "init": entry(plan.init_path)},
        "weights": {"path": weights.RANDOM, "sha256": None} if plan.weights == weights.RANDOM
        else {"path": _abs(plan.weights), "sha256": hashes[plan.weights]},
        "outputs": {"output": _abs(plan.output), "last_good": _abs(plan.last_good), "gif": _abs(plan.gif),
                    "loss_curve": _abs(plan.loss_curve), "log": _abs(plan.log), "checkpoint": _abs(plan.checkpoint)},
        "intervals": {"print_every": plan.print_every, "save_every": plan.save_every,
                      "checkpoint_every": plan.checkpoint_every},
        "max_pixels": plan.max_pixels or 0,
        "chunk": plan.chunk,
        # The paths as the user gave them (None: derived from -o), so an -o given to --resume moves the derived
        # ones (GIF, frames, last-good image, checkpoint) along with it.
        "given": {"gif": _abs(plan.given["gif"]), "checkpoint": _abs(plan.given["checkpoint"])},
    }


def save(path, state, history: list, record: dict) -> None:
    """Write the run state, its loss history and the run description ``record`` to the checkpoint ``path``."""
    checkpoint.save(path, {"run": state}, {**record, "history": history, "iteration": int(state.iteration)})


def iteration_of(record: dict, ckpt: str) -> int:
    """The iteration a checkpoint was written at (from its metadata)."""
    value = record.get("iteration")
    if record.get("kind") != KIND or not isinstance(value, int):
        raise CheckpointError(ckpt, f"not a stylize checkpoint (kind {record.get('kind')!r})", _FIX)
    return value


def read_state(ckpt: str, config, shapes: dict):
    """The run state of a checkpoint, checked against what a run of ``config`` holds."""
    if "run/x" not in shapes or len(shapes["run/x"].shape) != 3:
        raise CheckpointError(ckpt, "holds no HWC image (run/x)", FIX)
    like = {"run": state_template(config, shapes["run/x"].shape)}
    return checkpoint.load(ckpt, like, fix=FIX)[0]["run"]


def input_hashes(plan) -> dict:
    """sha256 of every input file of the plan (images and weights), keyed by the path as given."""
    paths = [p for p in (plan.content, *plan.styles, plan.init_path) if p is not None]
    if plan.weights != weights.RANDOM:
        paths.append(plan.weights)
    out = {}
    for p in paths:
        try:
            out[p] = sha256_file(p)
        except OSError:
            out[p] = None  # unreadable: loading it reports the problem in its own words
    return out


def _get(record: dict, ckpt: str, *keys):
    value = record
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise CheckpointError(ckpt, f"not a stylize checkpoint (no {'/'.join(keys)!r} in its run description)",
                                  _FIX)
        value = value[key]
    return value


def _same_path(a, b) -> bool:
    return a is not None and b is not None and os.path.realpath(a) == os.path.realpath(b)


def resume_args(args, record: dict, ckpt: str, iteration: int) -> argparse.Namespace:
    """The command line the checkpoint's run had, with the allowed overrides (``OVERRIDABLE``) applied.

    Raises UsageError (one line) for an option that contradicts the checkpoint, CheckpointError for a checkpoint
    that is not a stylize run description.
    """
    from .stylize import CONFIG_OPTIONS, ORIGINAL, _flag  # noqa: PLC0415 -- stylize imports this module

    if record.get("kind") != KIND:
        raise CheckpointError(ckpt, f"not a stylize checkpoint (kind {record.get('kind')!r})", _FIX)
    config = _get(record, ckpt, "config")
    if not isinstance(config, dict) or set(config) != {f.name for f in dataclasses.fields(StyleConfig)}:
        raise CheckpointError(ckpt, "its configuration does not match this jaxstyle's StyleConfig fields", _FIX)
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    inputs, outputs, intervals, given = (_get(record, ckpt, k) for k in ("inputs", "outputs", "intervals", "given"))
    recorded_paths = {
        "content": _get(inputs, ckpt, "content"), "init": _get(inputs, ckpt, "init"),
        "weights": _get(record, ckpt, "weights", "path"),
    }
    recorded_paths = {k: (v["path"] if isinstance(v, dict) else v) for k, v in recorded_paths.items()}
    styles = [s["path"] for s in _get(inputs, ckpt, "styles")]

    def contradiction(flag, value, recorded):
        shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        was = ",".join(map(str, recorded)) if isinstance(recorded, (list, tuple)) else recorded
        raise UsageError(f"{flag} {shown} contradicts the checkpoint {ckpt}, whose run has {was} — leave it out: "
                         "--resume takes the run's settings from the checkpoint (only --iterations and -o may "
                         "change)")

    if args.demo:
        raise UsageError(f"--demo cannot be combined with --resume — the checkpoint {ckpt} holds the run's settings")
    for name in CONFIG_OPTIONS:
        value = getattr(args, name, None)
        if value is None or name in OVERRIDABLE:
            continue
        if name == "init" and value not in INITS:
            if not _same_path(value, recorded_paths["init"]):
                contradiction("--init", value, recorded_paths["init"] or config["init"])
            continue
        if name == "init" and recorded_paths["init"] is not None:
            contradiction("--init", value, recorded_paths["init"])
        norm = None if value == ORIGINAL else value
        if norm != config[name]:
            contradiction(_flag(name), value, "original" if config[name] is None and name == "image_size"
                          else config[name])
    for flag, value, recorded in (("--content", args.content, recorded_paths["content"]),
                                  ("--gif", args.gif, outputs.get("gif")),
                                  ("--log", args.log, outputs.get("log")),
                                  ("--loss-curve", args.loss_curve, outputs.get("loss_curve")),
                                  ("--checkpoint", args.checkpoint, outputs.get("checkpoint"))):
        if value is not None and not _same_path(value, recorded):
            contradiction(flag, value, recorded or "none")
    if args.style is not None and (len(args.style) != len(styles)
                                   or not all(_same_path(a, b) for a, b in zip(args.style, styles))):
        contradiction("--style", " ".join(args.style), " ".join(styles) or "none")
    if args.weights is not None:
        rec = recorded_paths["weights"]
        if not (args.weights == rec == weights.RANDOM or _same_path(args.weights, rec)):
            contradiction("--weights", args.weights, rec)
    if args.arch is not None and args.arch != record.get("arch"):
        contradiction("--arch", args.arch, record.get("arch"))
    for name in ("print_every", "save_every", "checkpoint_every"):
        value = getattr(args, name)
        if value is not None and value != intervals.get(name):
            contradiction(_flag(name), value, intervals.get(name))
    if args.max_pixels is not None and args.max_pixels != record.get("max_pixels"):
        contradiction("--max-pixels", args.max_pixels, record.get("max_pixels"))
    if args.iterations is not None and args.iterations < iteration:
        raise UsageError(f"--iterations {args.iterations} is below the {iteration} iterations the checkpoint {ckpt} "
                         f"already ran — give at least {iteration}, or leave it out to finish the planned "
                         f"{config['iterations']}")

    new = argparse.Namespace(**vars(args))
    for name in CONFIG_OPTIONS:
        setattr(new, name, config[name])
    if args.iterations is not None:
        new.iterations = args.iterations
    new.image_size = ORIGINAL if config["image_size"] is None else config["image_size"]
    new.init = recorded_paths["init"] or config["init"]
    new.content, new.style = recorded_paths["content"], styles or None
    new.weights, new.arch = recorded_paths["weights"], record.get("arch")
    new.output = args.output if args.output is not None else outputs.get("output")
    # Paths derived from -o (GIF, frames, last-good image, checkpoint) follow an overriding -o; named ones stay.
    new.gif, new.checkpoint = given.get("gif"), given.get("checkpoint")
    new.loss_curve, new.log = outputs.get("loss_curve"), outputs.get("log")
    for name in ("print_every", "save_every", "checkpoint_every"):
        setattr(new, name, intervals.get(name))
    new.max_pixels = record.get("max_pixels", 0)
    return new


def verify_inputs(record: dict, ckpt: str) -> dict:
    """Every input file must be the one the checkpoint was made with (sha256); raise CheckpointError naming it.

    Returns ``{path: sha256}`` of the inputs (for the checkpoints the resumed run writes)."""
    inputs = record["inputs"]
    entries = [("content image", inputs["content"]), *(("style image", s) for s in inputs["styles"]),
               ("init image", inputs["init"])]
    if record["weights"]["path"] != weights.RANDOM:
        entries.append(("weights", record["weights"]))
    out = {}
    for what, entry in entries:
        if entry is None:
            continue
        path = entry["path"]
        if not os.path.isfile(path):
            raise CheckpointError(path, f"{what} of the checkpoint {ckpt} is missing",
                                  "put the original file back at this path, or " + _FIX)
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise CheckpointError(path, f"{what} has changed since the checkpoint {ckpt} was written (sha256 "
                                  f"{digest[:12]}..., recorded {str(entry['sha256'])[:12]}...)",
                                  "restore the original file, or " + _FIX)
        out[path] = digest
    return out
