"""``--profile DIR``: a ``jax.profiler`` trace of a few steady-state steps, and the run's compile time, step time
and achieved FLOP/s against the device's peak where known.

The driver calls the :class:`Profile` after every step or chunk with the number of iterations done. The first
call ends the warm-up (its chunk included compilation); the trace then covers the next chunks until at least
``steps`` more iterations have run. The trace (TensorBoard's profile plugin or Perfetto read it) lands in
``DIR/plugins/profile/<run>/``; ``DIR/profile.json`` holds the figures. Compile time is what JAX reports for
tracing, lowering and XLA compilation (``jax.monitoring`` events) over the whole run. FLOPs per step are XLA's
own count of the compiled step (``compiled.cost_analysis()``), given by the caller. With several processes only
process 0 traces (the trace files of one host would collide).
"""

from __future__ import annotations

import json
import os
import time

import jax

from ..gatys.cost import compiled_flops

# Dense peak FLOP/s per chip by device_kind prefix: bf16 for TPUs (float32 matmuls run as bf16 passes at JAX's
# default precision), float32 without tensor cores for GPUs (our default precision; TF32 tensor cores are
# --precision tf32). Vendor figures; anything not listed (CPUs included) is "unknown".
PEAK_FLOPS = {
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v5": 459e12,
    "TPU v6 lite": 918e12, "NVIDIA H100": 67e12, "NVIDIA H200": 67e12, "NVIDIA A100": 19.5e12,
}
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
STEPS = 3
FILE = "profile.json"


def peak_flops(device) -> float | None:
    kind = getattr(device, "device_kind", "")
    return next((v for k, v in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])) if kind.startswith(k)), None)


def flops(jitted, *args) -> float | None:
    """XLA's FLOP count of ``jitted`` on ``args`` (lowered and compiled again for the count; None if unknown)."""
    return compiled_flops(jitted.lower(*args).compile())


class Profile:
    """Callable after each step or chunk (``profile(iterations_done)``); then :meth:`stop`, set
    ``flops_per_step``, and :meth:`write`."""

    def __init__(self, directory: str, steps: int = STEPS):
        self.directory, self.steps = directory, steps
        self.active = jax.process_index() == 0
        self.compile_seconds, self.flops_per_step = 0.0, None
        self.step_seconds = self._first = self._t0 = self._done = None
        self._tracing = False
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event: str, seconds: float, **_) -> None:
        if event in _COMPILE_EVENTS:
            self.compile_seconds += seconds

    def __call__(self, done: int) -> None:
        self._done = done
        if not self.active or self.step_seconds is not None:
            return
        if self._first is None:
            os.makedirs(self.directory, exist_ok=True)
            jax.profiler.start_trace(self.directory)
            self._tracing, self._first, self._t0 = True, done, time.perf_counter()
        elif done - self._first >= self.steps:
            self._stop(done)

    def _stop(self, done: int) -> None:
        jax.profiler.stop_trace()
        self._tracing = False
        if done > self._first:
            self.step_seconds = (time.perf_counter() - self._t0) / (done - self._first)

    def stop(self) -> None:
        """End the measurement: stop the trace if the run ended inside it, stop counting compile time (the FLOP
        count compiles the step once more)."""
        jax.monitoring.unregister_event_duration_listener(self._on_event)
        if self._tracing:
            self._stop(self._done)

    def write(self) -> dict | None:
        """Write ``DIR/profile.json`` (process 0) and return the figures."""
        if not self.active:
            return None
        report = self.report()
        with open(os.path.join(self.directory, FILE), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
        return report

    def report(self) -> dict:
        device = jax.devices()[0]
        peak = peak_flops(device)
        achieved = self.flops_per_step / self.step_seconds if self.flops_per_step and self.step_seconds else None
        return {"device": f"{device.platform}: {getattr(device, 'device_kind', '?')}", "devices": jax.device_count(),
                "compile_seconds": round(self.compile_seconds, 3), "step_seconds": self.step_seconds,
                "traced_steps": self.steps, "flops_per_step": self.flops_per_step, "flops_per_second": achieved,
                "peak_flops_per_second": peak * jax.device_count() if peak else None,
                "fraction_of_peak": achieved / (peak * jax.device_count()) if achieved and peak else None}


def summary(report: dict | None, directory: str) -> str:
    """One line for the run report."""
    if report is None:
        return ""
    def g(v, unit=""):
        return "unknown" if v is None else f"{v:.3g}{unit}"
    peak = report["peak_flops_per_second"]
    against = (f"{g(report['fraction_of_peak'] and 100 * report['fraction_of_peak'], '%')} of the peak {g(peak)}"
               if peak else "peak unknown for this device")
    return (f"profile ({report['device']}, {report['devices']} device(s)): compile {g(report['compile_seconds'], ' s')}"
            f", step {g(report['step_seconds'], ' s')}, {g(report['flops_per_second'])} FLOP/s ({against}); "
            f"trace and {FILE} in {directory}")
