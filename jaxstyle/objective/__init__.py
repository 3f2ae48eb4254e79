"""The perceptual objective shared by every method: the paper's losses, the targets and the weighted total.

``losses`` (Gram matrix, content, style and total-variation losses: the paper's exact formulas), ``targets``
(the content features and style Grams, computed once) and ``perceptual`` (which layers and weights, the
normalisation, :func:`loss_terms` and :func:`total_loss`). Pure functions over pytrees; no I/O, no ``jit``.
"""

from .guidance import GUIDE_METHODS, guided_gram, layer_guides
from .losses import TV_NORMS, content_loss, gram_matrix, style_layer_loss, tv_loss
from .perceptual import NORMALIZATIONS, LossSpec, LossWeights, loss_terms, total_loss
from .targets import Targets, content_targets, output_guides, style_targets

__all__ = ["GUIDE_METHODS", "guided_gram", "layer_guides", "output_guides", "NORMALIZATIONS", "TV_NORMS", "LossSpec", "LossWeights", "Targets", "content_loss", "content_targets",
           "gram_matrix", "loss_terms", "style_layer_loss", "style_targets", "total_loss", "tv_loss"]
