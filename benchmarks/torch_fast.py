"""Johnson et al.'s fast style transfer in plain PyTorch (pytorch/examples ``fast_neural_style``), for benchmarks.

Independent of jaxstyle's network code: the transformation network is pytorch/examples' ``TransformerNet``
(reflection padding, ``InstanceNorm2d(affine=True)``, nearest x2 upsampling then conv), parametrised by width;
the loss network is ``benchmarks.torch_gatys.TorchVGG`` reading the same converted ``.npz``; the losses are
pytorch/examples' (MSE of relu2_2 features, MSE of Grams / CHW at relu1_2..relu4_3, weights 1e5 / 1e10), with
features scaled as jaxstyle scales them (:func:`jaxstyle.fast.objective.feature_gain`, passed in as ``gain``).
``tests/test_fast_reference.py`` checks the network against jaxstyle's with the same weights.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, upsample=False):
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=2)
        return self.conv(self.pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.in1 = ConvLayer(c, c, 3), nn.InstanceNorm2d(c, affine=True)
        self.conv2, self.in2 = ConvLayer(c, c, 3), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x):
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class TransformerNet(nn.Module):
    """pytorch/examples' network with ``width`` (32 there) and ``n_residual`` (5 there) as parameters."""

    def __init__(self, width=32, n_residual=5):
        super().__init__()
        w1, w2, w4 = width, 2 * width, 4 * width
        self.c1, self.c1_in = ConvLayer(3, w1, 9), nn.InstanceNorm2d(w1, affine=True)
        self.d1, self.d1_in = ConvLayer(w1, w2, 3, 2), nn.InstanceNorm2d(w2, affine=True)
        self.d2, self.d2_in = ConvLayer(w2, w4, 3, 2), nn.InstanceNorm2d(w4, affine=True)
        self.res = nn.Sequential(*[ResidualBlock(w4) for _ in range(n_residual)])
        self.u1, self.u1_in = ConvLayer(w4, w2, 3, upsample=True), nn.InstanceNorm2d(w2, affine=True)
        self.u2, self.u2_in = ConvLayer(w2, w1, 3, upsample=True), nn.InstanceNorm2d(w1, affine=True)
        self.c2 = ConvLayer(w1, 3, 9)

    def forward(self, x):
        y = F.relu(self.c1_in(self.c1(x)))
        y = F.relu(self.d1_in(self.d1(y)))
        y = F.relu(self.d2_in(self.d2(y)))
        y = self.res(y)
        y = F.relu(self.u1_in(self.u1(y)))
        y = F.relu(self.u2_in(self.u2(y)))
        return self.c2(y)


def load_jax_params(net: TransformerNet, params: dict) -> TransformerNet:
    """Copy a one-style jaxstyle ``TransformerNet``'s parameters (HWIO kernels, (1, C) norm tables) into ``net``."""
    p = params["params"]

    def conv(mod, q):
        mod.conv.weight.data = torch.tensor(np.transpose(np.asarray(q["conv"]["kernel"]), (3, 2, 0, 1)).copy())
        mod.conv.bias.data = torch.tensor(np.asarray(q["conv"]["bias"]))

    def norm(mod, q):
        mod.weight.data = torch.tensor(np.asarray(q["scale"])[0])
        mod.bias.data = torch.tensor(np.asarray(q["bias"])[0])

    for name in ("c1", "d1", "d2", "u1", "u2"):
        conv(getattr(net, name), p[name])
        norm(getattr(net, f"{name}_in"), p[f"{name}_in"])
    conv(net.c2, p["c2"])
    for i, block in enumerate(net.res):
        q = p[f"r{i + 1}"]
        conv(block.conv1, q["conv1"]), conv(block.conv2, q["conv2"])
        norm(block.in1, q["in1"]), norm(block.in2, q["in2"])
    return net


def gram(f):
    b, c, h, w = f.shape
    m = f.reshape(b, c, h * w)
    return m @ m.transpose(1, 2) / (c * h * w)


class JohnsonTrainer:
    """One Adam step of pytorch/examples' training loop (forward, perceptual losses, backward, update)."""

    CONTENT, STYLE = ("relu2_2",), ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

    def __init__(self, net, vgg, style_nchw, *, gain=1.0, content_weight=1e5, style_weight=1e10, lr=1e-3):
        self.net, self.vgg, self.gain = net, vgg, gain
        self.cw, self.sw = content_weight, style_weight
        self.opt = torch.optim.Adam(net.parameters(), lr)
        with torch.no_grad():
            feats = self.vgg.features(style_nchw, self.STYLE)
            self.targets = {l: gram(feats[l] * gain) for l in self.STYLE}

    def step(self, x):
        self.opt.zero_grad(set_to_none=True)
        y = self.net(x)
        fy = self.vgg.features(y, self.CONTENT + self.STYLE)
        with torch.no_grad():
            fx = self.vgg.features(x, self.CONTENT)
        content = sum(F.mse_loss(fy[l] * self.gain, fx[l] * self.gain) for l in self.CONTENT)
        style = sum(F.mse_loss(gram(fy[l] * self.gain), self.targets[l].expand(x.shape[0], -1, -1))
                    for l in self.STYLE)
        loss = self.cw * content + self.sw * style
        loss.backward()
        self.opt.step()
        return float(loss.detach())
