"""normalization="neural-style": a user of jcjohnson/neural-style or ProGamerGov/neural-style-pt gets their loss
scaling, checked against an independent float64 PyTorch computation of their formulas.

The reference below is neural-style-pt's loss modules written out again (neural_style.py: ContentLoss,
GramMatrix, StyleLoss, TVLoss, and the sum in feval), which are neural-style's (Lua) in PyTorch:

- ContentLoss: ``strength * nn.MSELoss()(input, target)``, the mean of the squared differences;
- StyleLoss: ``G = gram(input) / input.nelement()`` (C x H x W elements), the target the blend-weighted sum of
  the style images' Grams, each divided by its own element count; ``strength * nn.MSELoss()(G, target)``;
  the style weight is every style layer's strength (no 1/L);
- TVLoss (neural-style-pt): ``strength * (sum |x[:, :, 1:, :] - x[:, :, :-1, :]| + sum |x[:, :, :, 1:] -
  x[:, :, :, :-1]|)`` on the network's input (the first module of the net): neural-style's Lua TVLoss has only
  a gradient, of ``strength / 2 * sum`` of the squared differences;
- the total: the sum of every module's loss.

Their network input is the Caffe one (BGR, mean subtracted) scaled by 256; the reference here uses the model's
own preprocessing (x 255 for Caffe weights), since what is compared is the formulas on the same network.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from jaxstyle import gatys, objective
from jaxstyle.nets import vgg
from torch_reference import CFG, preprocess_torch

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYERS = ("relu4_2",)


# ----------------------------------------------------------------------------------- neural-style-pt, again


class ContentLoss(nn.Module):
    def __init__(self, strength, target):
        super().__init__()
        self.strength, self.target, self.crit = strength, target, nn.MSELoss()

    def forward(self, input):
        self.loss = self.crit(input, self.target) * self.strength
        return input


def gram(input):
    _, c, h, w = input.size()
    x_flat = input.view(c, h * w)
    return torch.mm(x_flat, x_flat.t())


class StyleLoss(nn.Module):
    def __init__(self, strength, target):
        super().__init__()
        self.strength, self.target, self.crit = strength, target, nn.MSELoss()

    def forward(self, input):
        self.loss = self.strength * self.crit(gram(input).div(input.nelement()), self.target)
        return input


class TVLoss(nn.Module):
    def __init__(self, strength):
        super().__init__()
        self.strength = strength

    def forward(self, input):
        x_diff = input[:, :, 1:, :] - input[:, :, :-1, :]
        y_diff = input[:, :, :, 1:] - input[:, :, :, :-1]
        self.loss = self.strength * (torch.sum(torch.abs(x_diff)) + torch.sum(torch.abs(y_diff)))
        return input


def features(weights, x, layers):
    """NCHW network input -> {relu layer: NCHW features}, float64, VGG19 up to the deepest layer."""
    out, block, i = {}, 1, 0
    for c in CFG["vgg19"]:
        if len(out) == len(layers):
            break
        if c == "M":
            x, block, i = F.max_pool2d(x, 2, 2), block + 1, 0
            continue
        i += 1
        x = F.relu(F.conv2d(x, *weights[f"conv{block}_{i}"], padding=1))
        if f"relu{block}_{i}" in layers:
            out[f"relu{block}_{i}"] = x
    return out


def neural_style_pt_loss(weights, pre, image, content, styles, blend, *, content_weight, style_weight, tv_weight):
    """Their total loss of ``image`` (NCHW RGB in [0, 1], float64, requires grad)."""
    net_input = lambda im: preprocess_torch(im, bgr=pre.bgr, scale=pre.scale, mean=pre.mean, std=pre.std)
    with torch.no_grad():
        content_feats = features(weights, net_input(content), CONTENT_LAYERS)
        style_feats = [features(weights, net_input(s), STYLE_LAYERS) for s in styles]
    x = net_input(image)
    tv = TVLoss(tv_weight)
    x = tv(x)
    feats = features(weights, x, CONTENT_LAYERS + STYLE_LAYERS)
    modules = [ContentLoss(content_weight, content_feats[l]) for l in CONTENT_LAYERS]
    for l in STYLE_LAYERS:  # the style target: the blend of each style image's Gram / its element count
        modules.append(StyleLoss(style_weight, sum(b * gram(sf[l]).div(sf[l].nelement())
                                                   for b, sf in zip(blend, style_feats))))
    for m, l in zip(modules, CONTENT_LAYERS + STYLE_LAYERS):
        m(feats[l])
    return sum(m.loss for m in modules) + tv.loss


# ----------------------------------------------------------------------------------- the comparison


@pytest.fixture(scope="module")
def caffe_model(model):
    """The random VGG19 with Caffe preprocessing, as neural-style's networks have."""
    return model.replace(module=model.module.clone(preprocess=vgg.PRESETS["caffe"]))


