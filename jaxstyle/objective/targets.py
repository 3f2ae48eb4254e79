"""The targets of the perceptual objective: the content image's features and the style images' Gram matrices,
computed once per run, outside any optimisation loop (pure)."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from ..nets.model import VGGModel
from ..nets.model import extract_features
from .guidance import guided_gram, layer_guides
from .losses import gram_matrix

class Targets(NamedTuple):
    """Computed once per run, outside the optimisation loop."""

    content: dict  # layer -> P^l, (H, W, C) features of the content image
    grams: dict  # layer -> (S, C, C): Gram of each style image divided by its M_l (see style_targets)
    # Spatial control (objective.guidance): layer -> (S, H_l, W_l), the region of the output each style image
    # is assigned to, carried down to each style layer; None: every style image covers the whole output.
    guides: dict | None = None


def content_targets(model: VGGModel, content: jax.Array, layers: Sequence[str],
                    precision: str = "float32") -> dict:
    """P^l for each content layer. ``content`` is one HWC image."""
    return extract_features(model, content, tuple(layers), precision)


def style_targets(model: VGGModel, styles: Sequence[jax.Array], layers: Sequence[str],
                  precision: str = "float32", guides=None, method: str = "simple") -> dict:
    """Per-layer stacks of the style images' Grams, each divided by that image's M_l.

    ``guides`` (spatial control): one ``(H, W)`` guide per style image, its own size, or None for the whole
    image; a guided image's Gram is its guided Gram divided by the guide's mass (``guidance.guided_gram``), the
    guide carried down with ``method``.

    Departure from the paper, on purpose: the paper's A^l assumes the style image has the same M_l as the
    generated one. Storing A^l / M_l^style and multiplying by the generated image's M_l in the loss makes style
    images of any size (and several of different sizes) comparable; with equal sizes it is exactly the paper.
    """
    per_style = []
    for k, s in enumerate(styles):
        feats = extract_features(model, s, tuple(layers), precision)
        guide = None if guides is None or guides[k] is None else layer_guides(
            model.arch, jnp.asarray(guides[k])[None], layers, method)
        per_style.append({l: gram_matrix(f) / (f.shape[0] * f.shape[1]) if guide is None
                          else guided_gram(f, guide[l][0]) for l, f in feats.items()})
    return {l: jnp.stack([g[l] for g in per_style]) for l in layers}


def output_guides(model: VGGModel, guides: jax.Array, layers: Sequence[str], method: str = "simple") -> dict:
    """``Targets.guides``: the ``(S, H, W)`` regions of the output (one per style image, output size) at each
    style layer."""
    return layer_guides(model.arch, guides, tuple(layers), method)

