"""Peak memory of a Gatys run, known before it starts: :func:`estimate` (pure arithmetic on the network's layer
shapes and the settings, no compilation) and :func:`largest_fitting_size`.

The model (docs/highres.md, "Memory"): one loss-and-gradient evaluation holds ``EVALUATION_BYTES_PER_PIXEL``
(measured with ``compiled.memory_analysis()``: XLA's temporary buffers of the jitted evaluation are exactly
linear in the pixel count, and about the same for VGG16 and VGG19 and for every layer set: the peak is the end of
the forward pass, where every block's activations are held for the backward pass, most of them block 1's and
block 2's; ``REMAT_*`` with ``StyleConfig.remat``), plus the run state (the iterate, the
previous one, the gradient...), the content targets, the optimiser state (L-BFGS: ``2 x history`` images of
curvature pairs, i.e. 24 x history x pixels bytes; Adam: two moment images), the network's weights and, on the
host, the process itself (the Python interpreter, jax and XLA). A tiled run (``StyleConfig.tile``) evaluates one
tile's window at a time: its evaluation is the largest window's.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from ..nets import vgg
from ..objective import tiled
from ..optim.optimizers import EVALUATE_ONCE
from .config import StyleConfig, stage_sizes

MiB = 2 ** 20
# XLA CPU temporary bytes of one jitted float32 loss-and-gradient step per pixel, from compiled.memory_analysis()
# of the step run_stylize runs (`python benchmarks/step_memory.py`, docs/highres.md): the slope between 256 and
# 384 px, VGG19 1862, VGG16 1798, default layers (the larger is used). About 7 full-resolution 64-channel float32
# tensors' worth, held at the end of the forward pass (XLA's buffer assignment, docs/highres.md). (3896 while max
# pooling's gradient went through select_and_scatter; 2829 while autodiff stored pooling's argmax mask as float32
# and formed the Gram's gradient as two products: nets.vgg.max_pool_2x2, objective.losses.gram_matrix.)
EVALUATION_BYTES_PER_PIXEL = 1865
# The same with each block rematerialised (StyleConfig.remat, jaxstyle.nets.remat; `python
# benchmarks/step_memory.py --remat`): the peak is either the end of the forward pass, holding the blocks' inputs
# and the features the losses use (slope 256->384: VGG19 841, VGG16 960 B/px) plus the kernel copies, or, from
# about 400 px up, block 1's recomputed backward pass alone, the kernel copies freed by then (512->768: 1164 B/px
# for both, through zero). The estimate takes the larger.
REMAT_FORWARD_BYTES_PER_PIXEL = 960
REMAT_BLOCK1_BYTES_PER_PIXEL = 1164
# XLA's temporary copies of the conv kernels it runs (flipped/transposed for the backward pass), per byte of those
# kernels: the intercept of the same fit, 1.0 for VGG19 and VGG16 up to relu5_1 (docs/highres.md).
KERNEL_COPIES = 1.0
# Resident memory of a jaxstyle process before any image work (interpreter, jax, XLA, the CLI's imports):
# the intercept of peak RSS vs pixels in docs/benchmarks.md ("Peak memory", 570 MiB); none on a device.
HOST_BASE = 570 * MiB
IMAGE_BYTES_PER_PIXEL = 12  # float32 RGB
# Images the driver holds besides the optimiser state: x, x_prev, the gradient and the step's update, the
# clipped output and its host copy.
RUN_IMAGES = 6
# Tiled evaluation (StyleConfig.tile): image-sized arrays it adds between tile calls: the gradient accumulator
# and the TV term's gradient it starts from.
TILE_IMAGES = 2


class MemoryEstimate(NamedTuple):
    """Bytes, by part, at the largest stage of a run; ``total`` is the peak."""

    shape: tuple  # (H, W) of the largest stage
    evaluation: int  # one loss-and-gradient evaluation's working set (activations and their gradients)
    kernels: int  # XLA's working copies of the conv kernels the evaluation runs
    optimizer: int  # the optimiser state (L-BFGS history, Adam moments, the average of iterates)
    images: int  # the run's own images (iterate, previous iterate, gradient, output)
    targets: int  # the content targets (features at the content layers), held for the whole run
    weights: int  # the network's parameters
    base: int  # the process itself (host only)
    tile: int | None = None  # tiled evaluation: the tile size (evaluation is then one window's, see estimate)

    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in PARTS)

    def line(self) -> str:
        h, w = self.shape
        parts = ", ".join(f"{name} {getattr(self, name) / MiB:.0f}" for name in PARTS if getattr(self, name))
        tiles = f" in tiles of {self.tile} px" if self.tile else ""
        return f"memory estimate at {w}x{h}{tiles}: {self.total / MiB:,.0f} MiB peak ({parts} MiB)"


PARTS = ("evaluation", "kernels", "optimizer", "images", "targets", "weights", "base")


def content_target_bytes(arch: str, layers, hw) -> int:
    """Bytes of the float32 features of ``layers`` for an image of ``hw`` (the content targets; the style
    targets, Grams of at most 512x512, are left out)."""
    names, convs = vgg.layer_names(arch), vgg.conv_shapes(arch)
    total = 0
    for layer in layers:
        before = names[: names.index(layer) + 1]
        stride = 2 ** sum(name.startswith("pool") for name in before)
        channels = [convs[name][3] for name in before if name in convs][-1]
        total += 4 * channels * (hw[0] // stride) * (hw[1] // stride)
    return total


def optimizer_images(config: StyleConfig) -> int:
    """Images of the optimiser state: L-BFGS ``2 x history`` (+2 working), Adam 2 moments, +1 with averaging."""
    n = {"adam": 2}.get(config.optimizer, 2 * config.lbfgs_memory + 2)
    if config.optimizer == "scipy-lbfgs":
        n += 2  # jax.scipy keeps its own copies of the flat iterate and gradient
    return n + (1 if config.average > 0 else 0)


def weight_bytes(arch: str, layers=None) -> int:
    """Bytes of the float32 conv weights of ``arch``, all of them or those run up to the deepest of ``layers``."""
    names = vgg.layer_names(arch)
    deepest = len(names) if layers is None else max(names.index(name) for name in layers)
    return sum(4 * (h * w * i * o + o) for name, (h, w, i, o) in vgg.conv_shapes(arch).items()
               if names.index(name) <= deepest)


def estimate(config: StyleConfig, content_hw, arch: str, *, host: bool = True) -> MemoryEstimate:
    """The peak memory of running ``config`` on a content (or, in style mode, style) image of ``content_hw``
    with the network ``arch``: at the largest stage of a coarse-to-fine run. ``host``: add the process's own
    memory (a CPU run; on a GPU/TPU the device holds only the arrays)."""
    final = config.image_size or max(content_hw)
    hw = vgg.long_side_shape(content_hw, max(stage_sizes(config, final)))
    pixels = hw[0] * hw[1]
    layers = tuple(config.style_layers) + tuple(config.content_layers)
    # The style targets run the network forward (no gradient) on the style image, style_scale x the size: an
    # evaluation's working set bounds it at the same size, so only a larger style image can set the peak.
    evaluated = pixels * max(1.0, config.style_scale ** 2)
    kernels = int(KERNEL_COPIES * weight_bytes(arch, layers))
    evaluation = evaluation_bytes(config.remat, evaluated, kernels)
    if config.tile is not None:  # one window's evaluation at a time (the targets are tiled too, forward only)
        window = max((b - a) * (d - c) for _, (a, b, c, d) in tiled.tile_windows(arch, layers, hw, config.tile))
        evaluation = (evaluation_bytes(config.remat, window, kernels) +
                      TILE_IMAGES * IMAGE_BYTES_PER_PIXEL * pixels)
    return MemoryEstimate(hw, int(evaluation), kernels,
                          optimizer_images(config) * IMAGE_BYTES_PER_PIXEL * pixels,
                          RUN_IMAGES * IMAGE_BYTES_PER_PIXEL * pixels,
                          content_target_bytes(arch, config.content_layers, hw), weight_bytes(arch),
                          HOST_BASE if host else 0, config.tile)


def evaluation_bytes(remat: bool, pixels: float, kernels: int) -> float:
    """One evaluation's working set over ``pixels`` (the kernel copies, ``kernels`` bytes, counted apart)."""
    if not remat:
        return EVALUATION_BYTES_PER_PIXEL * pixels
    # Block 1's backward pass runs after the kernel copies are freed: it needs their room, not theirs and its own.
    return max(REMAT_FORWARD_BYTES_PER_PIXEL * pixels, REMAT_BLOCK1_BYTES_PER_PIXEL * pixels - kernels)


