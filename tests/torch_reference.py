"""An independent PyTorch VGG forward pass, the reference for jaxstyle's Flax VGG in tests and benchmarks.

Built only from ``torch.nn.functional`` (conv2d, relu, max_pool2d, avg_pool2d) on OIHW weights, computed in
float64 by default so it is more accurate than the float32 model under test. The architecture is spelled out
here again (not imported from jaxstyle) so a mistake in ``jaxstyle.nets.vgg`` cannot hide in both.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Output channels per conv, "M" = 2x2 max/avg pool (Simonyan & Zisserman 2015, configurations D and E).
CFG = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}


def conv_names(arch: str) -> list[str]:
    names, block, i = [], 1, 0
    for c in CFG[arch]:
        if c == "M":
            block, i = block + 1, 0
        else:
            i += 1
            names.append(f"conv{block}_{i}")
    return names


def preprocess_torch(images: torch.Tensor, *, bgr: bool, scale: float, mean, std=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """NCHW RGB in [0, 1] -> network input: optional RGB->BGR flip, scale, minus mean, divided by std.

    ``mean``/``std`` are in the network's channel order and scaled units.
    """
    x = images.flip(1) if bgr else images
    x = x * scale
    m = torch.as_tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def torch_features(oihw_convs: dict, arch: str, preprocess, images_nhwc, pooling: str = "max",
                   dtype=torch.float64) -> dict[str, np.ndarray]:
    """Every layer of the VGG forward pass: ``{conv{b}_{i}, relu{b}_{i}, pool{b}: NHWC numpy}``.

    Args:
      oihw_convs: ``{conv name: (weight OIHW, bias)}`` (numpy or torch).
      arch: ``"vgg19"`` or ``"vgg16"``.
      preprocess: anything with ``bgr``, ``scale``, ``mean`` and ``std`` attributes (e.g. a
        ``jaxstyle.nets.vgg.Preprocess``), or a dict with those keys.
      images_nhwc: float RGB images in [0, 1], NHWC.
      pooling: ``"max"`` or ``"avg"`` (2x2, stride 2).
    """
    get = (lambda k: preprocess[k]) if isinstance(preprocess, dict) else (lambda k: getattr(preprocess, k))
    x = torch.as_tensor(np.asarray(images_nhwc), dtype=dtype).permute(0, 3, 1, 2)
    x = preprocess_torch(x, bgr=bool(get("bgr")), scale=float(get("scale")), mean=get("mean"),
                         std=get("std") if (isinstance(preprocess, dict) and "std" in preprocess)
                         or hasattr(preprocess, "std") else (1.0, 1.0, 1.0))
    pool = {"max": F.max_pool2d, "avg": F.avg_pool2d}[pooling]
    out = {}

    def nhwc(t):
        return t.permute(0, 2, 3, 1).numpy()

    block, i = 1, 0
    with torch.no_grad():
        for c in CFG[arch]:
            if c == "M":
                x = pool(x, kernel_size=2, stride=2)
                out[f"pool{block}"] = nhwc(x)
                block, i = block + 1, 0
                continue
            i += 1
            name = f"conv{block}_{i}"
            w, b = oihw_convs[name]
            w = torch.as_tensor(np.asarray(w), dtype=dtype)
            b = torch.as_tensor(np.asarray(b), dtype=dtype)
            assert w.shape[0] == c and w.shape[2:] == (3, 3), (name, tuple(w.shape))
            x = F.conv2d(x, w, b, stride=1, padding=1)
            out[name] = nhwc(x)
            x = F.relu(x)
            out[f"relu{block}_{i}"] = nhwc(x)
    return out
