"""jaxstyle: neural style transfer the JAX way.

Front door: :func:`load_vgg`, :func:`extract_features`, the losses, and :func:`stylize`.
"""

from .errors import ImageError, InputError, JaxstyleError, UsageError, WeightsError
from .losses import content_loss, gram_matrix, style_layer_loss, tv_loss
from .model import VGGModel, extract_features, load_vgg
from .vgg import ARCHITECTURES, PRESETS, VGG, Preprocess, layer_names
from .weights import RandomWeightsWarning

__version__ = "0.1.0"
from .stylize import StyleConfig, StylizeResult, run_stylize, stylize
from .sweep import stylize_many
