"""Per-program XLA compiler options (``jax.jit(..., compiler_options=...)``), chosen by measurement; never global.

:func:`no_library_fusions`: XLA CPU forms YNNPACK "library fusions" (a convolution with its bias, ReLU and
pooling in one call), which take each broadcast bias and constant as a full-size input array. Programs compiled
without them hold less memory (the rematerialised Gatys step: 841 against 1927 B/px; forward passes: 768 against
1250 MiB at 1024², docs/highres.md) and, for fast style training, run faster (docs/fast.md, "Speed").

:func:`quick_compile`: programs that run once and cost more to compile than to run (random initialisation of a
network: ``threefry`` and the truncated normal's inverse error function, ~6 s at XLA's default optimisation level
on this project's 2-core CPU against ~0.7 s without backend optimisation; results within one float32 ulp).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# XLA debug option (every backend): the LLVM optimisation level of the generated code; 0 = none.
_QUICK_COMPILE = {"xla_backend_optimization_level": 0}
# XLA CPU debug option: which library (YNNPACK) fusions to form; empty = none.
_NO_LIBRARY_FUSIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def no_library_fusions() -> dict:
    """On CPU, the options that turn YNNPACK library fusions off; ``{}`` on other backends or if this XLA has no
    such option (the programs then compile as usual)."""
    return _if_supported(_NO_LIBRARY_FUSIONS) if jax.default_backend() == "cpu" else {}


@functools.cache
def quick_compile() -> dict:
    """Options that skip backend optimisation, for one-off programs that take longer to compile than to run;
    ``{}`` if this XLA has no such option."""
    return _if_supported(_QUICK_COMPILE)


def _if_supported(options: dict) -> dict:
    """``options`` if this XLA compiles a program with them, else ``{}``."""
    try:
        jax.jit(lambda x: x + 1).lower(jnp.zeros(())).compile(compiler_options=options)
    except Exception:  # an XLA without the option
        return {}
    return dict(options)