@pytest.fixture(scope="module")
def torch_weights(model):
    return {name: (torch.as_tensor(np.asarray(p["kernel"]).transpose(3, 2, 0, 1).copy(), dtype=torch.float64),
                   torch.as_tensor(np.asarray(p["bias"]), dtype=torch.float64))
            for name, p in model.params["params"].items()}


@pytest.mark.parametrize("blend", [(1.0,), (0.25, 0.75)], ids=["one_style", "two_styles_blended"])
def test_loss_and_gradient_equal_neural_style_pt(caffe_model, torch_weights, blend):
    rng = np.random.default_rng(len(blend))
    content = rng.uniform(size=(32, 40, 3)).astype(np.float32)
    # Style images of the content's size: neural-style's target is then the blend of the style Grams as is.
    styles = [rng.uniform(size=(32, 40, 3)).astype(np.float32) for _ in blend]
    image = rng.uniform(size=(32, 40, 3)).astype(np.float32)
    # neural-style(-pt)'s own defaults: content 5, style 100, TV 1e-3 (with neural-style-pt's L1 TV).
    config = gatys.StyleConfig(content_weight=5.0, style_weight=100.0, tv_weight=1e-3, style_blend_weights=blend,
                               normalization="neural-style", tv_norm="l1", image_size=None)
    problem = gatys.prepare(caffe_model, content, styles, config)
    np.testing.assert_array_equal(np.asarray(problem.weights.style_layers), 1.0)  # every layer weighs 1
    value, grad = jax.value_and_grad(objective.total_loss)(jnp.asarray(image), caffe_model, problem.targets,
                                                             problem.weights, problem.spec)

    nchw = lambda a: torch.as_tensor(a, dtype=torch.float64).permute(2, 0, 1)[None]
    x = nchw(image).requires_grad_(True)
    ref = neural_style_pt_loss(torch_weights, caffe_model.preprocess, x, nchw(content), [nchw(s) for s in styles],
                               np.asarray(blend) / sum(blend), content_weight=5.0, style_weight=100.0,
                               tv_weight=1e-3)
    ref.backward()
    ref_grad = x.grad[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(float(value), ref.item(), rtol=1e-4)
    rel = np.linalg.norm(np.asarray(grad, np.float64) - ref_grad) / np.linalg.norm(ref_grad)
    assert rel < 1e-3, rel


def test_each_term_is_neural_style_s(caffe_model, torch_weights):
    """Term by term, so a compensating error in two terms cannot pass; and the L2 TV on the network input."""
    rng = np.random.default_rng(7)
    content, style, image = (rng.uniform(size=(32, 32, 3)).astype(np.float32) for _ in range(3))
    base = gatys.StyleConfig(content_weight=5.0, style_weight=100.0, tv_weight=1e-3, normalization="neural-style",
                             image_size=None)
    nchw = lambda a: torch.as_tensor(a, dtype=torch.float64).permute(2, 0, 1)[None]
    for tv_norm in ("l1", "l2"):
        config = dataclasses.replace(base, tv_norm=tv_norm)
        p = gatys.prepare(caffe_model, content, [style], config)
        terms = {k: float(v) for k, v in objective.loss_terms(jnp.asarray(image), caffe_model, p.targets, p.weights,
                                                             p.spec).items()}
        pre = caffe_model.preprocess
        x = preprocess_torch(nchw(image), bgr=pre.bgr, scale=pre.scale, mean=pre.mean, std=pre.std)
        dx, dy = x[:, :, 1:, :] - x[:, :, :-1, :], x[:, :, :, 1:] - x[:, :, :, :-1]
        tv = (dx.abs().sum() + dy.abs().sum()) if tv_norm == "l1" else ((dx**2).sum() + (dy**2).sum())
        np.testing.assert_allclose(terms["tv"], 1e-3 * tv.item(), rtol=1e-5)
        ref_all = neural_style_pt_loss(torch_weights, pre, nchw(image), nchw(content), [nchw(style)], [1.0],
                                       content_weight=5.0, style_weight=0.0, tv_weight=0.0)
        np.testing.assert_allclose(terms["content"], ref_all.item(), rtol=1e-4)
        ref_style = neural_style_pt_loss(torch_weights, pre, nchw(image), nchw(content), [nchw(style)], [1.0],
                                         content_weight=0.0, style_weight=100.0, tv_weight=0.0)
        np.testing.assert_allclose(terms["style"], ref_style.item(), rtol=1e-4)


def test_other_normalizations_keep_the_paper_s_layer_weights():
    assert gatys.layer_weights(gatys.StyleConfig()) == (0.2,) * 5
    assert gatys.layer_weights(gatys.StyleConfig(normalization="neural-style")) == (1.0,) * 5
    assert gatys.layer_weights(gatys.StyleConfig(normalization="neural-style", style_layer_weights=(1, 2, 3, 4, 5))
                               ) == (1, 2, 3, 4, 5)
