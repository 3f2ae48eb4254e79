"""Preparing a Gatys problem once per run: sizes, colour handling, the targets, and the starting image."""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from .. import colour
from ..errors import ConfigError, UsageError
from ..nets import remat, vgg
from ..nets.vgg import long_side_shape  # noqa: F401  (re-exported: the CLI and scripts size images with it)
from ..nets.model import VGGModel
from ..nets.model import extract_features
from ..objective.perceptual import LossSpec, LossWeights
from ..objective.targets import Targets, content_targets, output_guides, style_targets
from . import tiled
from .config import INITS, StyleConfig, loss_spec, loss_weights

# The targets in one compiled call each instead of op-by-op dispatch (each eager op compiles separately and too
# quickly for the persistent cache): warm start-up prepare 2.9 s -> 1.4 s at 64 px on the loaded 2-core CPU,
# see docs/benchmarks.md ("Compile time").
_content_targets_jit = jax.jit(content_targets, static_argnums=(2, 3))
_style_targets_jit = jax.jit(style_targets, static_argnums=(2, 3, 5))
_output_guides_jit = jax.jit(output_guides, static_argnums=(2, 3))


@functools.cache
def _lean_target_jits():
    """The same, compiled as a rematerialising run's programs are (jaxstyle.nets.remat.compiler_options): on XLA
    CPU the forward pass alone would otherwise hold more than the rematerialised step (1250 against 1164 MiB at
    1024², 768 MiB so compiled; docs/highres.md)."""
    options = remat.compiler_options(True)
    return (jax.jit(content_targets, static_argnums=(2, 3), compiler_options=options),
            jax.jit(style_targets, static_argnums=(2, 3, 5), compiler_options=options))


def init_image(kind, shape, *, content=None, style=None, seed: int = 0) -> jax.Array:
    """Starting image: white noise in [0, 1] (from ``seed``), the content, the style resized, or an array."""
    if not isinstance(kind, str):
        return jnp.clip(resize(jnp.asarray(kind, jnp.float32), shape[:2]), 0.0, 1.0)
    if kind == "noise":
        return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)
    if kind == "content":
        if content is None:
            raise ConfigError("init", " content needs a content image (style mode has none); use noise or style")
        return jnp.asarray(content, jnp.float32)
    if kind == "style":
        return resize(jnp.asarray(style, jnp.float32), shape[:2])
    raise ConfigError("init", f" must be one of {', '.join(INITS)} or an image, not {kind!r}")


def resize(image: jax.Array, hw: Sequence[int]) -> jax.Array:
    """Antialiased resize of an HWC image to ``hw``."""
    hw = tuple(int(v) for v in hw)
    if tuple(image.shape[:2]) == hw:
        return image
    return jax.image.resize(image, (*hw, image.shape[2]), method="lanczos3", antialias=True)



class Problem(NamedTuple):
    """Everything a run needs, prepared once: sizes, preprocessed images, targets, weights."""

    content: jax.Array | None  # HWC, what VGG sees (luminance-only mode: grey)
    content_rgb: jax.Array | None  # HWC, the original-colour content at output size
    styles: list
    shape: tuple
    targets: Targets
    weights: LossWeights
    spec: LossSpec


def _as_image(x, what: str) -> jax.Array:
    if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"):  # files are the I/O layer's: no reading here
        raise UsageError(f"{what} image must be an HWC RGB array in [0, 1], not the path {x!r} — read it with "
                         "jaxstyle.io.images.load_image")
    a = jnp.asarray(x, jnp.float32)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise UsageError(f"{what} image must be an HWC RGB array, got shape {a.shape}")
    return a


def _as_mask(x, what: str, hw) -> jax.Array:
    """A mask (HW, or HWC averaged over channels) in [0, 1], resized (bilinear, antialiased) to ``hw``."""
    if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"):
        raise UsageError(f"{what} must be an HW array in [0, 1], not the path {x!r} — read it with "
                         "jaxstyle.io.images.load_mask")
    m = jnp.asarray(x, jnp.float32)
    m = m.mean(axis=-1) if m.ndim == 3 else m
    if m.ndim != 2:
        raise UsageError(f"{what} must be an HW (or HWC) array, got shape {jnp.shape(x)}")
    hw = tuple(int(v) for v in hw)
    if m.shape != hw:
        m = jax.image.resize(m, hw, method="linear", antialias=True)
    return jnp.clip(m, 0.0, 1.0)


def _masks(content_masks, style_masks, styles, shape, config: StyleConfig):
    """(output guides ``(S, H, W)`` or None, style guides: one ``(H, W)`` or None per style image)."""
    if content_masks is not None and config.tile is not None:
        raise UsageError("--tile does not handle spatial control (content masks): the guided Grams are not "
                         "tiled; drop --tile or the masks")
    if content_masks is None:
        if style_masks is not None:
            raise UsageError("style masks need content masks: one --content-mask per style image says where "
                             "its style goes")
        return None, None
    if config.mode == "content":
        raise UsageError("content and style masks assign styles to regions; --mode content has no style")
    if len(content_masks) != len(styles):
        raise UsageError(f"{len(content_masks)} content mask(s) for {len(styles)} style image(s) — give one "
                         "content mask per style image (the region of the output it styles)")
    if style_masks is not None and len(style_masks) != len(styles):
        raise UsageError(f"{len(style_masks)} style mask(s) for {len(styles)} style image(s) — give one per "
                         "style image (or none: each style image is used whole)")
    guides = jnp.stack([_as_mask(m, f"content mask {k + 1}", shape[:2]) for k, m in enumerate(content_masks)])
    style_guides = None if style_masks is None else [
        None if m is None else _as_mask(m, f"style mask {k + 1}", s.shape[:2])
        for k, (m, s) in enumerate(zip(style_masks, styles))]
    return guides, style_guides