def largest_fitting_size(config: StyleConfig, content_hw, arch: str, available: int, *, host: bool = True) -> int:
    """The largest output long side (>= vgg.MIN_SIZE, else 0) whose estimate fits in ``available`` bytes, the
    other settings unchanged (coarse-to-fine stages scaled with it)."""

    def fits(long_side: int) -> bool:
        scaled = config
        if config.scales:
            ratio = long_side / config.scales[-1]
            scaled = dataclasses.replace(config, scales=tuple(max(vgg.MIN_SIZE, round(s * ratio)) for s in
                                                              config.scales))
        else:
            scaled = dataclasses.replace(config, image_size=long_side)
        return estimate(scaled, content_hw, arch, host=host).total <= available

    lo, hi = 0, 1 << 16
    if not fits(vgg.MIN_SIZE):
        return 0
    lo = vgg.MIN_SIZE
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def lbfgs_history_note(config: StyleConfig, estimate_: MemoryEstimate) -> str | None:
    """A suggestion to shrink the L-BFGS history where it is more than a quarter of the peak (24 x history x pixels
    bytes), else None."""
    if config.optimizer not in ("lbfgs", "lbfgs-nols", "scipy-lbfgs") or config.lbfgs_memory <= 10:
        return None
    pixels = estimate_.shape[0] * estimate_.shape[1]
    history = 2 * config.lbfgs_memory * IMAGE_BYTES_PER_PIXEL * pixels
    if history < 0.25 * estimate_.total:
        return None
    return (f"the L-BFGS history (24 x {config.lbfgs_memory} x {pixels:,} pixels = {history / MiB:,.0f} MiB) is "
            f"most of it; --lbfgs-memory 10 would need {(estimate_.total - history * (1 - 10 / config.lbfgs_memory)) / MiB:,.0f} MiB")


# The tile size suggested when a run does not fit: several times relu5_1's 85-px halo, so the windows' overlap
# stays small (docs/highres.md).
SUGGESTED_TILE = 512


def tile_note(config: StyleConfig, content_hw, arch: str, *, host: bool = True) -> str | None:
    """What ``--tile`` would need where the run is untiled, tiles would save memory and its optimiser can step
    from a given gradient; else None."""
    if config.tile is not None or config.optimizer not in EVALUATE_ONCE:
        return None
    return _option_note(config, content_hw, arch, host, f"--tile {SUGGESTED_TILE}", tile=SUGGESTED_TILE)


def remat_note(config: StyleConfig, content_hw, arch: str, *, host: bool = True) -> str | None:
    """What ``--remat`` would need where the run does not rematerialise and it would save memory; else None."""
    if config.remat:
        return None
    return _option_note(config, content_hw, arch, host, "--remat", remat=True)


def _option_note(config: StyleConfig, content_hw, arch: str, host: bool, flag: str, **change) -> str | None:
    other = estimate(dataclasses.replace(config, **change), content_hw, arch, host=host)
    if other.total >= estimate(config, content_hw, arch, host=host).total:
        return None
    return f"{flag} would need {other.total / MiB:,.0f} MiB"
