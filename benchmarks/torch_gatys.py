"""Gatys et al. style transfer in plain PyTorch: the same algorithm as jaxstyle's default, for benchmarks.

Deliberately independent of jaxstyle (nothing is imported from it): it reads the same converted ``.npz``
weights file (HWIO kernels -> OIHW, preprocessing from the file's ``meta/*`` keys), and spells out again

- the VGG19/16 conv stack, truncated after the deepest layer used (relu5_1 by default), NCHW as PyTorch users
  run it, weights with ``requires_grad=False`` so backward computes input gradients only;
- the paper's losses: content ``1/2 sum (F - P)^2`` at relu4_2, style ``sum_l w_l (G - A)^2 / (4 N^2 M^2)`` at
  relu1_1..relu5_1 with ``w_l = 1/5``;
- jaxstyle's default "relative" normalisation (each term divided by its target's own energy, the same
  ``eps = 1e-12``), content weight 1 and style weight 10, no TV term;
- optimisers: ``torch.optim.LBFGS`` (history 100, strong Wolfe line search or none) and ``torch.optim.Adam``
  (projected to [0, 1] after each step, as jaxstyle's Adam).

``tests/test_benchmarks.py`` checks that this computes the same loss and input gradient as jaxstyle.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

CFG = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}
CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
EPS = 1e-12  # the same guard jaxstyle's "relative" normalisation uses


def _layer_order(arch: str) -> list[str]:
    names, block, i = [], 1, 0
    for c in CFG[arch]:
        if c == "M":
            names.append(f"pool{block}")
            block, i = block + 1, 0
        else:
            i += 1
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
    return names


class TorchVGG:
    """VGG conv stack from a jaxstyle ``.npz`` (float32, NCHW, frozen weights, preprocessing built in)."""

    def __init__(self, npz_path, pooling: str = "max", device: str = "cpu", dtype=torch.float32):
        with np.load(npz_path, allow_pickle=False) as f:
            self.arch = str(f["meta/arch"])
            self.bgr = bool(f["meta/bgr"])
            self.scale = float(f["meta/scale"])
            mean, std = np.asarray(f["meta/mean"], np.float64), np.asarray(f["meta/std"], np.float64)
            self.convs = {}
            for name in _layer_order(self.arch):
                if name.startswith("conv"):
                    kernel = np.transpose(f[f"{name}/kernel"], (3, 2, 0, 1))  # HWIO -> OIHW
                    w = torch.tensor(np.ascontiguousarray(kernel), dtype=dtype, device=device)
                    b = torch.tensor(f[f"{name}/bias"], dtype=dtype, device=device)
                    w.requires_grad_(False)
                    b.requires_grad_(False)
                    self.convs[name] = (w, b)
        self.mean = torch.tensor(mean, dtype=dtype, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=dtype, device=device).view(1, 3, 1, 1)
        self.pool = {"max": F.max_pool2d, "avg": F.avg_pool2d}[pooling]
        self.order = _layer_order(self.arch)

    def features(self, images_nchw: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{layer: NCHW features}`` for RGB images in [0, 1]; stops after the deepest requested layer."""
        wanted = set(layers)
        last = max(self.order.index(l) for l in wanted)
        x = images_nchw.flip(1) if self.bgr else images_nchw
        x = (x * self.scale - self.mean) / self.std
        out = {}
        for name in self.order[: last + 1]:
            if name.startswith("conv"):
                w, b = self.convs[name]
                x = F.conv2d(x, w, b, padding=1)
            elif name.startswith("relu"):
                x = F.relu(x)
            else:
                x = self.pool(x, kernel_size=2, stride=2)
            if name in wanted:
                out[name] = x
        return out


def gram(f: torch.Tensor) -> torch.Tensor:
    """``G = F F^T`` for one NCHW feature map with N = 1: ``(C, C)``."""
    c = f.shape[1]
    m = f.reshape(c, -1)
    return m @ m.t()


def to_nchw(image_hwc) -> torch.Tensor:
    return torch.from_numpy(np.array(image_hwc, np.float32)).permute(2, 0, 1)[None].contiguous()


class GatysLoss:
    """Total loss of jaxstyle's defaults (relative normalisation, alpha=1, beta=10, w_l=1/5, no TV)."""

    def __init__(self, vgg: TorchVGG, content_hwc, style_hwc, *, content_weight: float = 1.0,
                 style_weight: float = 10.0, content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS):
        self.vgg, self.content_layers, self.style_layers = vgg, tuple(content_layers), tuple(style_layers)
        self.layers = self.content_layers + self.style_layers
        self.alpha, self.beta = content_weight, style_weight
        self.w = 1.0 / len(self.style_layers)
        with torch.no_grad():
            c = vgg.features(to_nchw(content_hwc), self.content_layers)
            s = vgg.features(to_nchw(style_hwc), self.style_layers)
            self.P = {l: c[l] for l in self.content_layers}
            # Gram of the style image divided by its M_l; multiplied by the generated image's M_l in the loss
            # (jaxstyle's rule for style images of another size; identical to the paper at equal sizes).
            self.A_per_m = {l: gram(s[l]) / (s[l].shape[2] * s[l].shape[3]) for l in self.style_layers}
            self.P_energy = {l: 0.5 * (p * p).sum() for l, p in self.P.items()}

    def __call__(self, x_nchw: torch.Tensor) -> torch.Tensor:
        feats = self.vgg.features(x_nchw, self.layers)
        content = 0.0
        for l in self.content_layers:
            d = feats[l] - self.P[l]
            content = content + 0.5 * (d * d).sum() / (self.P_energy[l] + EPS)
        style = 0.0
        for l in self.style_layers:
            f = feats[l]
            n, m = f.shape[1], f.shape[2] * f.shape[3]
            a = self.A_per_m[l] * m
            d = gram(f) - a
            scale = 4.0 * n**2 * m**2
            style = style + self.w * ((d * d).sum() / scale) / ((a * a).sum() / scale + EPS)
        return self.alpha * content + self.beta * style


def loss_and_grad(loss_fn: Callable, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """One loss-and-input-gradient evaluation (what one optimiser step of jaxstyle costs per evaluation)."""
    x = x.detach().requires_grad_(True)
    value = loss_fn(x)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def run_lbfgs(loss_fn: Callable, x0: torch.Tensor, max_evals: int, *, history_size: int = 100,
              line_search: str | None = "strong_wolfe") -> list[tuple[int, float, float]]:
    """``torch.optim.LBFGS`` until ``max_evals`` loss-and-gradient evaluations; returns
    ``[(evaluation, loss at that evaluation, seconds)]`` for every evaluation (line-search trials included)."""
    x = x0.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=max_evals, max_eval=max_evals, history_size=history_size,
                            tolerance_grad=0.0, tolerance_change=0.0, line_search_fn=line_search)
    trace, t0 = [], time.perf_counter()

    def closure():
        opt.zero_grad()
        loss = loss_fn(x)
        loss.backward()
        trace.append((len(trace) + 1, float(loss), time.perf_counter() - t0))
        return loss

    while len(trace) < max_evals:
        before = len(trace)
        opt.step(closure)
        if len(trace) == before:
            break
    return trace[:max_evals]


def run_adam(loss_fn: Callable, x0: torch.Tensor, max_evals: int, lr: float = 0.02):
    """``torch.optim.Adam`` with projection to [0, 1], one evaluation per step."""
    x = x0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    trace, t0 = [], time.perf_counter()
    for i in range(max_evals):
        opt.zero_grad()
        loss = loss_fn(x)
        loss.backward()
        trace.append((i + 1, float(loss), time.perf_counter() - t0))
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
    return trace
