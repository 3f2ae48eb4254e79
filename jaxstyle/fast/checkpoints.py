"""Training checkpoints with orbax-checkpoint: the state pytree plus a JSON record, written atomically.

orbax writes each step into a temporary directory and renames it when complete (a crash leaves the previous
checkpoint intact), keeps the last ``KEEP`` steps, and is multi-host safe. No pickle: arrays are stored by
tensorstore (OCDBT), the record as JSON. The record holds what the state pytree cannot: the data-stream position,
skipped-file count, the configuration, style names and loss-network provenance.
"""

from __future__ import annotations

import os

import jax

from ..errors import InputError

KEEP = 2


def _manager(directory: str, create: bool):
    import orbax.checkpoint as ocp  # imported here: ~2 s, needed only when training

    options = ocp.CheckpointManagerOptions(max_to_keep=KEEP, create=create)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def latest_step(directory: str) -> int | None:
    if not os.path.isdir(directory):
        return None
    with _manager(directory, create=False) as manager:
        return manager.latest_step()


def save(directory: str, step: int, state, record: dict) -> None:
    import orbax.checkpoint as ocp

    with _manager(directory, create=True) as manager:
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   record=ocp.args.JsonSave(record)), force=True)
        manager.wait_until_finished()


def read_record(directory: str) -> tuple[int, dict]:
    """The latest step and its JSON record (enough to rebuild the state template before :func:`restore`)."""
    import orbax.checkpoint as ocp

    step = latest_step(directory)
    if step is None:
        raise InputError(directory, "no checkpoint to resume from", "train without --resume first")
    try:
        with _manager(directory, create=False) as manager:
            out = manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))
    except Exception as e:
        raise InputError(directory, f"cannot read checkpoint step {step} ({type(e).__name__})",
                         "the checkpoint is damaged") from None
    return step, dict(out.record)


def restore(directory: str, template) -> tuple[int, object, dict]:
    """The latest checkpoint as ``(step, state, record)``; ``template`` gives the state's structure and shapes."""
    import orbax.checkpoint as ocp

    step = latest_step(directory)
    if step is None:
        raise InputError(directory, "no checkpoint to resume from", "train without --resume first")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
        with _manager(directory, create=False) as manager:
            out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                record=ocp.args.JsonRestore()))
    except Exception as e:  # orbax/tensorstore raise many types for damaged or mismatched checkpoints
        raise InputError(directory, f"cannot restore checkpoint step {step} ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0][:200] if str(e) else ''})",
                         "the checkpoint is damaged or from another configuration") from None
    return step, out.state, dict(out.record)
