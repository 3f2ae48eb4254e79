"""One training run from files to a model file: the driver around the pure :func:`train.train_step`.

I/O lives here (and in the CLI): the image stream, orbax checkpoints, the JSONL loss history, preview images
and the final model file. Everything a resumed run needs is in the checkpoint, so ``resume=True`` continues
bit-for-bit as the uninterrupted run would (same state, same data position, same compiled step).

Several processes (``jax.distributed``): each reads its share of every batch (:class:`~.data.ImageStream`'s
``share``), the batch axis spans every device of every process, every process takes part in the (orbax,
multi-host) checkpoints, and process 0 alone writes the history, previews and model file. The checkpoint records
each process's data position; a run resumes with another number of processes when no file was skipped (the
positions are then a function of the step alone).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
import types
from typing import Callable, Sequence

import jax
import numpy as np

from .._version import __version__
from ..io import images, profiling
from ..atomic import atomic_write
from ..errors import ImageError, InputError, UsageError
from . import checkpoints, config as config_lib, perceptual
from .inference import _jitted as jitted
from .data import ImageStream, list_images
from .model_file import FastModel, save_model
from .net import style_weights
from .objective import make_objective
from .train import batch_styles, compile_step, data_mesh, init_state, local_rows, network, put_batch, shardings


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where a run writes, all derived from the model path ``out`` (``models/x.npz``)."""

    out: str

    @property
    def stem(self) -> str:
        return os.path.splitext(self.out)[0]

    checkpoints = property(lambda self: self.stem + ".ckpt")
    history = property(lambda self: self.stem + ".history.jsonl")
    previews = property(lambda self: self.stem + ".preview")


@dataclasses.dataclass
class Run:
    """What the driver needs besides :class:`FastConfig` (I/O choices, never hyperparameters)."""

    styles: Sequence[str]
    dataset: str
    out: str
    weights: str = "random"
    checkpoint_every: int = 1000
    preview_every: int = 500
    preview: str | None = None
    workers: int = 4
    resume: bool = False


def _load_styles(paths: Sequence[str], size: int) -> list[np.ndarray]:
    return [images.resize_long_side(images.load_image(p, role="style"), size) for p in paths]


def _preview_image(path: str | None, files: Sequence[str], size: int) -> np.ndarray:
    """The given preview image, or the first readable one of the dataset (a departure from nothing: a choice)."""
    if path is not None:
        return images.resize_long_side(images.load_image(path, role="preview"), size)
    for candidate in files[:100]:
        try:
            return images.resize_long_side(images.load_image(candidate, role="preview"), size)
        except ImageError:
            continue
    raise InputError(files[0], "none of the dataset's first 100 files is readable", "check the dataset")


