"""The studio's runs: a visible queue and one worker thread per device, so one run uses the device at a time.

A run is :func:`jaxstyle.gatys.run_stylize` (or, for a sweep, :func:`jaxstyle.gatys.stylize_many`, one vmapped
optimisation per row of the grid) with a progress callback that records the iteration, the loss terms and the
current image, and ``should_stop`` polled after every chunk for cancel: the driver and the run state machine are
the library's own, not a copy. Compiled programs are reused between runs of the same shapes (the drivers cache
their jitted programs; the persistent compilation cache and the target cache are enabled as by the CLI), and a
loaded network stays loaded. A failure (a non-finite loss, anything unexpected) ends that run with a one-line
error and the worker goes on with the next.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import itertools
import shlex
import sys
import threading
import time
import traceback
import uuid

import numpy as np
from PIL import Image

from ..cli import options
from ..cli.sweep import run_label
from ..errors import ConfigError, JaxstyleError
from ..gatys.config import StyleConfig
from ..gatys.run import run_stylize
from ..gatys.sweep import stylize_many
from ..io.target_cache import TargetCache
from .forms import command_line

FINAL = ("done", "failed", "cancelled")
TERMS = ("content", "style", "tv", "total")
KEEP_RUNS = 32  # finished runs kept in memory (their images); the oldest finished ones are forgotten first


def png(image) -> bytes:
    """An HWC float image in [0, 1] as PNG bytes."""
    pixels = np.round(np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def chunk_of(iterations: int) -> int:
    """Iterations between progress reports: about 25 reports a run, every 2 to 10 iterations (each report costs
    one extra forward pass for the loss terms)."""
    return max(2, min(10, iterations // 25))


@dataclasses.dataclass(eq=False)
class Cell:
    """One run of a sweep: its settings, and where it stands."""

    settings: dict
    label: str
    status: str = "queued"
    terms: dict = dataclasses.field(default_factory=dict)
    image: bytes | None = None


@dataclasses.dataclass(eq=False)  # a run is itself: compared by identity (it holds arrays)
class Run:
    """One request: the checked inputs and config, and everything the page shows of it."""

    config: StyleConfig
    content: np.ndarray | None
    styles: list
    weights: str  # a file name in the weights directory, or "random"
    inputs: dict  # {"content": name, "styles": [names]}: what the user chose, for the settings file
    axes: dict = dataclasses.field(default_factory=dict)  # sweep: field -> values (at most two fields)
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: str = "queued"
    iteration: int = 0
    iterations: int = 0
    terms: dict = dataclasses.field(default_factory=dict)
    history: list = dataclasses.field(default_factory=list)
    error: str = ""
    image: bytes | None = None
    cells: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    version: int = 0
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)

    def __post_init__(self):
        rows = grid(self.axes)
        self.cells = [Cell(s, run_label(s)) for s in itertools.chain.from_iterable(rows)]
        self.iterations = self.config.iterations * max(1, len(self.cells))  # a sweep: iterations of all its runs

    def describe(self, position: int | None = None, history_from: int = 0) -> dict:
        """The run as the API shows it (``history_from``: the history records already sent)."""
        left = self.iterations - self.iteration
        eta = self.seconds / self.iteration * left if self.iteration and self.status == "running" else None
        return {"id": self.id, "kind": "sweep" if self.axes else "run", "status": self.status,
                "queue_position": position, "iteration": self.iteration, "iterations": self.iterations,
                "terms": self.terms, "error": self.error, "seconds": round(self.seconds, 3),
                "eta_seconds": None if eta is None else round(eta, 1), "has_image": self.image is not None,
                "version": self.version, "weights": self.weights, "history": self.history[history_from:],
                "axes": {k: list(v) for k, v in self.axes.items()},
                "cells": [{"settings": c.settings, "label": c.label, "status": c.status, "terms": c.terms,
                           "has_image": c.image is not None} for c in self.cells]}

    def settings(self, weights: str) -> dict:
        """The run's settings file: the whole config in field names and the equivalent command line
        (``weights``: the path of its weights file as the server was given it, or "random")."""
        return {"format": "jaxstyle-studio-settings-1", "config": dataclasses.asdict(self.config),
                "weights": weights, **self.inputs, "sweep": {k: list(v) for k, v in self.axes.items()},
                "command": shlex.join(command(self, weights))}


def command(run: Run, weights: str) -> list[str]:
    """The ``jaxstyle stylize`` (a sweep: ``jaxstyle sweep``) command line of ``run``."""
    args = command_line(run.config, run.inputs.get("content"), run.inputs.get("styles", []), weights,
                        skip=tuple(run.axes))
    if run.axes:  # the same grid on the command line: jaxstyle sweep takes comma lists
        args[1] = "sweep"
        args[args.index("-o") + 1] = "out/sweep"
        for name, values in run.axes.items():
            args += [options.flag(name), ",".join(f"{v:g}" for v in values)]
    return args


def grid(axes: dict) -> list[list[dict]]:
    """The sweep's runs, row by row: the first weight down the rows, the second across (one row: across)."""
    if not axes:
        return []
    names = list(axes)
    if len(names) == 1:
        return [[{names[0]: v} for v in axes[names[0]]]]
    return [[{names[0]: a, names[1]: b} for b in axes[names[1]]] for a in axes[names[0]]]


