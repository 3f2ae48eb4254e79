"""Every hyperparameter of fast style training, one home and one default each (:class:`FastConfig`).

Defaults are pytorch/examples' ``fast_neural_style`` (the issue's anchor): VGG16, content relu2_2, style
relu1_2/relu2_2/relu3_3/relu4_3, content 1e5 / style 1e10, Adam 1e-3, batch 4, 256 px. The CLI builds its flags
from these fields, so a default is written once, here.
"""

from __future__ import annotations

import dataclasses
import math

from ..errors import UsageError


@dataclasses.dataclass(frozen=True)
class FastConfig:
    arch: str = "vgg16"  # the loss network (Johnson et al. used VGG16)
    content_layers: tuple[str, ...] = ("relu2_2",)
    style_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    content_weight: float = 1e5
    style_weight: float = 1e10
    tv_weight: float = 0.0  # pytorch/examples has none; Johnson's Lua code used 1e-6 on 0-255 images
    pixel_weight: float = 0.0  # the paper's optional pixel loss (used for super-resolution, not style)
    image_size: int = 256  # training crops are image_size x image_size
    style_size: int = 256  # long side of each style image when its Gram targets are computed (Johnson: 256)
    batch_size: int = 4
    learning_rate: float = 1e-3
    steps: int = 40_000  # ~2 epochs of COCO 2014 (80k images) at batch 4
    seed: int = 0
    width: int = 32  # channels of the first layer (the paper's 32); tests use fewer
    n_residual: int = 5


def validate(config: FastConfig, n_devices: int = 1) -> FastConfig:
    """Check every field once; raise :class:`UsageError` (one line) naming the first bad one."""
    c = config
    for name in ("content_weight", "style_weight", "tv_weight", "pixel_weight"):
        v = getattr(c, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise UsageError(f"{name.replace('_', '-')} must be a non-negative number, got {v!r}")
    if not (math.isfinite(c.learning_rate) and c.learning_rate > 0):
        raise UsageError(f"learning-rate must be positive, got {c.learning_rate!r}")
    for name, low in (("image_size", 16), ("style_size", 16), ("batch_size", 1), ("steps", 1), ("width", 1),
                      ("n_residual", 0)):
        v = getattr(c, name)
        if not isinstance(v, int) or v < low:
            raise UsageError(f"{name.replace('_', '-')} must be an integer >= {low}, got {v!r}")
    if c.batch_size % n_devices:
        raise UsageError(f"batch-size {c.batch_size} is not a multiple of the {n_devices} devices it is split over")
    if not c.style_layers and c.style_weight:
        raise UsageError("no style layers given")
    return config


def to_json(config: FastConfig) -> dict:
    return dataclasses.asdict(config)


def from_json(data: dict) -> FastConfig:
    names = {f.name for f in dataclasses.fields(FastConfig)}
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    return FastConfig(**kwargs)
