"""Gatys et al. style transfer by optimising the image: configuration, problem preparation, the single-run
driver and vmapped sweeps.

``config`` (:class:`StyleConfig`), ``problem`` (sizes, colours, targets and the start image, once per run),
``run`` (:func:`run_stylize`, :func:`stylize`) and ``sweep`` (:func:`stylize_many`).
"""

from .config import StyleConfig, blend_weights, layer_weights, loss_spec, loss_weights
from .problem import init_image, prepare
from .run import StylizeResult, run_stylize, stylize
from .sweep import stylize_many

__all__ = ["StyleConfig", "StylizeResult", "blend_weights", "init_image", "layer_weights", "loss_spec",
           "loss_weights", "prepare", "run_stylize", "stylize", "stylize_many"]
