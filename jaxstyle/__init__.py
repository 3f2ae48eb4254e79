"""jaxstyle: neural style transfer the JAX way.

Front door: :func:`load_vgg`, :func:`extract_features`, the losses, and :func:`stylize`.
"""

from .errors import ImageError, InputError, JaxstyleError, UsageError, WeightsError
from .gatys.config import StyleConfig
from .gatys.run import StylizeResult, run_stylize, stylize
from .gatys.sweep import stylize_many
from .nets.model import VGGModel, extract_features, load_vgg
from .nets.vgg import ARCHITECTURES, PRESETS, VGG, Preprocess, layer_names
from .nets.weights import RandomWeightsWarning
from .objective.losses import content_loss, gram_matrix, style_layer_loss, tv_loss

from ._version import __version__  # noqa: E402