def _sizes(content, styles, config: StyleConfig):
    """(output shape, the content at output size or None) of ``config``'s mode and image size."""
    if config.mode == "style":
        hw = _as_image(content, "content").shape[:2] if content is not None else styles[0].shape[:2]
        return (*long_side_shape(hw, config.image_size or max(hw)), 3), None
    if content is None:
        raise UsageError("a content image is needed (or use mode='style')")
    c = _as_image(content, "content")
    hw = c.shape[:2] if config.image_size is None else long_side_shape(c.shape[:2], config.image_size)
    return (*hw, 3), resize(c, hw)


def prepare(model: VGGModel, content, styles, config: StyleConfig, target_cache=None, *, content_masks=None,
            style_masks=None) -> Problem:
    """Resize, colour-preprocess and compute targets once (the only part that sees the raw inputs).

    ``target_cache`` (a :class:`jaxstyle.io.target_cache.TargetCache`, used by the CLI) reuses the targets of an
    earlier run on the same pixels, network, layers and precision instead of recomputing them.

    Spatial control (Gatys et al. 2017): ``content_masks``, one HW array in [0, 1] per style image, is the region
    of the output that style image styles (any size: resized to the output; regions that no mask covers get no
    style); ``style_masks``, one per style image or None (whole image), the part of the style image to take it
    from. ``config.mask_method`` carries them down the network.
    """
    styles = [_as_image(s, "style") for s in (styles if isinstance(styles, (list, tuple)) else [styles])]
    if not styles and config.mode != "content":
        raise UsageError("at least one style image is needed")
    config.check_against(model.arch, len(styles) or None)
    shape, content_rgb = _sizes(content, styles, config)
    style_long = round((config.image_size or max(shape[:2])) * config.style_scale)
    styles = [resize(s, long_side_shape(s.shape[:2], style_long)) for s in styles]
    content_seen = content_rgb
    if config.original_colors == "histogram" and content_rgb is not None:
        styles = [colour.match_color_histogram(s, content_rgb, config.color_match) for s in styles]
    elif config.original_colors == "luminance" and content_rgb is not None:
        cy = colour.luminance(content_rgb)
        styles = [colour.grey(colour.match_luminance(colour.luminance(s), cy)) for s in styles]
        content_seen = colour.grey(cy)
    spec = loss_spec(config)
    weights = loss_weights(config, max(len(styles), 1))
    guides, style_guides = _masks(content_masks, style_masks, styles, shape, config)
    # Guided Grams depend on the masks, which the target cache's key does not hold: computed afresh.
    content_t, grams = _targets(model, content_seen, styles, spec, None if guides is not None else target_cache,
                                style_guides, config.mask_method, config.tile)
    if content_seen is None:  # style mode: the content term has weight 0; zeros of the right shape keep the
        # loss structure (shapes from tracing alone, no forward pass)
        like = jax.eval_shape(lambda x: extract_features(model, x, spec.content_layers), jnp.zeros(shape))
        content_t = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), like)
    layer_guides = (None if guides is None else
                    _output_guides_jit(model, guides, spec.style_layers, config.mask_method))
    return Problem(content_seen, content_rgb, styles, shape, Targets(content_t, grams, layer_guides), weights, spec)


def _targets(model, content_seen, styles, spec: LossSpec, target_cache, style_guides, mask_method, tile=None):
    """(content features, style Grams): from ``target_cache`` when it holds them, else computed (and stored);
    tile by tile where ``tile`` is set (the same values up to float rounding, so the cache serves both)."""
    content_layers = spec.content_layers if content_seen is not None else ()
    style_layers = spec.style_layers if styles else ()
    key = cached = None
    if target_cache is not None:
        key = target_cache.key(model, content_seen, styles, content_layers, style_layers, spec.precision)
        cached = target_cache.load(key, content_layers, style_layers, len(styles))
    if cached is not None:
        return tuple(jax.tree.map(jnp.asarray, d) for d in cached)
    if tile is not None:
        content_t, grams = tiled.targets(model, content_seen, styles, spec, tile)
    else:
        content_fn, style_fn = _lean_target_jits() if spec.remat else (_content_targets_jit, _style_targets_jit)
        content_t = (content_fn(model, content_seen, spec.content_layers, spec.precision)
                     if content_seen is not None else {})
        grams = (style_fn(model, styles, spec.style_layers, spec.precision, style_guides, mask_method)
                 if styles else {})
    if target_cache is not None:
        target_cache.save(key, content_t, grams)
    return content_t, grams
