"""Resumable runs: checkpoints of the image, the optimiser state, the iteration and the full run configuration.

One ``.npz`` (no pickle, like the weights): ``x`` (the raw iterate), ``state/00000``... (the optimiser state's
leaves in pytree order), ``meta/iteration``, ``meta/evaluations``, ``meta/history`` and ``meta/run`` (JSON: the
StyleConfig and the CLI's inputs/outputs), ``meta/format_version``. Written atomically (temp file, fsync,
rename), so a crash or SIGKILL leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from ..atomic import atomic_write
from ..errors import InputError
from ..gatys.run import ResumeState
from ..nets.weights import _CORRUPT

FORMAT_VERSION = 1


class CheckpointError(InputError):
    """A checkpoint is missing, unreadable, or does not fit the run being resumed."""


def save_checkpoint(path, resume: ResumeState, run: dict) -> None:
    """Write ``resume`` and the JSON-serialisable ``run`` description atomically to ``path``."""
    leaves = jax.tree.leaves(resume.opt_state)
    arrays = {"x": np.asarray(resume.x)}
    arrays.update({f"state/{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
    arrays.update({
        "meta/format_version": np.int64(FORMAT_VERSION),
        "meta/iteration": np.int64(resume.iteration),
        "meta/evaluations": np.int64(resume.evaluations),
        "meta/history": np.str_(json.dumps(resume.history)),
        "meta/run": np.str_(json.dumps(run, sort_keys=True)),
    })
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def load_checkpoint(path) -> tuple[ResumeState, dict]:
    """Read a checkpoint. The optimiser state comes back as a flat list of leaves; ``restore_state`` rebuilds it."""
    path = os.fspath(path)
    fix = "start the run again without --resume"
    if not os.path.isfile(path):
        raise CheckpointError(path, "no such checkpoint file", fix)
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CheckpointError(path, "not a jaxstyle checkpoint (a single array, not an archive)", fix)
        with z:
            files = set(z.files)
            if int(z["meta/format_version"]) != FORMAT_VERSION:
                raise CheckpointError(path, f"checkpoint format {int(z['meta/format_version'])} is not "
                                      f"{FORMAT_VERSION}", fix)
            n = len([k for k in files if k.startswith("state/")])
            leaves = [z[f"state/{i:05d}"] for i in range(n)]
            resume = ResumeState(z["x"], leaves, int(z["meta/iteration"]), int(z["meta/evaluations"]),
                                 json.loads(str(z["meta/history"])))
            run = json.loads(str(z["meta/run"]))
    except CheckpointError:
        raise
    except (KeyError, ValueError, *_CORRUPT) as e:  # ValueError covers json.JSONDecodeError and pickled arrays
        detail = " ".join(str(e).split())[:120]
        raise CheckpointError(path, f"not a valid jaxstyle checkpoint, or truncated ({type(e).__name__}: {detail})",
                              fix) from None
    if resume.x.ndim != 3 or resume.x.shape[-1] != 3 or not np.issubdtype(resume.x.dtype, np.floating):
        raise CheckpointError(path, f"its image array is {resume.x.shape} {resume.x.dtype}, not an HWC RGB image",
                              fix)
    if not isinstance(run, dict) or not isinstance(resume.history, list):
        raise CheckpointError(path, "not a valid jaxstyle checkpoint (run description is not an object)", fix)
    return resume, run


def restore_state(template, leaves, path="checkpoint"):
    """Rebuild an optimiser state with ``template``'s structure from saved ``leaves``, checking each one."""
    flat, treedef = jax.tree.flatten(template)
    if len(flat) != len(leaves):
        raise CheckpointError(path, f"optimiser state has {len(leaves)} arrays, this run expects {len(flat)} "
                              "(different optimiser or settings?)", "resume with the same options")
    for i, (want, got) in enumerate(zip(flat, leaves)):
        if np.shape(want) != np.shape(got) or np.asarray(want).dtype != np.asarray(got).dtype:
            raise CheckpointError(path, f"optimiser state array {i} is {np.shape(got)} {np.asarray(got).dtype}, "
                                  f"expected {np.shape(want)} {np.asarray(want).dtype}",
                                  "resume with the same options")
    return jax.tree.unflatten(treedef, [jax.numpy.asarray(l) for l in leaves])