def _history_trim(path: str, step: int) -> None:
    """Keep the history lines up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
    with atomic_write(path, "w") as f:
        f.writelines(kept)


def prepare(run: Run, config: config_lib.FastConfig | None, steps: int | None):
    """Check everything before any work: config, output, styles, dataset, checkpoint state. Returns the start."""
    paths = Paths(images.check_output_path(run.out, run.styles, allowed=(".npz",)))
    start_step, record = 0, None
    if run.resume:
        # The checkpoint's own configuration, styles and weights; only the number of steps may change.
        start_step, record = checkpoints.read_record(paths.checkpoints)
        config = config_lib.from_json(record["config"])
        run = dataclasses.replace(run, styles=record["styles"], weights=record["weights"],
                                  dataset=run.dataset or record["dataset"])
    elif checkpoints.latest_step(paths.checkpoints) is not None:
        raise UsageError(f"{paths.checkpoints}: a checkpoint of an earlier run exists — pass --resume to continue "
                         "it, or remove it (or choose another -o) to start afresh")
    if config is None:
        raise UsageError("a new training run needs a configuration")
    if steps is not None:
        config = dataclasses.replace(config, steps=steps)
    config = config_lib.validate(config, jax.device_count())
    if start_step >= config.steps:
        raise UsageError(f"the checkpoint is at step {start_step}, not before --steps {config.steps}")
    return paths, run, config, start_step, record


def _positions(record: dict | None, start: int, batch_size: int) -> tuple[int, int]:
    """This process's (data position, skipped files) in the checkpoint ``record`` (a run at step ``start``)."""
    if record is None:
        return 0, 0
    positions = record.get("positions", [record["position"]])  # records of single-process runs hold one
    skipped = record.get("skipped_per_process", [record["skipped"]])
    if len(positions) == jax.process_count():
        return positions[jax.process_index()], skipped[jax.process_index()]
    if any(skipped):
        raise UsageError(f"the checkpoint was written by {len(positions)} process(es) that skipped unreadable files"
                         f" (per-process data positions) — resume with {len(positions)} process(es)")
    return start * (batch_size // jax.process_count()), 0  # no file skipped: position = step x local batch


def _start(run: Run, config, steps):
    """Everything a training run needs before its first step (resumed from the checkpoint if asked)."""
    paths, run, config, start, record = prepare(run, config, steps)
    files = list_images(run.dataset)
    styles = _load_styles(run.styles, config.style_size)
    vgg = perceptual.load_vgg(run.weights, arch=config.arch)
    net, mesh = network(config, len(styles)), data_mesh()
    replicated, _ = shardings(mesh)
    state = init_state(net, config)
    position, skipped = _positions(record, start, config.batch_size)
    if record is not None:
        _, state, record = checkpoints.restore(paths.checkpoints, state)
        if jax.process_index() == 0:
            _history_trim(paths.history, start)
    rows = local_rows(mesh, config.batch_size)
    local = rows.stop - rows.start
    stream = ImageStream(files, config.image_size, local, config.seed, position, run.workers,
                         share=(rows.start // local, jax.process_count()))
    stream.skipped = skipped
    provenance = {"weights": os.path.basename(run.weights), "weights_source": vgg.source,
                  "weights_sha256": vgg.source_sha256, "dataset": os.path.abspath(run.dataset),
                  "dataset_files": len(files), "styles": [os.path.basename(s) for s in run.styles],
                  "jaxstyle": __version__, "devices": jax.device_count(), "processes": jax.process_count()}
    return types.SimpleNamespace(
        paths=paths, run=run, config=config, start=start, n_styles=len(styles), net=net, mesh=mesh, rows=rows,
        preview=_preview_image(run.preview, files, config.image_size), stream=stream, provenance=provenance,
        objective=_replicate(make_objective(vgg, styles, config), replicated),
        state=_replicate(state, replicated), step_fn=compile_step(net, config, mesh),
        done_at={"position": position, "skipped": skipped})  # the stream where the last completed step left it


def _replicate(tree, replicated):
    """The same host values on every process, placed on every device (device_put takes host values only when
    the sharding spans other processes' devices)."""
    return jax.device_put(jax.device_get(tree) if jax.process_count() > 1 else tree, replicated)


def _record(t, config, step: int) -> dict:
    """The checkpoint's JSON record at ``step``: every process's data position (a collective: all must call)."""
    mine = np.asarray([t.done_at["position"], t.done_at["skipped"]], np.int64)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, 2)
    else:
        every = mine[None]
    return {"position": int(every[0, 0]), "skipped": int(every[:, 1].sum()), "positions": every[:, 0].tolist(),
            "skipped_per_process": every[:, 1].tolist(), "config": config_lib.to_json(config),
            "styles": list(t.run.styles), "weights": t.run.weights, "dataset": t.run.dataset, "step": step,
            "provenance": t.provenance}


def train(run: Run, config: config_lib.FastConfig | None = None, *, steps: int | None = None,
          progress: Callable | None = None, profile=None) -> FastModel:
    """Train (or, with ``run.resume``, continue from the latest checkpoint) and write the model file.

    ``config`` is ignored when resuming (the checkpoint's is used); ``steps`` overrides the number of steps.
    ``progress(step, metrics, images_per_s, skipped)`` is called after every step (the CLI draws its bar);
    ``profile`` (a :class:`jaxstyle.io.profiling.Profile`) after every step too; it is stopped and given the
    compiled step's FLOPs at the end.
    """
    t = _start(run, config, steps)
    paths, config, stream, state = t.paths, t.config, t.stream, t.state
    writer = jax.process_index() == 0  # process 0 alone writes the history, previews and model file
    try:
        # line-buffered: tail -f works
        with open(paths.history if writer else os.devnull, "a", encoding="utf-8", buffering=1) as history:
            for step in range(t.start, config.steps):
                t0 = time.perf_counter()
                batch = put_batch(next(stream), batch_styles(step, config.batch_size, t.n_styles)[t.rows], t.mesh)
                state, metrics = t.step_fn(t.objective, state, batch)
                t.done_at.update(position=stream.position, skipped=stream.skipped)
                metrics = {k: float(v) for k, v in metrics.items()}
                rate = config.batch_size / (time.perf_counter() - t0)
                history.write(json.dumps({"step": step + 1, **metrics, "images_per_s": round(rate, 3),
                                          "skipped": stream.skipped}) + "\n")
                if progress and writer:
                    progress(step + 1, metrics, rate, stream.skipped)
                if profile is not None:
                    profile(step + 1)
                _periodic(t, state, history, step + 1, writer)
    except KeyboardInterrupt:
        done = int(state.step)
        if done > t.start and jax.process_count() == 1:  # several processes may stop at different steps
            checkpoints.save(paths.checkpoints, done, state, _record(t, config, done))
        raise
    finally:
        stream.close()
    if profile is not None:
        profile.stop()
        profile.flops_per_step = profiling.flops(t.step_fn, t.objective, state, batch)  # batch: the last one
    checkpoints.save(paths.checkpoints, config.steps, state, _record(t, config, config.steps))
    meta = {"styles": [os.path.splitext(os.path.basename(s))[0] for s in t.run.styles],
            "training": {**config_lib.to_json(config), "steps_done": config.steps, "skipped_files": stream.skipped},
            "provenance": {**t.provenance, "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}}
    model = FastModel(params=jax.device_get(state.params), net=t.net, meta=meta)
    if writer:
        save_model(paths.out, model)
    return model


def _periodic(t, state, history, done: int, writer: bool) -> None:
    """Previews (process 0) and checkpoints (every process: orbax coordinates them) after step ``done``."""
    if writer and t.run.preview_every and (done % t.run.preview_every == 0 or done == t.config.steps):
        _save_previews(t.paths, t.net, jax.device_get(state.params), t.preview, done)
    if t.run.checkpoint_every and done % t.run.checkpoint_every == 0 and done < t.config.steps:
        if writer:
            history.flush()
            os.fsync(history.fileno())
        checkpoints.save(t.paths.checkpoints, done, state, _record(t, t.config, done))


def _save_previews(paths: Paths, net, params, preview: np.ndarray, step: int) -> None:
    os.makedirs(paths.previews, exist_ok=True)
    for k in range(net.n_styles):
        out = jitted(net, False)(params, preview[None], style_weights(net.n_styles, k))[0]
        suffix = f"_style{k}" if net.n_styles > 1 else ""
        images.save_image(os.path.join(paths.previews, f"step{step:07d}{suffix}.png"), np.asarray(out))