class Runner:
    """The queue and its worker thread: runs execute one at a time, in the order they were submitted."""

    def __init__(self, load_model, target_cache: TargetCache | None = None, keep: int = KEEP_RUNS,
                 sweep_batch: int | None = None):
        self._load_model = load_model  # weights name -> VGGModel (the app knows the weights directory)
        self.sweep_batch = sweep_batch  # sweep runs per vmapped optimisation; None: sweep_batch_default()
        self._models: dict = {}
        self.target_cache = target_cache
        self.keep = keep
        self.runs: collections.OrderedDict[str, Run] = collections.OrderedDict()
        self.lock = threading.RLock()
        self._wake = threading.Condition(self.lock)
        self._closed = False
        self.thread = threading.Thread(target=self._work, name="jaxstyle-studio-worker", daemon=True)
        self.thread.start()

    # -------------------------------------------------------------------------------------------- the queue

    def waiting(self) -> int:
        with self.lock:
            return sum(r.status == "queued" for r in self.runs.values())

    def submit(self, run: Run) -> Run:
        with self._wake:
            self.runs[run.id] = run
            self._forget_old()
            self._wake.notify()
        return run

    def get(self, run_id: str) -> Run | None:
        with self.lock:
            return self.runs.get(run_id)

    def position(self, run: Run) -> int | None:
        """1 for the next run to start, 2 after it...; None once it has started."""
        with self.lock:
            waiting = [r for r in self.runs.values() if r.status == "queued"]
        return waiting.index(run) + 1 if run in waiting else None

    def cancel(self, run: Run) -> None:
        """A queued run is cancelled now; a running one at the end of its current chunk."""
        run.cancel.set()
        with self.lock:
            if run.status == "queued":
                self._update(run, status="cancelled", cells=None)

    def close(self, timeout: float = 120) -> None:
        """Cancel every run and wait for the worker to stop (a run stops at the end of its current chunk)."""
        with self._wake:
            self._closed = True
            for run in self.runs.values():
                run.cancel.set()
            self._wake.notify()
        self.thread.join(timeout)

    def _forget_old(self) -> None:
        finished = [k for k, r in self.runs.items() if r.status in FINAL]
        for k in finished[:max(0, len(self.runs) - self.keep)]:
            del self.runs[k]

    def _update(self, run: Run, cells=(), **changes) -> None:
        """Change a run (under the lock): every change bumps its version, which the event stream watches."""
        for k, v in changes.items():
            setattr(run, k, v)
        if cells is None:  # the run ended: cells that did not finish end with it, and its inputs are let go
            for c in run.cells:
                c.status = run.status if c.status in ("queued", "running") else c.status
            run.content, run.styles = None, []
        run.version += 1

    def _next(self) -> Run | None:
        with self._wake:
            while not self._closed:
                run = next((r for r in self.runs.values() if r.status == "queued"), None)
                if run is not None:
                    self._update(run, status="running")
                    return run
                self._wake.wait()
        return None

    def _work(self) -> None:
        while (run := self._next()) is not None:
            start = time.perf_counter()
            try:
                model = self._model(run.weights)
                (self._sweep if run.axes else self._single)(run, model, start)
            except ConfigError as e:
                self._fail(run, e.renamed(options.flag))
            except JaxstyleError as e:
                self._fail(run, str(e))
            except Exception as e:  # noqa: BLE001 -- the server stays up; the run says what went wrong
                traceback.print_exc(file=sys.stderr)
                self._fail(run, f"internal error: {type(e).__name__}: {' '.join(str(e).split())}")

    def _fail(self, run: Run, message: str) -> None:
        with self.lock:
            self._update(run, status="failed", error=message, cells=None)

    def _model(self, name: str):
        if name not in self._models:
            if len(self._models) >= 2:
                self._models.clear()
            self._models[name] = self._load_model(name)
        return self._models[name]

    # -------------------------------------------------------------------------------------------- the work

    def _single(self, run: Run, model, start: float) -> None:
        def progress(p) -> None:  # the driver's callback, after every chunk
            record = {"iteration": p.iteration, **_terms(p.terms), "seconds": round(p.seconds, 3)}
            image = png(p.image)
            with self.lock:
                run.history.append(record)
                self._update(run, iteration=p.iteration, terms=_terms(p.terms), image=image,
                             seconds=time.perf_counter() - start)

        result = run_stylize(run.content, run.styles, model, run.config, chunk=chunk_of(run.config.iterations),
                             callback=progress, should_stop=run.cancel.is_set, target_cache=self.target_cache)
        status = {"done": "done", "interrupted": "cancelled", "nonfinite": "failed"}[result.status]
        error = ""
        if result.status == "nonfinite":  # the CLI's advice; the kept image is the last finite one
            error = f"{result.message} — lower --style-weight, --content-weight or --learning-rate"
        elif not np.all(np.isfinite(result.image)):
            status, error = "failed", (f"the image became non-finite at iteration {result.iterations} — lower "
                                       "--style-weight, --content-weight or --learning-rate")
        with self.lock:
            self._update(run, status=status, error=error, image=png(result.image), iteration=result.iterations,
                         seconds=time.perf_counter() - start, cells=None)

    def _sweep(self, run: Run, model, start: float) -> None:
        """The grid's runs in batches, each batch one :func:`stylize_many` optimisation, so the grid fills in
        batch by batch (see :func:`sweep_batch_default`)."""
        n, width = run.config.iterations, len(grid(run.axes)[0])
        size = self.sweep_batch or sweep_batch_default(width)
        for first in range(0, len(run.cells), size):
            if run.cancel.is_set():
                break
            cells = run.cells[first:first + size]

            def progress(pr, cells=cells, first=first) -> None:
                with self.lock:
                    for k, c in enumerate(cells):
                        c.terms = _terms({t: v[k] for t, v in pr.terms.items()})
                    self._update(run, iteration=n * first + pr.iteration * len(cells),
                                 seconds=time.perf_counter() - start)

            with self.lock:
                for c in cells:
                    c.status = "running"
                self._update(run)
            result = stylize_many(run.content, run.styles, {k: [c.settings[k] for c in cells] for k in run.axes},
                                  model=model, config=run.config, chunk=chunk_of(n), callback=progress,
                                  should_stop=run.cancel.is_set, target_cache=self.target_cache)
            with self.lock:
                for k, c in enumerate(cells):
                    c.image, c.terms = png(result.images[k]), _terms({t: v[k] for t, v in result.terms.items()})
                    c.status = {"done": "done", "nonfinite": "failed", "interrupted": "cancelled"}[result.status[k]]
                self._update(run, iteration=n * first + int(np.sum(result.iterations)),
                             image=run.image or cells[0].image, seconds=time.perf_counter() - start)
        failed = sum(c.status == "failed" for c in run.cells)
        with self.lock:
            self._update(run, status="cancelled" if run.cancel.is_set() else "done", cells=None,
                         error=f"{failed} of {len(run.cells)} runs stopped at a non-finite loss — lower their "
                               "weights" if failed else "")


def sweep_batch_default(width: int) -> int:
    """Sweep runs per optimisation: a row of the grid on a GPU/TPU (one vmapped program: the batch is where the
    device's throughput is); one run at a time on CPU, where a vmapped run costs 0.86-0.89 of a single one per
    image (docs/sweep.md), a saving that outweighs compiling the vmapped programs (about 20 s on the loaded
    2-core test machine) only for long sweeps, and where a cell at a time fills the grid soonest. A sweep of one
    run is the single-run program itself (jaxstyle.gatys.sweep), already compiled by an earlier run of the same
    shapes. ``jaxstyle serve --sweep-batch`` overrides it."""
    import jax  # noqa: PLC0415 -- the backend is known once jax is imported, as it is by the drivers

    return width if jax.default_backend() != "cpu" else 1


def _terms(terms: dict) -> dict:
    """Loss terms as JSON numbers (a non-finite one is null: JSON has no NaN)."""
    out = {}
    for k in TERMS:
        v = float(np.asarray(terms[k]))
        out[k] = v if np.isfinite(v) else None
    return out
