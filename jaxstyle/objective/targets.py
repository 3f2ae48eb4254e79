"""The targets of the perceptual objective: the content image's features and the style images' Gram matrices,
computed once per run, outside any optimisation loop (pure)."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from ..nets.model import VGGModel
from ..nets.model import extract_features
from .losses import gram_matrix

class Targets(NamedTuple):
    """Computed once per run, outside the optimisation loop."""

    content: dict  # layer -> P^l, (H, W, C) features of the content image
    grams: dict  # layer -> (S, C, C): Gram of each style image divided by its M_l (see style_targets)


def content_targets(model: VGGModel, content: jax.Array, layers: Sequence[str],
                    precision: str = "float32") -> dict:
    """P^l for each content layer. ``content`` is one HWC image."""
    return extract_features(model, content, tuple(layers), precision)


def style_targets(model: VGGModel, styles: Sequence[jax.Array], layers: Sequence[str],
                  precision: str = "float32") -> dict:
    """Per-layer stacks of the style images' Grams, each divided by that image's M_l.

    Departure from the paper, on purpose: the paper's A^l assumes the style image has the same M_l as the
    generated one. Storing A^l / M_l^style and multiplying by the generated image's M_l in the loss makes style
    images of any size (and several of different sizes) comparable; with equal sizes it is exactly the paper.
    """
    per_style = []
    for s in styles:
        feats = extract_features(model, s, tuple(layers), precision)
        per_style.append({l: gram_matrix(f) / (f.shape[0] * f.shape[1]) for l, f in feats.items()})
    return {l: jnp.stack([g[l] for g in per_style]) for l in layers}

