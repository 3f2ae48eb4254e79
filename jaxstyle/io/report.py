"""Run reports: the JSONL log, the loss-curve plot and the progression GIF. Every file is written atomically.

I/O only; the numbers come from the driver (:class:`jaxstyle.gatys.run.Progress` and
:attr:`jaxstyle.gatys.StylizeResult.history`).
"""

from __future__ import annotations

import json
import math
import os
from typing import Iterable, Sequence

import numpy as np

from . import images
from ..atomic import atomic_write

TERMS = ("total", "content", "style", "tv")
LOG_FIELDS = ("iteration", *TERMS, "seconds")
CURVE_EXTENSIONS = (".png", ".svg", ".pdf")


def log_record(record: dict) -> dict:
    """One log line: iteration, the four weighted loss terms and the seconds since the start (plus extras).

    Non-finite values become ``null`` (JSON has no NaN/Infinity)."""
    missing = [k for k in LOG_FIELDS if k not in record]
    if missing:
        raise ValueError(f"log record lacks {', '.join(missing)}")
    out = {}
    for key, value in record.items():
        if isinstance(value, (float, np.floating)):
            value = float(value) if math.isfinite(value) else None
        elif isinstance(value, np.integer):
            value = int(value)
        out[key] = value
    return out


def write_jsonl(path, records: Iterable[dict]) -> None:
    """Write ``records`` (one JSON object per line) to ``path``, replacing it atomically.

    The CLI rewrites the whole (small) file at every logged iteration, so the log on disk is always complete up
    to the last logged iteration, even after a crash."""
    lines = [json.dumps(log_record(r), allow_nan=False) + "\n" for r in records]
    with atomic_write(path, "w") as f:
        f.writelines(lines)


def plot_loss_curve(path, history: Sequence[dict], totals: Sequence[tuple[int, float]] = (), *,
                    title: str | None = None) -> None:
    """Plot the loss terms against the iteration on a log scale and save the figure atomically.

    ``history``: one dict per point (``iteration`` and the terms, as in ``StylizeResult.history``), drawn with
    markers. ``totals``: optional ``(iteration, total)`` pairs for every iteration (``Progress.values``), drawn
    as a thin line so the curve has full resolution between history points. Terms that are never positive (a
    weight of 0, the content term in style mode) are left out: a log axis cannot show them.
    """
    # Matplotlib through its object API with the Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in CURVE_EXTENSIONS:
        raise ValueError(f"loss curve must end in one of {', '.join(CURVE_EXTENSIONS)}, not {ext!r}")
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    pts = [(it, v) for it, v in totals if math.isfinite(v) and v > 0]
    if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, color="C0", linewidth=0.8, alpha=0.6, label="total (every iteration)")
    for i, term in enumerate(TERMS):
        xy = [(h["iteration"], h[term]) for h in history
              if h.get(term) is not None and math.isfinite(h[term]) and h[term] > 0]
        if xy:
            xs, ys = zip(*xy)
            ax.plot(xs, ys, marker="o", markersize=3, color=f"C{i}", label=term)
    if ax.lines:
        ax.set_yscale("log")
        ax.legend(loc="upper right", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no positive loss values to plot", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("iteration")
    ax.set_ylabel("weighted loss")
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=ext[1:])


def save_progress_gif(path, frame_paths: Sequence, *, duration_ms: int = 120) -> int:
    """Assemble the saved intermediate images (in order) into an animated GIF; return the number of frames.

    The frames are read back from the files the run wrote, so the animation shows exactly what is on disk."""
    frames = [images.load_image(p, max_pixels=None, role="intermediate") for p in frame_paths]
    images.save_gif(path, frames, duration_ms=duration_ms)
    return len(frames)
