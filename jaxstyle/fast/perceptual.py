"""The one adapter between the fast method and jaxstyle's perceptual pieces (VGG, features, Gram matrix).

Everything :mod:`jaxstyle.fast` needs from the loss network is imported here and only here, so if those pieces
move (the perceptual objective is being given its own home) this is the only file of the fast method to change.
"""

from __future__ import annotations

from ..nets.model import VGGModel, extract_features, load_vgg
from ..nets.vgg import PRESETS, Preprocess, validate_layers
from ..objective.losses import gram_matrix, tv_loss

__all__ = ["VGGModel", "extract_features", "load_vgg", "gram_matrix", "tv_loss", "PRESETS", "Preprocess",
           "validate_layers"]
