"""JAX's persistent compilation cache, enabled by the CLI by default so warm starts skip XLA compilation."""

from __future__ import annotations

import os

import jax


def default_dir(name: str = "xla") -> str:
    """``~/.cache/jaxstyle/NAME`` (``$XDG_CACHE_HOME`` replaces ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxstyle", name)


def cache_dir(env: str, name: str, path: str | None = None) -> str | None:
    """The directory of one of jaxstyle's persistent caches, created: ``path``, else ``$ENV``, else
    :func:`default_dir`; None when it is disabled (``off``, ``0``, ``none``) or cannot be created (a cache
    must never stop a run)."""
    path = path or os.environ.get(env) or default_dir(name)
    if path.lower() in ("off", "0", "none"):
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return path


def enable(path: str | None = None) -> str | None:
    """Turn on the persistent cache at ``path`` (default ``~/.cache/jaxstyle/xla``; ``JAXSTYLE_CACHE_DIR``
    overrides, and ``JAXSTYLE_CACHE_DIR=off`` disables). Returns the directory used, or None if disabled."""
    path = cache_dir("JAXSTYLE_CACHE_DIR", "xla", path)
    if path is None:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    # Cache everything that takes noticeable time to compile (the VGG loss-and-gradient loop does).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
