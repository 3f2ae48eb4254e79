"""The Gatys et al. (2016) losses and jaxstyle's total objective, checked three independent ways.

1. Hand-computed values on tiny arrays (the arithmetic is written out next to each number).
2. Invariants: Gram symmetric and positive semi-definite, every loss zero at its target.
3. An independent float64 PyTorch implementation of the same formulas, and of the whole objective
   (a torch VGG forward of the same random weights, the three normalisations, several style images of other
   sizes with blend weights, TV): values and ``jax.grad`` w.r.t. the image against torch autograd.

The torch objective below is written from docs/algorithm.md, not from jaxstyle.gatys: the formulas are
spelled out again so a mistake in the JAX code cannot hide in both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxstyle
from jaxstyle import gatys, objective
from jaxstyle import content_loss, gram_matrix, style_layer_loss, tv_loss
from torch_reference import CFG, preprocess_torch


STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


# --------------------------------------------------------------------------------------------------------
# 1. Hand-computed values


def test_gram_matrix_hand_computed():
    # H=1, W=2, C=2: positions k=0 -> (1, 2), k=1 -> (3, 4).
    # G_00 = 1*1 + 3*3 = 10, G_01 = 1*2 + 3*4 = 14, G_11 = 2*2 + 4*4 = 20.
    f = jnp.array([[[1.0, 2.0], [3.0, 4.0]]])
    np.testing.assert_array_equal(np.asarray(gram_matrix(f)), [[10.0, 14.0], [14.0, 20.0]])
    # Leading batch dims are kept: a second image (0, 1), (1, 0) has G = [[1, 0], [0, 1]].
    fb = jnp.stack([f, jnp.array([[[0.0, 1.0], [1.0, 0.0]]])])
    np.testing.assert_array_equal(np.asarray(gram_matrix(fb)), [[[10, 14], [14, 20]], [[1, 0], [0, 1]]])


def test_gram_matrix_sums_over_height_and_width():
    # H=2, W=1, C=1: values 3 and 4 at two rows -> G = 9 + 16 = 25 (rows are positions too).
    np.testing.assert_array_equal(np.asarray(gram_matrix(jnp.array([[[3.0]], [[4.0]]]))), [[25.0]])


def test_gram_matrix_gradient_is_autodiffs_of_the_plain_product():
    """gram_matrix has its own gradient (one product, F (g + g^T), for memory: docs/highres.md). Against autodiff of
    the plain einsum, with a cotangent that is not symmetric (a style loss's is, and would hide a dropped
    transpose), leading batch dimensions, and bfloat16 features (the gradient keeps their dtype)."""
    def plain(f):
        f = f.reshape(*f.shape[:-3], -1, f.shape[-1])
        return jnp.einsum("...ki,...kj->...ij", f, f, precision=jax.lax.Precision.HIGHEST)

    rng = np.random.default_rng(0)
    for shape in [(3, 5, 4), (2, 3, 4, 5)]:
        f = jnp.asarray(rng.normal(size=shape), jnp.float32)
        weight = jnp.asarray(rng.normal(size=shape[:-3] + (shape[-1], shape[-1])), jnp.float32)
        ours = jax.grad(lambda f: jnp.sum(jnp.sin(gram_matrix(f)) * weight))(f)
        theirs = jax.grad(lambda f: jnp.sum(jnp.sin(plain(f)) * weight))(f)
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-5)
    fb = jnp.asarray(rng.normal(size=(3, 5, 4)), jnp.bfloat16)
    grad = jax.grad(lambda f: jnp.sum(gram_matrix(f) ** 2))(fb)
    assert grad.dtype == jnp.bfloat16
    expected = jax.grad(lambda f: jnp.sum(plain(f) ** 2))(fb.astype(jnp.float32))
    np.testing.assert_allclose(np.asarray(grad, np.float32), np.asarray(expected), rtol=2e-2, atol=2e-2)


def test_content_loss_hand_computed():
    # F - P = (1-0, 2-2, 3-5) = (1, 0, -2); 1/2 (1 + 0 + 4) = 2.5.
    f = jnp.array([[[1.0, 2.0, 3.0]]])
    p = jnp.array([[[0.0, 2.0, 5.0]]])
    assert float(content_loss(f, p)) == 2.5


def test_style_layer_loss_hand_computed():
    # F as in the Gram test: G = [[10, 14], [14, 20]]; A = [[9, 14], [14, 18]] -> G - A = [[1, 0], [0, 2]],
    # sum of squares 5; N = 2 channels, M = 1*2 positions -> 4 N^2 M^2 = 4 * 4 * 4 = 64; E = 5/64 = 0.078125.
    f = jnp.array([[[1.0, 2.0], [3.0, 4.0]]])
    a = jnp.array([[9.0, 14.0], [14.0, 18.0]])
    assert float(style_layer_loss(f, a)) == 5.0 / 64.0


def test_tv_loss_hand_computed():
    # 2x2 single channel [[1, 2], [4, 8]]: vertical 4-1=3, 8-2=6 -> 9+36 = 45; horizontal 2-1=1, 8-4=4 -> 1+16
    # = 17; TV = 62.
    x = jnp.array([[[1.0], [2.0]], [[4.0], [8.0]]])
    assert float(tv_loss(x)) == 62.0
    # A 1x3 RGB image: only horizontal neighbours; channel 0 (0, 1, 3) -> 1 + 4 = 5, channels 1, 2 constant.
    y = jnp.array([[[0.0, 5.0, 5.0], [1.0, 5.0, 5.0], [3.0, 5.0, 5.0]]])
    assert float(tv_loss(y)) == 5.0


# --------------------------------------------------------------------------------------------------------
# 2. Invariants


@pytest.fixture(scope="module")
def feats():
    return jnp.asarray(np.random.default_rng(0).normal(size=(5, 7, 6)).astype(np.float32))


def test_gram_symmetric_and_psd(feats):
    g = np.asarray(gram_matrix(feats), np.float64)
    np.testing.assert_array_equal(g, g.T)
    eig = np.linalg.eigvalsh(g)
    assert eig.min() >= -1e-5 * eig.max()
    # Fewer positions (M=4) than channels (C=6): rank <= 4, so two eigenvalues are (numerically) zero.
    g_low = np.asarray(gram_matrix(feats[:2, :2]), np.float64)
    eig_low = np.linalg.eigvalsh(g_low)
    assert eig_low.min() >= -1e-5 * eig_low.max()
    assert np.sum(eig_low > 1e-4 * eig_low.max()) == 4


def test_losses_zero_at_target(feats):
    assert float(content_loss(feats, feats)) == 0.0
    assert float(style_layer_loss(feats, gram_matrix(feats))) == 0.0
    assert float(tv_loss(jnp.full((4, 5, 3), 0.3))) == 0.0
    # and positive away from it
    assert float(content_loss(feats, feats + 0.1)) > 0
    assert float(style_layer_loss(feats, gram_matrix(feats * 1.1))) > 0


def test_total_loss_zero_at_its_targets(model):
    # Content and style targets both from the same image x: every term vanishes at x (each normalisation).
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(24, 32, 3)).astype(np.float32))
    targets = objective.Targets(objective.content_targets(model, x, ("relu4_2",)), objective.style_targets(model, [x], STYLE_LAYERS))
    w = objective.LossWeights(*(jnp.float32(v) for v in (1.0, 10.0, 0.0)), jnp.full((5,), 0.2), jnp.ones((1,)))
    for norm in objective.NORMALIZATIONS:  # neural-style's too
        terms = objective.loss_terms(x, model, targets, w, objective.LossSpec(("relu4_2",), STYLE_LAYERS, norm))
        assert float(terms["content"]) == 0.0
        # The Gram is divided by M and multiplied back: float32 rounding only.
        assert abs(float(terms["style"])) < 1e-9, norm
        # one step away the loss is clearly positive
        y = x + 0.05 * jnp.asarray(np.random.default_rng(2).normal(size=x.shape).astype(np.float32))
        assert float(objective.loss_terms(y, model, targets, w, objective.LossSpec(("relu4_2",), STYLE_LAYERS, norm))["total"]) > 1e-6


# --------------------------------------------------------------------------------------------------------
# 3a. The same formulas in float64 torch


def t_gram(f):  # (H, W, C) -> (C, C)
    f = f.reshape(-1, f.shape[-1])
    return f.T @ f


def t_content(f, p):
    return 0.5 * ((f - p) ** 2).sum()


def t_style_layer(f, a):
    n, m = f.shape[-1], f.shape[0] * f.shape[1]
    return ((t_gram(f) - a) ** 2).sum() / (4.0 * n**2 * m**2)


def t_tv(x):
    return ((x[1:] - x[:-1]) ** 2).sum() + ((x[:, 1:] - x[:, :-1]) ** 2).sum()


def test_losses_match_torch_float64():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(6, 9, 8)).astype(np.float32)
    p = rng.normal(size=(6, 9, 8)).astype(np.float32)
    a = t_gram(torch.as_tensor(rng.normal(size=(6, 9, 8)), dtype=torch.float64)).numpy()
    img = rng.uniform(size=(7, 5, 3)).astype(np.float32)
    T = lambda v: torch.as_tensor(np.asarray(v, np.float64))
    rtol = 1e-5  # float32 sums of ~400 terms vs float64
    np.testing.assert_allclose(np.asarray(gram_matrix(jnp.asarray(f))), t_gram(T(f)).numpy(), rtol=rtol, atol=1e-4)
    np.testing.assert_allclose(float(content_loss(jnp.asarray(f), jnp.asarray(p))), float(t_content(T(f), T(p))),
                               rtol=rtol)
    np.testing.assert_allclose(float(style_layer_loss(jnp.asarray(f), jnp.asarray(a, jnp.float32))),
                               float(t_style_layer(T(f), T(a))), rtol=rtol)
    np.testing.assert_allclose(float(tv_loss(jnp.asarray(img))), float(t_tv(T(img))), rtol=rtol)


def test_gram_float32_highest_for_bfloat16():
    # bfloat16 activations: the Gram must come out float32 and as accurate as float32 (products of two bf16
    # values are exact in float32), not bf16-accurate (~4e-3 relative), even under a low default precision.
    rng = np.random.default_rng(4)
    f16 = jnp.asarray(rng.normal(size=(16, 16, 32)).astype(np.float32)).astype(jnp.bfloat16)
    ref = t_gram(torch.as_tensor(np.array(f16.astype(jnp.float32)), dtype=torch.float64)).numpy()
    with jax.default_matmul_precision("bfloat16"):
        g = gram_matrix(f16)
        g_jit = jax.jit(gram_matrix)(f16)
        e = style_layer_loss(f16, jnp.zeros((32, 32), jnp.float32))
    for out in (g, g_jit):
        assert out.dtype == jnp.float32
        err = np.abs(np.asarray(out, np.float64) - ref).max() / np.abs(ref).max()
        assert err < 1e-6, err
    assert e.dtype == jnp.float32
    np.testing.assert_allclose(float(e), (ref**2).sum() / (4 * 32**2 * 256**2), rtol=1e-5)
    assert content_loss(f16, jnp.zeros_like(f16)).dtype == jnp.float32


# --------------------------------------------------------------------------------------------------------
# 3b. The whole objective: jaxstyle vs an independent torch VGG forward + losses, values and gradients


@pytest.fixture(scope="module")
def torch_weights(model):
    # Flax HWIO kernels -> torch OIHW, float64.
    return {name: (torch.as_tensor(np.asarray(p["kernel"]).transpose(3, 2, 0, 1).copy(), dtype=torch.float64),
                   torch.as_tensor(np.asarray(p["bias"]), dtype=torch.float64))
            for name, p in model.params["params"].items()}


def torch_vgg(weights, image_hwc, layers, preprocess):
    """Differentiable float64 VGG19 forward (torchvision preprocessing, max pooling) up to the deepest layer."""
    x = preprocess_torch(image_hwc.permute(2, 0, 1)[None], bgr=preprocess.bgr, scale=preprocess.scale,
                         mean=preprocess.mean, std=preprocess.std)
    out, block, i, wanted = {}, 1, 0, set(layers)
    for c in CFG["vgg19"]:
        if len(out) == len(wanted):
            break
        if c == "M":
            x = F.max_pool2d(x, 2, 2)
            block, i = block + 1, 0
            continue
        i += 1
        w, b = weights[f"conv{block}_{i}"]
        x = F.relu(F.conv2d(x, w, b, padding=1))
        if f"relu{block}_{i}" in wanted:
            out[f"relu{block}_{i}"] = x[0].permute(1, 2, 0)  # HWC
    return out


def torch_objective(weights, preprocess, image, content, styles, *, alpha, beta, gamma, layer_w, blend,
                    content_layers, norm):
    """docs/algorithm.md, written out: alpha L_content + beta sum_l w_l E_l + gamma TV with the normalisation."""
    eps = 1e-12
    feats = torch_vgg(weights, image, content_layers + STYLE_LAYERS, preprocess)
    p = torch_vgg(weights, content, content_layers, preprocess)
    style_feats = [torch_vgg(weights, s, STYLE_LAYERS, preprocess) for s in styles]
    lc = 0.0
    for l in content_layers:
        term = t_content(feats[l], p[l])
        if norm == "size":
            term = term / p[l].numel()
        elif norm == "relative":
            term = term / (0.5 * (p[l] ** 2).sum() + eps)
        lc = lc + term
    ls = 0.0
    for wl, l in zip(layer_w, STYLE_LAYERS):
        f = feats[l]
        n, m = f.shape[-1], f.shape[0] * f.shape[1]
        # Each style image's Gram is taken at its own size, divided by its own M and brought to the output's M.
        a = sum(b * t_gram(sf[l]) / (sf[l].shape[0] * sf[l].shape[1]) for b, sf in zip(blend, style_feats)) * m
        e = t_style_layer(f, a)
        if norm == "relative":
            e = e / ((a**2).sum() / (4.0 * n**2 * m**2) + eps)
        ls = ls + wl * e
    tv = t_tv(image)
    if norm != "paper":
        tv = tv / image.numel()
    return alpha * lc + beta * ls + gamma * tv


CASES = {
    # two style images, both of another size (and aspect) than the 32x40 content, unequal blend; TV on
    "two_styles_other_sizes": dict(content_hw=(32, 40), style_hws=((48, 36), (24, 24)), blend=(0.3, 0.7),
                                   content_layers=("relu4_2",), alpha=0.7, beta=3.0, gamma=0.5,
                                   layer_w=(0.1, 0.3, 0.2, 0.25, 0.15)),
    # one style image of the content's size (exactly the paper's A^l), two content layers
    "one_style_same_size": dict(content_hw=(32, 32), style_hws=((32, 32),), blend=(1.0,),
                                content_layers=("relu2_2", "relu4_2"), alpha=1.0, beta=10.0, gamma=0.0,
                                layer_w=(0.2,) * 5),
}


# neural-style's normalisation is checked against neural-style-pt's own formulas in test_neural_style.py.
@pytest.mark.parametrize("norm", [n for n in objective.NORMALIZATIONS if n != "neural-style"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_total_loss_and_grad_match_torch(model, torch_weights, norm, case):
    c = CASES[case]
    rng = np.random.default_rng(sorted(CASES).index(case) + 10)
    content = rng.uniform(size=(*c["content_hw"], 3)).astype(np.float32)
    styles = [rng.uniform(size=(*hw, 3)).astype(np.float32) for hw in c["style_hws"]]
    image = rng.uniform(size=(*c["content_hw"], 3)).astype(np.float32)

    spec = objective.LossSpec(c["content_layers"], STYLE_LAYERS, norm)
    targets = objective.Targets(objective.content_targets(model, jnp.asarray(content), spec.content_layers),
                        objective.style_targets(model, [jnp.asarray(s) for s in styles], STYLE_LAYERS))
    weights = objective.LossWeights(jnp.float32(c["alpha"]), jnp.float32(c["beta"]), jnp.float32(c["gamma"]),
                            jnp.asarray(c["layer_w"], jnp.float32), jnp.asarray(c["blend"], jnp.float32))
    value, grad = jax.value_and_grad(objective.total_loss)(jnp.asarray(image), model, targets, weights, spec)

    T = lambda a: torch.as_tensor(a, dtype=torch.float64)
    x = T(image).requires_grad_(True)
    ref = torch_objective(torch_weights, model.preprocess, x, T(content), [T(s) for s in styles],
                          alpha=c["alpha"], beta=c["beta"], gamma=c["gamma"], layer_w=c["layer_w"],
                          blend=c["blend"], content_layers=c["content_layers"], norm=norm)
    ref.backward()
    ref_grad = x.grad.numpy()
    # float32 VGG19 forward/backward (up to relu5_1) against float64: 1e-4 on the value, 1e-3 relative L2 on the
    # gradient. A wrong normaliser, blend or M_l rescaling is off by far more (factors, not 1e-3).
    np.testing.assert_allclose(float(value), ref.item(), rtol=1e-4)
    g = np.asarray(grad, np.float64)
    assert np.isfinite(g).all()
    rel = np.linalg.norm(g - ref_grad) / np.linalg.norm(ref_grad)
    assert rel < 1e-3, (case, norm, rel)


def test_style_targets_are_grams_over_own_positions(model):
    # style_targets stores A / M_style per style image, stacked: check against extract_features + gram_matrix.
    rng = np.random.default_rng(5)
    s1 = jnp.asarray(rng.uniform(size=(20, 24, 3)).astype(np.float32))
    s2 = jnp.asarray(rng.uniform(size=(40, 16, 3)).astype(np.float32))
    stacked = objective.style_targets(model, [s1, s2], ("relu1_1", "relu2_1"))
    for layer, m_div in (("relu1_1", (20 * 24, 40 * 16)), ("relu2_1", (10 * 12, 20 * 8))):
        assert stacked[layer].shape == (2, *(2 * (64 if layer == "relu1_1" else 128,)))
        for k, s in enumerate((s1, s2)):
            f = jaxstyle.extract_features(model, s, (layer,))[layer]
            np.testing.assert_allclose(np.asarray(stacked[layer][k]), np.asarray(gram_matrix(f)) / m_div[k],
                                       rtol=1e-5, atol=1e-7)


def test_jit_equals_eager(model):
    rng = np.random.default_rng(6)
    content = jnp.asarray(rng.uniform(size=(24, 24, 3)).astype(np.float32))
    style = jnp.asarray(rng.uniform(size=(32, 20, 3)).astype(np.float32))
    image = jnp.asarray(rng.uniform(size=(24, 24, 3)).astype(np.float32))
    spec = objective.LossSpec(("relu4_2",), STYLE_LAYERS, "relative")
    targets = objective.Targets(objective.content_targets(model, content, spec.content_layers),
                        objective.style_targets(model, [style], STYLE_LAYERS))
    weights = gatys.loss_weights(gatys.StyleConfig(tv_weight=0.3), 1)
    f = lambda x, tg, w: jax.value_and_grad(objective.total_loss)(x, model, tg, w, spec)
    v_e, g_e = f(image, targets, weights)
    v_j, g_j = jax.jit(f)(image, targets, weights)
    # XLA may fuse/reorder float32 sums differently under jit: 1e-5 relative, not bitwise.
    np.testing.assert_allclose(float(v_j), float(v_e), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g_j), np.asarray(g_e), rtol=1e-4,
                               atol=1e-5 * float(jnp.abs(g_e).max()))
