"""jaxstyle vs PyTorch: the one benchmark command. Writes benchmarks/results/*.json and docs/benchmarks.md.

    .venv/bin/python benchmarks/run.py                       # everything, spec sizes (long on a 2-core CPU)
    .venv/bin/python benchmarks/run.py --phases speed --sizes 256 512 --reps 5
    .venv/bin/python benchmarks/run.py --render-only         # re-render the doc from the stored JSON

Phases (each writes ``benchmarks/results/<phase>.json``; the doc is rendered from whatever JSON exists):

- ``speed``: time per loss-and-gradient evaluation, jaxstyle vs PyTorch eager (and ``torch.compile``),
  interleaved in one process, ratio pair by pair; GFLOP/s (and % of peak on a known GPU).
- ``compile``: a fresh process twice with an empty persistent-cache directory: cold and warm time to the first
  iteration of ``run_stylize``'s compiled chunk.
- ``memory``: peak host RSS (CPU) or device memory (GPU) of one process per side and size.
- ``convergence``: loss vs loss-and-gradient evaluations: optax L-BFGS / Adam vs torch.optim.LBFGS / Adam.
- ``levers``: one design choice changed at a time (see benchmarks/variants.py), and XLA CPU flags.

Both sides use the same random VGG19 (one ``.npz``), the same images, the same loss (tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

_T_START = time.perf_counter()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

RESULTS = os.path.join(ROOT, "benchmarks", "results")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
GFLOP_512 = 397.0  # one loss-and-input-gradient evaluation at 512x512 (docs/algorithm.md); scales with pixels
# Dense peak TFLOP/s by GPU name fragment: (float32, tf32, bf16). CPUs get no peak column.
GPU_PEAK = {"H200": (67.0, 495.0, 989.0), "H100": (67.0, 495.0, 989.0), "A100": (19.5, 156.0, 312.0),
            "L4": (30.3, 60.0, 121.0)}
PHASES = ("speed", "compile", "memory", "convergence", "levers", "loop")


def gflop(size: int) -> float:
    return GFLOP_512 * (size / 512) ** 2


def forward_gflop(size: int, last_layer: str, arch: str = "vgg19") -> float:
    """GFLOP of one VGG forward pass of a size x size image, truncated after ``last_layer`` (multiply-adds
    counted as 2 FLOP, convolutions only): what computing a target costs."""
    from jaxstyle.nets import vgg

    block_last, index_last = (int(v) for v in last_layer[len("relu"):].split("_"))
    total = 0.0
    for name, (kh, kw, cin, cout) in vgg.conv_shapes(arch).items():
        block, index = (int(v) for v in name[len("conv"):].split("_"))
        side = size >> (block - 1)
        total += 2.0 * side * side * kh * kw * cin * cout
        if (block, index) == (block_last, index_last):
            break
    return total / 1e9


def targets_gflop(size: int) -> float:
    """The default targets at ``size``: the content image to relu4_2 plus one style image to relu5_1."""
    return forward_gflop(size, "relu4_2") + forward_gflop(size, "relu5_1")


# ------------------------------------------------------------------------------------------------------------
# Machine and environment


def machine() -> dict:
    import jax
    import torch

    model = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    dev = jax.devices()[0]
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": model, "cpu_count": os.cpu_count(),
        "jax": jax.__version__, "torch": torch.__version__, "python": platform.python_version(),
        "jax_device": f"{dev.platform}: {dev.device_kind}", "torch_device": torch_device(),
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "jax_threads": "XLA CPU default: one intra-op thread per core (os.cpu_count())",
        "loadavg_start": os.getloadavg(),
    }


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def gpu_peak(kind: str):
    for name, peak in GPU_PEAK.items():
        if name in kind:
            return peak
    return None


def setup_torch_threads() -> None:
    import torch

    torch.set_num_threads(os.cpu_count())


# ------------------------------------------------------------------------------------------------------------
# speed


def _timer(fn, sync):
    t = time.perf_counter()
    sync(fn())
    return time.perf_counter() - t


def phase_speed(args) -> dict:
    import jax
    import numpy as np
    import torch

    from benchmarks import common, torch_gatys

    setup_torch_threads()
    dev = torch_device()
    tsync = (lambda r: torch.cuda.synchronize()) if dev == "cuda" else (lambda r: None)
    path = common.weights_file()
    rows = []
    for size in args.sizes:
        reps = args.reps if size < args.large_from else args.reps_large
        model, problem, _ = common.jax_problem(size, path)
        f = common.jax_loss_and_grad(problem.spec)
        a = (problem.targets, problem.weights)
        x = jax.numpy.asarray(common.init_noise(size))
        _, loss = common.torch_problem(size, path)
        xt = torch_gatys.to_nchw(common.init_noise(size)).to(dev)
        fns = {"jaxstyle": (lambda: f(model, x, *a), jax.block_until_ready),
               "torch_eager": (lambda: torch_gatys.loss_and_grad(loss, xt), tsync)}
        compile_s = {}
        if args.torch_compile and size <= args.torch_compile_max:
            try:
                compiled = torch.compile(loss)
                t = time.perf_counter()
                tsync(torch_gatys.loss_and_grad(compiled, xt))
                compile_s["torch_compile"] = time.perf_counter() - t
                fns["torch_compile"] = (lambda: torch_gatys.loss_and_grad(compiled, xt), tsync)
            except Exception as e:  # noqa: BLE001 - recorded, the column is then empty
                compile_s["torch_compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        t = time.perf_counter()
        jax.block_until_ready(fns["jaxstyle"][0]())
        compile_s["jaxstyle"] = time.perf_counter() - t
        t = time.perf_counter()
        tsync(fns["torch_eager"][0]())
        compile_s["torch_eager"] = time.perf_counter() - t
        if size < args.large_from:  # one more warm-up call each (the first calls above were warm-up too)
            for name, (fn, sync) in fns.items():
                sync(fn())
        times = {name: [] for name in fns}
        for _ in range(reps):  # interleaved: each repetition times every implementation once
            for name, (fn, sync) in fns.items():
                times[name].append(_timer(fn, sync))
        ratios = [j / e for j, e in zip(times["jaxstyle"], times["torch_eager"])]
        row = {"size": size, "pixels": size * size, "gflop": gflop(size), "reps": reps, "times": times,
               "median": {k: statistics.median(v) for k, v in times.items()},
               "ratio_jax_over_eager_pairs": ratios, "ratio_median": statistics.median(ratios),
               "first_call_s": compile_s, "loadavg": os.getloadavg()}
        if "torch_compile" in times:
            row["ratio_jax_over_compile_median"] = statistics.median(
                [j / c for j, c in zip(times["jaxstyle"], times["torch_compile"])])
        print(f"speed {size}: " + ", ".join(f"{k} {v:.3f}s" for k, v in row["median"].items())
              + f", jax/eager {row['ratio_median']:.2f}", flush=True)
        rows.append(row)
        del model, problem, loss
    return {"rows": rows, "gpu_peak_tflops": gpu_peak(jax.devices()[0].device_kind)}


# ------------------------------------------------------------------------------------------------------------
# compile: subprocess worker "first-iter"


def worker_first_iter(size: int, cache: str, variant: str = "default") -> dict:
    """Run in a fresh process: time from the imports to the first iteration of the program run_stylize runs on
    this backend (CPU: the jitted loop-free step; elsewhere the compiled while_loop chunk).

    ``variant="eager-targets"``: ``prepare`` computes the targets op by op (eager ``content_targets`` /
    ``style_targets``), as jaxstyle did before it jitted them. ``variant="target-cache"``: ``prepare`` uses a
    target cache in the same directory as the compilation cache, as the CLI does (the warm run is a re-run
    on the same images)."""
    t_import0 = time.perf_counter()
    import jax
    import jax.numpy as jnp

    from jaxstyle.io import compilation_cache

    compilation_cache.enable(os.path.join(cache, "xla"))
    from benchmarks import common

    stylize = common.core()
    t_import = time.perf_counter() - t_import0
    if variant == "eager-targets":
        stylize.problem._content_targets_jit = stylize.content_targets
        stylize.problem._style_targets_jit = stylize.style_targets
    path = common.weights_file()
    import warnings

    import jaxstyle

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = jaxstyle.load_vgg(path)
    jax.block_until_ready(model.params)
    t_load = time.perf_counter() - t
    config = stylize.StyleConfig(image_size=size, tv_weight=0.0)
    content, style = common.images(size)
    targets = None
    if variant == "target-cache":  # what the CLI does: reuse the targets an earlier run on these images stored
        from jaxstyle.io.target_cache import TargetCache

        targets = TargetCache(os.path.join(cache, "targets"))
    t = time.perf_counter()
    problem = stylize.prepare(model, content, [style], config, targets)
    jax.block_until_ready(problem.targets)
    t_prepare = time.perf_counter() - t
    t = time.perf_counter()  # again: the targets' compute alone (every compilation is now in memory)
    jax.block_until_ready(stylize.prepare(model, content, [style], config).targets)
    t_prepare_again = time.perf_counter() - t
    key = (config.optimizer, config.learning_rate, config.lbfgs_memory)
    step, chunk = stylize.run._programs(problem.spec, key)[:2]
    x = stylize.init_image("noise", problem.shape, seed=0)
    state = stylize.loop.init(stylize.run.optimizer_of(config), x)._replace(stop_at=jnp.int32(1))
    # What run_stylize executes on this backend: one jitted loop-free step per iteration on CPU (the host
    # loop), the compiled while_loop chunk elsewhere.
    host = stylize.run.host_loop_default()
    args = (model, problem.targets, problem.weights, *stylize.run._split(state))
    t = time.perf_counter()
    lowered = step.lower(*args) if host else chunk.lower(*args, max_steps=50)
    t_trace = time.perf_counter() - t
    t = time.perf_counter()
    exe = lowered.compile()
    t_compile = time.perf_counter() - t
    t = time.perf_counter()
    new_state = exe(*args)[0]
    new_x, used = new_state.x, new_state.evaluations
    jax.block_until_ready(new_x)
    t_iter = time.perf_counter() - t
    return {"size": size, "variant": variant, "program": "host-loop step" if host else "while_loop chunk",
            "optimizer": config.optimizer, "import_s": t_import, "load_weights_s": t_load, "prepare_s": t_prepare,
            "prepare_again_s": t_prepare_again, "trace_lower_s": t_trace,
            "compile_or_load_s": t_compile, "first_iteration_compute_s": t_iter,
            "evaluations_in_first_iteration": int(used),
            # From the start of the imports (what a user waits for after launching), iteration compute excluded.
            "to_first_iteration_s": t_import + t_load + t_prepare + t_trace + t_compile,
            "process_to_first_iteration_done_s": time.perf_counter() - _T_START - t_prepare_again}


def _subprocess(argv, env_extra=None, timeout=3600) -> dict:
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300], "rc": proc.returncode}
    return json.loads(lines[-1])


def phase_compile(args) -> dict:
    import tempfile

    rows = []
    for size in args.compile_sizes:
        for variant in args.compile_variants:
            with tempfile.TemporaryDirectory(prefix="jaxstyle-xla-cache-") as cache:
                argv = ["--worker", "first-iter", "--size", str(size), "--cache", cache, "--side", variant]
                cold = _subprocess(argv)
                warm = _subprocess(argv)
                entries = len(os.listdir(os.path.join(cache, "xla")))
            print(f"compile {size} {variant}: cold {cold.get('to_first_iteration_s', cold)} warm "
                  f"{warm.get('to_first_iteration_s', warm)}", flush=True)
            rows.append({"size": size, "variant": variant, "cold": cold, "warm": warm, "cache_entries": entries,
                         "loadavg": os.getloadavg()})
    return {"rows": rows, "target_warm_s": 3.0}


# ------------------------------------------------------------------------------------------------------------
# memory: subprocess worker "memory"


def _rss_mb(field: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident set size of this process in MiB.

    Peak via VmHWM, not ``getrusage().ru_maxrss``: Linux carries ru_maxrss across fork+exec, so a worker started
    by a big parent would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    if field == "VmHWM":  # not Linux: fall back to getrusage (bytes on macOS)
        scale = 2**20 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    return float("nan")


# The memory phase's "tiled" side: tiles of 256 px (one 256² image is then one tile and its halo).
MEMORY_TILE = 256


def _tiled_loss_and_grad(model, problem):
    """``(model, x, targets, weights) -> (loss, grad)`` evaluated tile by tile as ``--tile MEMORY_TILE`` does."""
    from jaxstyle.gatys import tiled as tiled_driver
    from jaxstyle.objective import tiled

    plan = tiled.plan(model, problem.shape, problem.targets, problem.spec, MEMORY_TILE)
    return lambda m, x, targets, weights: tiled.tiled_value_and_grad(x, m, targets, weights, plan,
                                                                     tiled_driver._parts())


def worker_memory(size: int, side: str, evals: int = 1) -> dict:
    from benchmarks import common

    path = common.weights_file()
    if side == "torch":
        import torch

        from benchmarks import torch_gatys

        setup_torch_threads()
        dev = torch_device()
        base = _rss_mb()
        _, loss = common.torch_problem(size, path)
        xt = torch_gatys.to_nchw(common.init_noise(size)).to(dev)
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for _ in range(evals):
            torch_gatys.loss_and_grad(loss, xt)
        device_peak = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None
    else:
        import jax

        from benchmarks import variants

        base = _rss_mb()
        # remat and tiled: the whole run's way, targets included (prepare computes them as such a run does)
        StyleConfig = common.core().StyleConfig
        config = {"remat": StyleConfig(image_size=size, tv_weight=0.0, remat=True),
                  "tiled": StyleConfig(image_size=size, tv_weight=0.0, tile=MEMORY_TILE)}.get(side)
        model, problem, _ = common.jax_problem(size, path, config)
        f = {"jaxstyle": lambda: common.jax_loss_and_grad(problem.spec),
             "tiled": lambda: _tiled_loss_and_grad(model, problem),
             "remat": lambda: common.jax_loss_and_grad(problem.spec),
             "checkpoint": lambda: variants.handwritten_loss_and_grad(problem.spec, remat=True, pooling="jaxstyle"),
             "handwritten": lambda: variants.handwritten_loss_and_grad(problem.spec),
             "bfloat16": lambda: variants.loss_and_grad(problem.spec, precision="bfloat16")}[side]()
        x = jax.numpy.asarray(common.init_noise(size))
        for _ in range(evals):
            jax.block_until_ready(f(model, x, problem.targets, problem.weights))
        stats = jax.devices()[0].memory_stats() or {}
        device_peak = stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None
    peak = _rss_mb("VmHWM")
    return {"size": size, "side": side, "peak_rss_mb": peak, "rss_after_imports_mb": base,
            "device_peak_mb": device_peak}


def phase_memory(args) -> dict:
    rows = []
    for size in args.memory_sizes:
        for side in args.memory_sides:
            r = _subprocess(["--worker", "memory", "--size", str(size), "--side", side])
            r.setdefault("size", size)
            r.setdefault("side", side)
            print(f"memory {size} {side}: {r.get('peak_rss_mb', r)}", flush=True)
            rows.append(r)
    return {"rows": rows}


# ------------------------------------------------------------------------------------------------------------
# convergence


def _jax_trace(name, size, max_evals, path, lr):
    import jax.numpy as jnp

    from benchmarks import common

    stylize = common.core()
    model, problem, config = common.jax_problem(size, path)
    config = dataclasses.replace(config, optimizer=name, learning_rate=lr)
    # The programs run_stylize uses on this backend (CPU: the loop-free step; same step either way).
    programs = stylize.run.programs(problem, config, model, host_loop=stylize.run.host_loop_default())
    state = stylize.loop.init(stylize.run.optimizer_of(config), jnp.asarray(common.init_noise(size)))
    # One iteration per call, so the evaluations each iteration used are known exactly; the loss at x_k is the
    # value the next call reports (its loss at the start of its step).
    trace, evals, t0 = [], 0, time.perf_counter()
    pending = None
    while evals < max_evals:
        state = programs.set_stop(state, int(state.iteration) + 1)
        before = int(state.evaluations)
        if programs.step is not None:
            state, value = programs.step(state)
        else:
            state, values = programs.chunk(state, 1)
            value = values[0]
        if pending is not None:
            trace.append((pending, float(value), time.perf_counter() - t0))
        if not bool(state.finite):
            break
        evals += int(state.evaluations) - before
        pending = evals
    if pending is not None and evals <= max_evals:
        trace.append((pending, float(programs.terms(state.x)["total"]), time.perf_counter() - t0))
    return [t for t in trace if t[0] <= max_evals]


def phase_convergence(args) -> dict:
    import torch

    from benchmarks import common, torch_gatys

    setup_torch_threads()
    path = common.weights_file()
    size, n = args.conv_size, args.conv_evals
    runs = {}
    for name in args.conv_runs:
        t = time.perf_counter()
        if name.startswith("jax-"):
            trace = _jax_trace(name[4:], size, n, path, args.adam_lr)
        else:
            _, loss = common.torch_problem(size, path)
            x0 = torch_gatys.to_nchw(common.init_noise(size)).to(torch_device())
            if name == "torch-lbfgs":
                trace = torch_gatys.run_lbfgs(loss, x0, n, line_search="strong_wolfe")
            elif name == "torch-lbfgs-nols":
                trace = torch_gatys.run_lbfgs(loss, x0, n, line_search=None)
            else:
                trace = torch_gatys.run_adam(loss, x0, n, lr=args.adam_lr)
        runs[name] = {"trace": trace, "seconds": time.perf_counter() - t}
        print(f"convergence {name}: {len(trace)} points, final {trace[-1][1]:.4g}, "
              f"{runs[name]['seconds']:.0f}s", flush=True)
    return {"size": size, "evals": n, "runs": runs, "adam_lr": args.adam_lr, "lbfgs_memory": 100}


# ------------------------------------------------------------------------------------------------------------
# levers


def _median_time(fn, reps):
    import jax

    jax.block_until_ready(fn())
    jax.block_until_ready(fn())
    return statistics.median(_timer(fn, jax.block_until_ready) for _ in range(reps))


def worker_lever_time(size: int, reps: int) -> dict:
    """Baseline jaxstyle loss-and-grad time in this process (run with different XLA_FLAGS)."""
    import jax

    from benchmarks import common

    model, problem, _ = common.jax_problem(size, common.weights_file())
    f = common.jax_loss_and_grad(problem.spec)
    x = jax.numpy.asarray(common.init_noise(size))
    return {"median_s": _median_time(lambda: f(model, x, problem.targets, problem.weights), reps)}


def phase_levers(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from benchmarks import common, torch_gatys, variants

    setup_torch_threads()
    size, reps = args.lever_size, args.lever_reps
    path = common.weights_file()
    stylize = common.core()
    model, problem, config = common.jax_problem(size, path)
    a = (problem.targets, problem.weights)
    x = jnp.asarray(common.init_noise(size))
    base_fn = common.jax_loss_and_grad(problem.spec)
    _, base_grad = base_fn(model, x, *a)
    rows = []

    def add(lever, variant, fn, note="", grad_of=None):
        t = _median_time(fn, reps)
        row = {"lever": lever, "variant": variant, "median_s": t, "note": note}
        if grad_of is not None:
            g = grad_of()
            row["grad_rel_err_vs_default"] = float(np.linalg.norm(np.asarray(g) - np.asarray(base_grad))
                                                   / np.linalg.norm(np.asarray(base_grad)))
        rows.append(row)
        print(f"lever {lever} / {variant}: {t:.3f}s {note}", flush=True)

    call = lambda f: (lambda: f(model, x, *a))
    add("default", "jaxstyle default (jit, truncated, input grads only, NHWC, f32, Gram HIGHEST)", call(base_fn))
    # Truncation: ask for relu5_4 too (weight 0): the network then runs to the end of block 5.
    full = stylize.StyleConfig(image_size=size, tv_weight=0.0, style_layers=config.style_layers + ("relu5_4",),
                               style_layer_weights=(0.2,) * 5 + (0.0,))
    m2, p2, _ = common.jax_problem(size, path, full)
    f_full = common.jax_loss_and_grad(p2.spec)
    add("truncation", "no truncation (forward/backward through relu5_4)",
        lambda: f_full(m2, x, p2.targets, p2.weights))
    wg = variants.loss_and_grad(problem.spec, weight_grads=True)
    add("weight gradients", "also differentiate w.r.t. the weights", call(wg))
    add("layout", "hand-written forward, NHWC", call(variants.handwritten_loss_and_grad(problem.spec)))
    add("layout", "hand-written forward, NCHW",
        call(variants.handwritten_loss_and_grad(problem.spec, layout="NCHW")))
    add("remat", "hand-written NHWC forward, jax.checkpoint per block",
        call(variants.handwritten_loss_and_grad(problem.spec, remat=True)))
    add("remat", "jaxstyle --remat (each block recomputed in the backward pass)",
        call(common.jax_loss_and_grad(problem.spec._replace(remat=True))))
    gd = variants.loss_and_grad(problem.spec, gram_precision=jax.lax.Precision.DEFAULT)
    add("gram precision", "Gram at DEFAULT precision", call(gd), grad_of=lambda: gd(model, x, *a)[1])
    for p in ("tf32", "bfloat16"):
        fp = variants.loss_and_grad(problem.spec, precision=p)
        add("precision", f"jaxstyle.nets.precision {p}", call(fp), grad_of=lambda fp=fp: fp(model, x, *a)[1])
    # Weight change: a second set of weights of the same shapes must not recompile.
    other = model.replace(params=jax.tree.map(lambda p: p * 1.01, model.params))
    n_before = base_fn._cache_size()
    t = time.perf_counter()
    jax.block_until_ready(base_fn(other, x, *a))
    rows.append({"lever": "weights change", "variant": "new weight values, same shapes",
                 "median_s": time.perf_counter() - t, "note": f"jit cache entries {n_before} -> "
                 f"{base_fn._cache_size()} (no recompilation)"})
    # Iterations per dispatch and donation: Adam (one evaluation per iteration), 6 iterations.
    n_it = 6
    donated, undonated = common.adam_chunk(problem, model), common.adam_chunk(problem, model, donate=False)

    def chunked(n_per_call, fn):
        def go():
            xi = jnp.array(x, copy=True)
            for _ in range(n_it // n_per_call):
                xi = fn(xi, n_per_call)
            return xi
        return go

    add("iterations per dispatch", f"{n_it} Adam iterations, one call per iteration",
        chunked(1, donated), note=f"time for {n_it} iterations")
    add("iterations per dispatch", f"{n_it} Adam iterations in one while_loop call",
        chunked(n_it, donated), note=f"time for {n_it} iterations")
    add("donation", f"{n_it} Adam iterations in one call, no buffer donation",
        chunked(n_it, undonated), note=f"time for {n_it} iterations")
    # Torch eager, same levers where they apply to PyTorch.
    _, loss = common.torch_problem(size, path)
    xt = torch_gatys.to_nchw(common.init_noise(size))
    tt = lambda fn: statistics.median([_timer(fn, lambda r: None) for _ in range(reps)])
    torch_gatys.loss_and_grad(loss, xt)
    rows.append({"lever": "torch", "variant": "torch eager default (truncated, frozen weights)",
                 "median_s": tt(lambda: torch_gatys.loss_and_grad(loss, xt)), "note": ""})
    loss_full = torch_gatys.GatysLoss(loss.vgg, *common.images(size))
    loss_full.layers = loss_full.layers + ("relu5_4",)
    rows.append({"lever": "torch", "variant": "torch eager, no truncation (through relu5_4)",
                 "median_s": tt(lambda: torch_gatys.loss_and_grad(loss_full, xt)), "note": ""})
    for w, b in loss.vgg.convs.values():
        w.requires_grad_(True)
        b.requires_grad_(True)
    rows.append({"lever": "torch", "variant": "torch eager, weights requires_grad=True",
                 "median_s": tt(lambda: loss(xt.clone().requires_grad_(True)).backward()), "note": ""})
    # XLA CPU flags: one fresh process per setting (XLA reads them at start-up).
    if jax.devices()[0].platform == "cpu":
        for flags in args.xla_flags.split(","):
            flags = "" if flags == "none" else flags
            r = _subprocess(["--worker", "lever-time", "--size", str(size), "--reps", str(reps)],
                            {"XLA_FLAGS": flags})
            rows.append({"lever": "XLA_FLAGS", "variant": flags or "(none)", "median_s": r.get("median_s"),
                         "note": r.get("error", "")})
            print(f"lever XLA_FLAGS {flags!r}: {r}", flush=True)
    return {"size": size, "reps": reps, "rows": rows, "loadavg": os.getloadavg()}


# ------------------------------------------------------------------------------------------------------------
# loop: the cost of an evaluation inside lax.while_loop (run_stylize's chunks) vs a loop-free jitted step


def phase_loop(args) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from benchmarks import common

    stylize = common.core()
    size, reps = args.lever_size, args.lever_reps
    model, problem, _ = common.jax_problem(size, common.weights_file())
    a = (problem.targets, problem.weights)
    x0 = jnp.asarray(common.init_noise(size))
    vg = lambda m, x, t, w: jax.value_and_grad(lambda i: stylize.total_loss(i, m, t, w, problem.spec))(x)
    single = jax.jit(vg)
    adam = optax.adam(0.02)

    @jax.jit
    def step(m, x, s, t, w):  # one Adam iteration, no loop
        v, g = vg(m, x, t, w)
        u, s = adam.update(g, s, x)
        return jnp.clip(x + u, 0.0, 1.0), s, v

    def loop_free(n):
        x, s = x0, adam.init(x0)
        for _ in range(n):
            x, s, _ = step(model, x, s, *a)
        return x

    adam_chunk = common.adam_chunk(problem, model)
    chunked = lambda n: adam_chunk(jnp.array(x0, copy=True), n)

    n = 3
    rows = [{"variant": "one loss-and-gradient call (jit, no loop)", "per_eval_s":
             _median_time(lambda: single(model, x0, *a), reps)},
            {"variant": f"Adam, {n} loop-free jitted steps dispatched from Python", "per_eval_s":
             _median_time(lambda: loop_free(n), reps) / n},
            {"variant": f"Adam, {n} iterations in run_stylize's lax.while_loop chunk (optim.loop.run_chunk)",
             "per_eval_s": _median_time(lambda: chunked(n), reps) / n}]
    for r in rows:
        print(f"loop {r['variant']}: {r['per_eval_s']:.3f}s per evaluation", flush=True)
    return {"size": size, "reps": reps, "rows": rows}


# ------------------------------------------------------------------------------------------------------------
# Profile (for targets that are missed): XLA cost analysis of the compiled loss and a torch profiler table.


def phase_profile(args) -> dict:
    import jax
    import torch

    from benchmarks import common, torch_gatys

    setup_torch_threads()
    size = args.lever_size
    path = common.weights_file()
    model, problem, _ = common.jax_problem(size, path)
    x = jax.numpy.asarray(common.init_noise(size))
    f = common.jax_loss_and_grad(problem.spec)
    compiled = f.lower(model, x, problem.targets, problem.weights).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    _, loss = common.torch_problem(size, path)
    xt = torch_gatys.to_nchw(common.init_noise(size))
    torch_gatys.loss_and_grad(loss, xt)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        torch_gatys.loss_and_grad(loss, xt)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8)

    # Where the time goes, per side: the forward pass alone (loss value, no gradient) and the whole
    # evaluation, interleaved; and what this machine's cores reach on a dense float32 matmul, the practical
    # ceiling for convolutions (both libraries lower 3x3 convolutions to GEMM-like kernels on CPU).
    import jax.numpy as jnp

    stylize = common.core()
    fwd = jax.jit(lambda m, x, t, w: stylize.total_loss(x, m, t, w, problem.spec))
    a = (problem.targets, problem.weights)
    sides = {
        "jax_forward": (lambda: fwd(model, x, *a), jax.block_until_ready),
        "jax_evaluation": (lambda: f(model, x, *a), jax.block_until_ready),
        "torch_forward": (lambda: _no_grad(loss, xt), lambda r: None),
        "torch_evaluation": (lambda: torch_gatys.loss_and_grad(loss, xt), lambda r: None),
    }
    n = 2048
    am, bm = jnp.ones((n, n), jnp.float32), jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda p, q: p @ q)
    at, bt = torch.ones((n, n)), torch.ones((n, n))
    sides["jax_matmul"] = (lambda: mm(am, bm), jax.block_until_ready)
    sides["torch_matmul"] = (lambda: torch.mm(at, bt), lambda r: None)
    times = {k: [] for k in sides}
    for fn, sync in sides.values():
        sync(fn()), sync(fn())
    for _ in range(args.lever_reps + 2):
        for k, (fn, sync) in sides.items():
            times[k].append(_timer(fn, sync))
    med = {k: statistics.median(v) for k, v in times.items()}
    fwd_gflop = forward_gflop(size, "relu5_1")  # the loss pass runs the network to relu5_1 once
    gflops = {"jax_matmul": 2 * n**3 / 1e9 / med["jax_matmul"], "torch_matmul": 2 * n**3 / 1e9 / med["torch_matmul"],
              "jax_forward": fwd_gflop / med["jax_forward"], "torch_forward": fwd_gflop / med["torch_forward"],
              "jax_evaluation": gflop(size) / med["jax_evaluation"],
              "torch_evaluation": gflop(size) / med["torch_evaluation"]}
    return {"size": size, "xla_flops": float(cost.get("flops", -1)),
            "xla_bytes_accessed": float(cost.get("bytes accessed", -1)), "torch_profile": table,
            "median_s": med, "gflops": gflops, "forward_gflop": fwd_gflop, "matmul_n": n,
            "reps": args.lever_reps + 2,
            "loadavg": os.getloadavg()}


def _no_grad(loss, xt):
    import torch

    with torch.no_grad():
        return loss(xt)


# ------------------------------------------------------------------------------------------------------------
# Render


def _load(phase):
    p = os.path.join(RESULTS, f"{phase}.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def _notes(name, prefix=""):
    """The hand-written notes ``benchmarks/<name>`` that follow a rendered section, as a list of one text (with
    ``prefix``), or an empty list when there is no such file."""
    path = os.path.join(ROOT, "benchmarks", name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [prefix + f.read()]


def _fit(xs, ys):
    import numpy as np

    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    pred = slope * np.asarray(xs, float) + intercept
    ss = float(np.sum((np.asarray(ys) - pred) ** 2))
    tot = float(np.sum((np.asarray(ys) - np.mean(ys)) ** 2)) or 1.0
    return float(slope), float(intercept), 1.0 - ss / tot


def _env_block(res):
    m = res["machine"]
    return (f"Machine: {m['cpu_model']}, {m['cpu_count']} cores; jax {m['jax']} ({m['jax_device']}), torch "
            f"{m['torch']} ({m['torch_device']}, {m['torch_threads']} intra-op / {m['torch_interop_threads']} "
            f"inter-op threads), XLA_FLAGS={m['XLA_FLAGS'] or '(none)'}; {m['date']}; load average (1/5/15 min) "
            f"at start {tuple(round(v, 2) for v in m['loadavg_start'])}, at end "
            f"{tuple(round(v, 2) for v in res['loadavg_end'])}"
            + (f" ({res['note']})" if res.get("note") else "") + f".\n\nCommand: `{res['command']}`\n")


def _multiprocess_section() -> list[str]:
    """Two processes vs one with the same devices (benchmarks/multiprocess_bench.py writes the JSON)."""
    mp = _load("multiprocess_cpu")
    if not mp:
        return []
    one, two = mp["one_process_4_devices_s_per_iter"], mp["two_processes_2x2_devices_s_per_iter"]
    return [f"## Sweep over two processes vs one (K = {mp['k']}, {mp['size']}², 4 CPU devices either way)\n",
            f"`python benchmarks/multiprocess_bench.py --size {mp['size']} --k {mp['k']} --iterations "
            f"{mp['iterations']} --repeats {mp['repeats']}` ({mp['date']}; {mp['cpus']} CPUs, load average "
            f"{mp['load_average'][0]:.1f} before, {mp['load_average'][1]:.1f} after). Seconds per iteration of all K "
            "runs, from `--profile`'s steady-state step time (compilation excluded).\n",
            "| setup | best s/iteration | every repetition |\n|---|---|---|",
            f"| 1 process x 4 forced CPU devices | {min(one):.3f} | {', '.join(f'{t:.3f}' for t in one)} |",
            f"| 2 processes x 2 forced CPU devices (gloo) | {min(two):.3f} | {', '.join(f'{t:.3f}' for t in two)} |",
            f"\nTwo processes / one: **{mp['best_ratio_two_over_one']:.2f}**. All 4 devices share this machine's "
            f"{mp['cpus']} cores either way, so the ratio is the multi-process path's overhead (two drivers, gloo "
            "all-gathers of the per-run results and of the stop flag every chunk) plus how the operating system "
            "shares the cores, never a gain from hardware (that needs more hosts). On a shared, oversubscribed "
            "machine two processes (two XLA thread pools) get a larger share of the CPU time than one, which can "
            "outweigh the overhead, as it may have here; a quiet machine was not available to separate the two. "
            "Details: docs/multiprocess.md.\n"]


FAST_RUNS = ("fast_cpu", "fast_cpu_256_steps7", "fast_cpu_malloc_tuned")  # benchmarks/fast_bench.py --out


def _fast_section() -> list[str]:
    """Fast style transfer's train step and apply against PyTorch (benchmarks/fast_bench.py writes the JSON): one
    row per size of each run in :data:`FAST_RUNS`, labelled by its glibc allocator setting."""
    runs = [(name, r) for name in FAST_RUNS if (r := _load(name))]
    if not runs:
        return []
    out = ["## Fast style transfer: train step and apply (batch 4)\n",
           "Runs: " + "; ".join(f"`{r['command']}` ({r['date']}, {r['steps']} timed steps, load "
                                f"{r['load_average_1min'][0]} -> {r['load_average_1min'][1]})" for _, r in runs) + ". "
           f"{runs[0][1]['cpus']}-core CPU, the two sides' calls alternating in one process. \"tuned\": glibc "
           "told to keep freed memory (`MALLOC_*` in the command), which takes the page faults of freshly mapped "
           "buffers out of both sides. Earlier runs, what changed between them and what was tried: "
           "[fast.md](fast.md#speed).\n",
           "| size | allocator | train img/s jax / torch | ratio (goal <= 0.9) | apply img/s jax / torch | ratio "
           "(goal <= 0.8) |", "|---|---|---|---|---|---|"]
    for _, fast in runs:
        allocator = "tuned" if "MALLOC_" in fast["command"] else "default"
        for r in fast["rows"]:
            j, t = r["jax"], r["torch"]
            out.append(f"| {r['size']} | {allocator} | {j['train_images_per_s']:.2f} / "
                       f"{t['train_images_per_s']:.2f} | {r['train_time_ratio']:.2f} | "
                       f"{j['apply_images_per_s']:.2f} / {t['apply_images_per_s']:.2f} | "
                       f"{r['apply_time_ratio']:.2f} |")
    return out + [""]


def render() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = ["# Benchmarks: jaxstyle vs PyTorch\n",
           "Generated by `benchmarks/run.py` from `benchmarks/results/*.json` (do not edit by hand; "
           "`--render-only` re-renders). Both sides run the same algorithm: the same random VGG19 read from "
           "one `.npz`, relu4_2 content and relu1_1..relu5_1 style layers, jaxstyle's default \"relative\" "
           "normalisation, input gradients only (PyTorch weights `requires_grad=False`), both networks "
           "truncated after relu5_1. `tests/test_benchmarks.py` checks that loss and input gradient agree "
           "(relative error <= 1e-4; measured ~5e-7). One evaluation = one loss and input gradient: 397 GFLOP "
           "at 512², scaling with the pixel count (docs/algorithm.md).\n",
           "## How to run\n",
           "```\n.venv/bin/python benchmarks/run.py                    # every phase at the sizes of the spec\n"
           ".venv/bin/python benchmarks/run.py --phases speed --sizes 256 512 --reps 5\n"
           ".venv/bin/python benchmarks/run.py --render-only      # re-render this page from the JSON\n```\n",
           "`--help` lists every size/repetition flag. Phases: `speed`, `compile`, `memory`, `convergence`, "
           "`levers`, `loop`, `profile`; each writes `benchmarks/results/<phase>.json` with the machine, versions, thread "
           "settings, command and load average, and this page is rendered from whatever JSON exists. On a GPU "
           "(CUDA torch, jax[cuda]) the same command fills the device-memory and %-of-peak columns. The tables "
           "below say which command and flags produced them; on this shared 2-core machine some sizes and "
           "repetitions were reduced to keep the run under ~30 minutes.\n"]
    figs = []
    speed = _load("speed")
    if speed:
        out.append("## Time per loss-and-gradient evaluation\n")
        out.append(_env_block(speed))
        peak = speed.get("gpu_peak_tflops")
        has_c = any("torch_compile" in r["median"] for r in speed["rows"])
        hdr = "| size | reps | jaxstyle s | GFLOP/s | % peak | torch eager s | " + \
              ("torch.compile s | " if has_c else "") + "jax / eager (median of pairs) | target <= 0.85 |"
        out += [hdr, "|" + "---|" * (hdr.count("|") - 1)]
        for r in speed["rows"]:
            med = r["median"]
            gfs = r["gflop"] / med["jaxstyle"]
            pct = f"{100 * gfs / 1000 / peak[0]:.0f}% of fp32" if peak else "—"
            target = ("met" if r["ratio_median"] <= 0.85 else "MISSED") if r["size"] in (256, 512) else "—"
            cols = [str(r["size"]) + "²", str(r["reps"]), f"{med['jaxstyle']:.3f}", f"{gfs:.0f}", pct,
                    f"{med['torch_eager']:.3f}"]
            if has_c:
                cols.append(f"{med['torch_compile']:.3f}" if "torch_compile" in med else
                            r["first_call_s"].get("torch_compile_error", "not run"))
            cols += [f"{r['ratio_median']:.2f} (pairs {min(r['ratio_jax_over_eager_pairs']):.2f}–"
                     f"{max(r['ratio_jax_over_eager_pairs']):.2f})", target]
            out.append("| " + " | ".join(cols) + " |")
        out.append("\nFirst call (compile + one evaluation), seconds: " + "; ".join(
            f"{r['size']}²: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k}: {v}"
                                          for k, v in r["first_call_s"].items()) for r in speed["rows"]) + "\n")
        xs = [r["pixels"] for r in speed["rows"]]
        fig, ax = plt.subplots(figsize=(6, 4))
        if len(xs) >= 2:
            out.append("### Time vs pixel count (linear fit t = a + b·pixels)\n")
            out.append("| implementation | b (ms per 1000 px) | a (s) | R² |\n|---|---|---|---|")
        for name in ("jaxstyle", "torch_eager", "torch_compile"):
            pts = [(r["pixels"], r["median"][name]) for r in speed["rows"] if name in r["median"]]
            if not pts:
                continue
            ax.plot(*zip(*pts), "o", label=name)
            if len(pts) >= 2:
                b, a0, r2 = _fit(*zip(*pts))
                out.append(f"| {name} | {b * 1e6:.3f} | {a0:.3f} | {r2:.4f} |")
                lo, hi = min(p[0] for p in pts), max(p[0] for p in pts)
                ax.plot([lo, hi], [a0 + b * lo, a0 + b * hi], "-", alpha=0.5)
        ax.set_xlabel("pixels"), ax.set_ylabel("seconds per loss-and-gradient"), ax.legend()
        ax.set_title("time per evaluation (points) and linear fits (lines)")
        fig.tight_layout()
        fig.savefig(os.path.join(ROOT, "docs", "benchmarks_speed.png"), dpi=100)
        plt.close(fig)
        figs.append("benchmarks_speed.png")
        out.append("\n![time vs pixels](benchmarks_speed.png)\n")
    comp = _load("compile")
    if comp:
        out.append("## Compile time and time to the first iteration\n")
        out.append(_env_block(comp))
        programs = sorted({f"{r[k].get('program', 'while_loop chunk')} ({r[k].get('optimizer', 'lbfgs')})"
                           for r in comp["rows"] for k in ("cold", "warm") if "error" not in r[k]})
        out.append("Each row: a fresh process runs `prepare` (targets), traces and compiles the program "
                   "`run_stylize` runs on this backend with the default optimiser (here: "
                   f"{', '.join(programs)}; on CPU one jitted loop-free step per iteration, elsewhere a "
                   "50-step while_loop chunk) AOT and runs one iteration; twice with the same, "
                   "initially empty, persistent cache directory (`jaxstyle.io.compilation_cache.enable`). "
                   "\"to first iteration\" = imports + loading the weights + prepare + trace + compile/load "
                   "(the iteration's own compute is "
                   "listed apart: it is the evaluation time above, not start-up).\n")
        out.append("| size | prepare variant | run | imports s | load weights s | prepare s (its compute alone) | trace+lower s | "
                   "compile / cache load s | to first iteration s | first iteration compute s | whole process to "
                   "first iteration done s |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in comp["rows"]:
            for kind in ("cold", "warm"):
                w = r[kind]
                if "error" in w:
                    out.append(f"| {r['size']}² | {r.get('variant', '')} | {kind} | error: {w['error']} |||||||||")
                    continue
                out.append(f"| {r['size']}² | {r.get('variant', 'default')} | {kind} | {w['import_s']:.2f} | "
                           f"{w.get('load_weights_s', float('nan')):.2f} | "
                           f"{w['prepare_s']:.2f} ({w.get('prepare_again_s', float('nan')):.2f}) | "
                           f"{w['trace_lower_s']:.2f} | {w['compile_or_load_s']:.2f} | "
                           f"**{w['to_first_iteration_s']:.2f}** | {w['first_iteration_compute_s']:.2f} "
                           f"({w['evaluations_in_first_iteration']} evals) | "
                           f"{w['process_to_first_iteration_done_s']:.2f} |")
        for r in comp["rows"]:
            if r["size"] == 512 and "to_first_iteration_s" in r["warm"]:
                w = r["warm"]
                v = w["to_first_iteration_s"]
                t_targets = w.get("prepare_again_s", 0.0)
                g = targets_gflop(512)
                if r.get("variant") == "target-cache":
                    out.append(f"\nTarget (warm start to first iteration <= 3 s at 512² on CPU), re-run on the "
                               f"same images (compiled programs and targets both cached, the CLI's default): "
                               f"{'met' if v <= 3 else 'MISSED'} ({v:.2f} s: imports {w['import_s']:.2f}, "
                               f"weights {w.get('load_weights_s', float('nan')):.2f}, targets from the cache "
                               f"{w['prepare_s']:.2f}, trace {w['trace_lower_s']:.2f}, cache load "
                               f"{w['compile_or_load_s']:.2f}).\n")
                    continue
                prof_ = _load("profile") or {}
                ceiling = (prof_.get("gflops") or {}).get("jax_matmul")
                rest = v - w["prepare_s"]
                variant = "" if r.get("variant", "default") == "default" else f", prepare variant {r['variant']}"
                out.append(f"\nTarget (warm start to first iteration <= 3 s at 512² on CPU), new images (compiled "
                           f"programs cached, targets computed{variant}): {'met' if v <= 3 else 'MISSED'} ({v:.2f} s = "
                           f"imports {w['import_s']:.2f} + weights {w.get('load_weights_s', float('nan')):.2f} + "
                           f"prepare {w['prepare_s']:.2f} + trace {w['trace_lower_s']:.2f} + cache load "
                           f"{w['compile_or_load_s']:.2f}). The targets are two truncated VGG19 forward passes "
                           f"(content to relu4_2, style to relu5_1): {g:.0f} GFLOP at 512², computed here at "
                           f"{g / t_targets if t_targets else float('nan'):.0f} GFLOP/s ({t_targets:.2f} s), "
                           f"leaving {max(3 - t_targets, 0):.2f} s of the 3 s for everything else, which takes "
                           f"{rest:.2f} s"
                           + (f"; even at the dense-matmul ceiling of these cores ({ceiling:.0f} GFLOP/s, profile "
                              f"section) the targets alone would take {g / ceiling:.2f} s" if ceiling else "")
                           + ". Only not recomputing them gets under 3 s: the target cache, next line.\n")
    mem = _load("memory")
    if mem:
        out.append("## Peak memory\n")
        out.append(_env_block(mem))
        out.append("One fresh process per row: imports, targets, one (first, so compile included) loss-and-gradient evaluation; peak "
                   "resident set size (VmHWM of `/proc/self/status`; `getrusage` ru_maxrss would inherit the parent's peak across fork+exec), which includes the interpreter "
                   "and libraries (RSS after imports given apart); device peak on a GPU.\n")
        out.append("| size | side | peak RSS MiB | RSS after imports MiB | device peak MiB |\n|---|---|---|---|---|")
        for r in mem["rows"]:
            if "error" in r:
                out.append(f"| {r['size']}² | {r['side']} | error: {r['error']} | | |")
                continue
            dp = f"{r['device_peak_mb']:.0f}" if r.get("device_peak_mb") else "—"
            out.append(f"| {r['size']}² | {r['side']} | {r['peak_rss_mb']:.0f} | {r['rss_after_imports_mb']:.0f} "
                       f"| {dp} |")
        fig, ax = plt.subplots(figsize=(6, 4))
        fits, slopes = [], {}
        for side in sorted({r["side"] for r in mem["rows"]}):
            pts = [(r["size"] ** 2, r["peak_rss_mb"]) for r in mem["rows"] if r["side"] == side and "error" not in r]
            if not pts:
                continue
            ax.plot(*zip(*pts), "o", label=side)
            if len(pts) >= 2:
                b, a0, r2 = _fit(*zip(*pts))
                slopes[side] = b
                fits.append(f"| {side} | {b * 1e3:.3f} | {a0:.0f} | {r2:.4f} |")
                lo, hi = min(p[0] for p in pts), max(p[0] for p in pts)
                ax.plot([lo, hi], [a0 + b * lo, a0 + b * hi], "-", alpha=0.5)
        if fits:
            out.append("\n### Peak RSS vs pixel count (linear fit m = a + b·pixels)\n")
            out += ["| side | b (MiB per 1000 px) | a (MiB) | R² |", "|---|---|---|---|"] + fits
        ax.set_xlabel("pixels"), ax.set_ylabel("peak RSS (MiB)"), ax.legend(), ax.set_title("peak memory")
        fig.tight_layout()
        fig.savefig(os.path.join(ROOT, "docs", "benchmarks_memory.png"), dpi=100)
        plt.close(fig)
        out.append("\n![memory vs pixels](benchmarks_memory.png)\n")
        if "jaxstyle" in slopes and "torch" in slopes:
            out.append(f"jaxstyle holds {slopes['jaxstyle'] / slopes['torch']:.2f}x PyTorch's memory per pixel "
                       "(the fits' slopes)" + (f"; with `--remat` (side `remat`) {slopes['remat'] / slopes['torch']:.2f}x"
                                               if "remat" in slopes else "") + ".")
        out += _notes("memory_notes.md")
    conv = _load("convergence")
    if conv:
        out.append("## Convergence: total loss vs loss-and-gradient evaluations\n")
        out.append(_env_block(conv))
        out.append(f"{conv['size']}², up to {conv['evals']} evaluations, same white-noise start, same loss. "
                   "L-BFGS history 100 on both sides; jaxstyle `lbfgs` = optax L-BFGS with zoom (strong-Wolfe) "
                   "line search (max 20 trials), torch `strong_wolfe` (max 25); `-nols` = unit steps / no line "
                   f"search; Adam lr {conv['adam_lr']}, projected to [0, 1] on both sides. Every line-search "
                   "trial counts as an evaluation. jaxstyle curves show the loss at each iterate; torch curves "
                   "show the lowest loss evaluated so far (which can only favour torch).\n")
        out.append("| run | loss after N evals | N | evals to reach torch L-BFGS's final loss | wall s |")
        out.append("|---|---|---|---|---|")
        best = {}
        for name, r in conv["runs"].items():
            tr = r["trace"]
            vals = [v for _, v, _ in tr]
            best[name] = [(e, min(vals[: i + 1])) for i, (e, _, _) in enumerate(tr)]
        ref = best.get("torch-lbfgs", [(0, None)])[-1][1]
        for name, r in conv["runs"].items():
            b = best[name]
            reach = next((e for e, v in b if ref is not None and v <= ref), None)
            out.append(f"| {name} | {b[-1][1]:.4g} | {b[-1][0]} | {reach if reach else 'not reached'} | "
                       f"{r['seconds']:.0f} |")
        # The target is about jaxstyle's default optimiser, whichever StyleConfig names.
        from jaxstyle.gatys import StyleConfig

        default_run = f"jax-{StyleConfig().optimizer}"
        if ref is not None and default_run in best:
            reach = next((e for e, v in best[default_run] if v <= ref), None)
            out.append(f"\nTarget (jaxstyle default, `{default_run}`, reaches torch L-BFGS's loss after "
                       f"{conv['evals']} evaluations "
                       f"in <= {conv['evals']}): {'met' if reach else 'MISSED'}"
                       f"{f' ({reach} evaluations)' if reach else ''}.\n")
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, r in conv["runs"].items():
            tr = best[name] if name.startswith("torch") else [(e, v) for e, v, _ in r["trace"]]
            ax.plot(*zip(*tr), label=name)
        ax.set_yscale("log"), ax.set_xlabel("loss-and-gradient evaluations"), ax.set_ylabel("total loss")
        ax.legend(), ax.set_title(f"convergence at {conv['size']}²")
        fig.tight_layout()
        fig.savefig(os.path.join(ROOT, "docs", "benchmarks_convergence.png"), dpi=100)
        plt.close(fig)
        out.append("![convergence](benchmarks_convergence.png)\n")
    lev = _load("levers")
    if lev:
        out.append(f"## Levers (one change at a time, {lev['size']}², median of {lev['reps']})\n")
        out.append(_env_block(lev))
        base = next(r["median_s"] for r in lev["rows"] if r["lever"] == "default")
        out.append("| lever | variant | median s | vs jaxstyle default | gradient rel. err vs default | note |")
        out.append("|---|---|---|---|---|---|")
        for r in lev["rows"]:
            t = r.get("median_s")
            rel = f"{t / base:.2f}x" if t and "iterations" not in r["variant"] else "—"
            ge = f"{r['grad_rel_err_vs_default']:.1e}" if "grad_rel_err_vs_default" in r else ""
            out.append(f"| {r['lever']} | {r['variant']} | {t:.3f} | {rel} | {ge} | {r.get('note', '')} |"
                       if t else f"| {r['lever']} | {r['variant']} | failed | | | {r.get('note', '')} |")
        out += _notes("levers_notes.md", "\n")
    loop = _load("loop")
    if loop:
        out.append(f"## Evaluations inside `lax.while_loop` ({loop['size']}², median of {loop['reps']})\n")
        out.append(_env_block(loop))
        base = loop["rows"][0]["per_eval_s"]
        out.append("| variant | s per evaluation | vs one call |\n|---|---|---|")
        for r in loop["rows"]:
            out.append(f"| {r['variant']} | {r['per_eval_s']:.3f} | {r['per_eval_s'] / base:.2f}x |")
        out.append("")
    prof = _load("profile")
    if prof:
        out.append(f"## Profile ({prof['size']}²)\n")
        out.append(_env_block(prof))
        out.append(f"XLA cost analysis of the compiled jaxstyle loss-and-gradient: {prof['xla_flops'] / 1e9:.1f} "
                   f"GFLOP (docs/algorithm.md: {gflop(prof['size']):.1f}), {prof['xla_bytes_accessed'] / 2**30:.2f}"
                   " GiB accessed.\n")
        if "median_s" in prof:
            med, gf = prof["median_s"], prof["gflops"]
            out.append(f"Where the time goes (median of {prof.get('reps', '?')} interleaved repetitions, same process): the "
                       f"forward pass alone ({prof['forward_gflop']:.1f} GFLOP to relu5_1, loss value only) and the "
                       f"whole loss-and-gradient evaluation ({gflop(prof['size']):.1f} GFLOP), against a dense "
                       f"{prof['matmul_n']}² float32 matmul, the practical ceiling of these cores.\n")
            out.append("| | jaxstyle s | jaxstyle GFLOP/s | PyTorch s | PyTorch GFLOP/s |\n|---|---|---|---|---|")
            for k, label in (("forward", "forward only"), ("evaluation", "loss + input gradient"),
                             ("matmul", f"matmul {prof['matmul_n']}²")):
                out.append(f"| {label} | {med['jax_' + k]:.3f} | {gf['jax_' + k]:.0f} | {med['torch_' + k]:.3f} | "
                           f"{gf['torch_' + k]:.0f} |")
            bwd_j = med["jax_evaluation"] - med["jax_forward"]
            bwd_t = med["torch_evaluation"] - med["torch_forward"]
            out.append(f"\nBackward share of an evaluation: jaxstyle {bwd_j:.3f} s "
                       f"({100 * bwd_j / med['jax_evaluation']:.0f} %), PyTorch {bwd_t:.3f} s "
                       f"({100 * bwd_t / med['torch_evaluation']:.0f} %).\n")
        out.append("PyTorch eager profile of one evaluation (self CPU time):\n\n```\n" + prof["torch_profile"]
                   + "\n```\n")
    out.extend(_fast_section())
    out.extend(_multiprocess_section())
    text = "\n".join(out)
    text = text.replace("\n## ", "\n\n## ").replace("\n\n\n## ", "\n\n## ")
    with open(DOC, "w") as f:
        f.write(text + "\n")


# ------------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phases", nargs="+", default=list(PHASES) + ["profile"], choices=list(PHASES) + ["profile"])
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024])
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per size (after warm-up)")
    p.add_argument("--reps-large", type=int, default=3, help="repetitions for sizes >= --large-from")
    p.add_argument("--large-from", type=int, default=1024)
    p.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--torch-compile-max", type=int, default=512, help="largest size for the torch.compile column")
    p.add_argument("--compile-sizes", nargs="+", type=int, default=[512])
    p.add_argument("--compile-variants", nargs="+", default=["default", "target-cache"],
                   choices=["default", "target-cache", "eager-targets"])
    p.add_argument("--memory-sizes", nargs="+", type=int, default=[256, 512, 1024])
    p.add_argument("--memory-sides", nargs="+", default=["jaxstyle", "torch", "remat", "tiled", "checkpoint",
                                                         "bfloat16"])
    p.add_argument("--conv-size", type=int, default=256)
    p.add_argument("--conv-evals", type=int, default=300)
    p.add_argument("--conv-runs", nargs="+", default=["jax-lbfgs", "jax-lbfgs-nols", "torch-lbfgs",
                                                      "torch-lbfgs-nols", "jax-adam", "torch-adam"],
                   choices=["jax-lbfgs", "jax-lbfgs-nols", "jax-adam", "torch-lbfgs", "torch-lbfgs-nols",
                            "torch-adam"])
    p.add_argument("--adam-lr", type=float, default=0.02)
    p.add_argument("--lever-size", type=int, default=256)
    p.add_argument("--lever-reps", type=int, default=3)
    p.add_argument("--xla-flags", default="none,--xla_cpu_multi_thread_eigen=false,--xla_cpu_use_onednn=true,"
                   "--xla_cpu_use_xnnpack=true,--xla_cpu_enable_fast_math=true",
                   help="comma-separated XLA_FLAGS settings to time ('none' = unset); pass as --xla-flags=...")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--worker", choices=["first-iter", "memory", "lever-time"], help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        import warnings

        warnings.simplefilter("ignore")
        fn = {"first-iter": lambda: worker_first_iter(args.size, args.cache, args.side or "default"),
              "memory": lambda: worker_memory(args.size, args.side),
              "lever-time": lambda: worker_lever_time(args.size, args.reps)}[args.worker]
        print(json.dumps(fn()))
        return 0
    if not args.render_only:
        import warnings

        warnings.simplefilter("ignore")  # the random-weights warning, once per problem
        os.makedirs(RESULTS, exist_ok=True)
        command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
        for phase in args.phases:
            env = machine()
            t = time.perf_counter()
            res = globals()[f"phase_{phase}"](args)
            res.update(machine=env, loadavg_end=os.getloadavg(), command=command.strip(),
                       seconds=time.perf_counter() - t)
            with open(os.path.join(RESULTS, f"{phase}.json"), "w") as f:
                json.dump(res, f, indent=1)
            print(f"{phase}: {res['seconds']:.0f}s", flush=True)
    render()
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
