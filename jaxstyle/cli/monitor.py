"""The stylize command's progress and reports while it runs: the progress bar or lines, intermediate images, the
JSONL log, and when to write a checkpoint. All of a run's I/O happens here, in the driver's callback."""

from __future__ import annotations

import sys

import numpy as np

from ..io import images, report
from .plan import Plan


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
        self.checkpoint = None  # set by execute(): (RunState, history) -> None, writes a checkpoint
        self._last_checkpoint = 0
        self._resumed_at = 0
        # disable=None: tqdm turns itself off when stderr is not a terminal; lines are printed instead.
        self.bar = tqdm(total=plan_.config.total_iterations, file=sys.stderr, unit="it", dynamic_ncols=True,
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
            print(f"iteration {record['iteration']}/{self.plan.config.total_iterations}  {_format_terms(record)}  "
                  f"({record['seconds']:.1f} s)", file=sys.stderr)

    def finish(self, result) -> None:
        """Log the final state if it was not logged yet (a stop between print points)."""
        self.bar.close()
        if result.history and (not self.logged or self.logged[-1]["iteration"] != result.history[-1]["iteration"]):
            self.log(self.history[-1] if self.history else result.history[-1])
