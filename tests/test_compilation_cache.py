"""The persistent compilation cache (jaxstyle.io.compilation_cache) stores compiled programs under JAX's key: a
fingerprint of the traced computation (with the compile options, backend and jax/jaxlib versions). Changing the
code that computes a loss changes the program, so it is a miss, never a stale program; the same code is a hit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))

# One fresh process per compile: JAX's in-memory jit cache would otherwise answer before the persistent one.
SCRIPT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp
    from jaxstyle.io import compilation_cache
    from jaxstyle.objective import losses
    compilation_cache.enable(sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    if sys.argv[2] == "changed":  # a changed feature computation: a Gram matrix twice too large
        losses.gram_matrix = lambda f, gram=losses.gram_matrix: 2.0 * gram(f)
    def style_loss(f, target):
        return losses.style_layer_loss(f, target)
    print(jax.jit(style_loss)(jnp.arange(12.0).reshape(2, 2, 3), jnp.eye(3)))
""")


def _compile(cache: str, variant: str) -> tuple[set[str], str]:
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, cache, variant], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return set(os.listdir(cache)), out.stdout.strip()


@pytest.mark.slow
def test_a_changed_computation_is_a_compilation_cache_miss(tmp_path):
    cache = str(tmp_path / "xla")
    first, value = _compile(cache, "original")
    assert first, "the first compile wrote nothing to the persistent cache"
    again, same_value = _compile(cache, "original")
    assert again == first and same_value == value  # the same code: a hit, nothing new written
    changed, changed_value = _compile(cache, "changed")
    assert changed > first  # the changed code compiled (and stored) a new program ...
    assert changed_value != value  # ... and ran it, not the cached one
