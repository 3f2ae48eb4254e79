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
    def __init__(self, cin, cout, kernel, stride=1):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class UpsampleConvLayer(ConvLayer):
    """Nearest x2 upsampling, then reflection padding and the convolution."""

    def forward(self, x):
        return super().forward(F.interpolate(x, mode="nearest", scale_factor=2))


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.in1 = ConvLayer(c, c, 3), nn.InstanceNorm2d(c, affine=True)
        self.conv2, self.in2 = ConvLayer(c, c, 3), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x):
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class TransformerNet(nn.Module):
    """pytorch/examples' network, with its attribute names (so its ``state_dict`` has the published keys,
    ``conv1.conv2d.weight`` ... ``deconv3.conv2d.bias``), and ``width`` (32 there) and ``n_residual`` (5 there)
    as parameters."""

    def __init__(self, width=32, n_residual=5):
        super().__init__()
        w1, w2, w4 = width, 2 * width, 4 * width
        self.n_residual = n_residual
        self.conv1, self.in1 = ConvLayer(3, w1, 9), nn.InstanceNorm2d(w1, affine=True)
        self.conv2, self.in2 = ConvLayer(w1, w2, 3, 2), nn.InstanceNorm2d(w2, affine=True)
        self.conv3, self.in3 = ConvLayer(w2, w4, 3, 2), nn.InstanceNorm2d(w4, affine=True)
        for i in range(n_residual):
            setattr(self, f"res{i + 1}", ResidualBlock(w4))
        self.deconv1, self.in4 = UpsampleConvLayer(w4, w2, 3), nn.InstanceNorm2d(w2, affine=True)
        self.deconv2, self.in5 = UpsampleConvLayer(w2, w1, 3), nn.InstanceNorm2d(w1, affine=True)
        self.deconv3 = ConvLayer(w1, 3, 9)

    def blocks(self):
        return [getattr(self, f"res{i + 1}") for i in range(self.n_residual)]

    def forward(self, x):
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        for block in self.blocks():
            y = block(y)
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


# jaxstyle's module names -> pytorch/examples' (the residual blocks r{i} -> res{i} keep their inner names).
NAMES = {"c1": ("conv1", "in1"), "d1": ("conv2", "in2"), "d2": ("conv3", "in3"), "u1": ("deconv1", "in4"),
         "u2": ("deconv2", "in5"), "c2": ("deconv3", None)}


def load_jax_params(net: TransformerNet, params: dict) -> TransformerNet:
    """Copy a one-style jaxstyle ``TransformerNet``'s parameters (HWIO kernels, (1, C) norm tables) into ``net``."""
    p = params["params"]

    def conv(mod, q):
        mod.conv2d.weight.data = torch.tensor(np.transpose(np.asarray(q["conv"]["kernel"]), (3, 2, 0, 1)).copy())
        mod.conv2d.bias.data = torch.tensor(np.asarray(q["conv"]["bias"]))

    def norm(mod, q):
        mod.weight.data = torch.tensor(np.asarray(q["scale"])[0])
        mod.bias.data = torch.tensor(np.asarray(q["bias"])[0])

    for name, (conv_name, norm_name) in NAMES.items():
        conv(getattr(net, conv_name), p[name])
        if norm_name:
            norm(getattr(net, norm_name), p[f"{name}_in"])
    for i, block in enumerate(net.blocks()):
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
