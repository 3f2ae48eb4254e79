"""Fast feed-forward style transfer (Johnson, Alahi & Fei-Fei, ECCV 2016), several styles per network
(conditional instance norm, Dumoulin, Shlens & Kudlur, ICLR 2017).

Train a :class:`TransformerNet` once per set of styles (:mod:`jaxstyle.fast.train`, ``jaxstyle train``), then
stylise any image in one forward pass: ``jaxstyle.fast.apply(jaxstyle.fast.load_model("x.npz"), image)``.
"""

from .inference import apply, stylize_batch
from .model_file import FastModel, ModelFileError, load_model, save_model
from .net import TransformerNet, count_params, init_params, initial_params, style_weights

__all__ = ["apply", "stylize_batch", "FastModel", "ModelFileError", "load_model", "save_model",
           "TransformerNet", "count_params", "init_params", "initial_params", "style_weights"]
