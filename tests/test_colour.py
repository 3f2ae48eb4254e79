"""Colour controls (Gatys et al. 2017): histogram matching, YIQ, luminance-only transfer.

Checked against what each one promises, computed independently with numpy: matched mean and covariance,
the YIQ round trip and known values, and that the luminance-only output carries the content's chroma.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import jaxstyle
from jaxstyle import colour, gatys
from jaxstyle.io.images import load_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def correlated(rng, shape, mean, mix):
    """Pixels ``mean + N(0, 1) @ mix``: a Gaussian colour cloud with covariance ``mix^T mix``."""
    return (np.asarray(mean) + rng.normal(size=(*shape, 3)) @ np.asarray(mix)).astype(np.float32)


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    # Moderate clouds (4 sigma stays inside [0, 1]), different shapes, means and correlations.
    source = correlated(rng, (40, 30), (0.55, 0.45, 0.4), [[0.08, 0.02, 0.0], [0.0, 0.05, 0.03], [0.01, 0.0, 0.04]])
    target = correlated(rng, (20, 50), (0.45, 0.5, 0.6), [[0.05, -0.02, 0.01], [0.0, 0.07, 0.0], [0.02, 0.0, 0.03]])
    assert source.min() > 0 and source.max() < 1 and target.min() > 0 and target.max() < 1
    return source, target


@pytest.mark.parametrize("method", colour.COLOR_MATCH_METHODS)
def test_histogram_matching_moves_mean_and_covariance(pair, method):
    source, target = pair
    out = np.asarray(colour.match_color_histogram(jnp.asarray(source), jnp.asarray(target), method), np.float64)
    assert out.shape == source.shape
    # Moderate inputs: nothing had to be clipped, so the moments below are exactly those of the linear map.
    assert out.min() > 0 and out.max() < 1
    o, t = out.reshape(-1, 3), target.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(o.mean(0), t.mean(0), atol=1e-5)
    # Covariances are ~1e-3..1e-2; the eps=1e-5 regulariser added to both and float32 leave ~1e-5 absolute.
    np.testing.assert_allclose(np.cov(o, rowvar=False), np.cov(t, rowvar=False), atol=3e-5)
    # and it did move something: the source's covariance was far from the target's
    assert np.abs(np.cov(source.reshape(-1, 3), rowvar=False) - np.cov(t, rowvar=False)).max() > 1e-3


def test_histogram_matching_methods_are_different_maps(pair):
    # Same moments, different maps (chol is lower-triangular, sym the symmetric solution): outputs differ.
    source, target = pair
    outs = [np.asarray(colour.match_color_histogram(jnp.asarray(source), jnp.asarray(target), m))
            for m in colour.COLOR_MATCH_METHODS]
    assert np.abs(outs[0] - outs[1]).max() > 1e-3 and np.abs(outs[1] - outs[2]).max() > 1e-3


def test_histogram_matching_clips_to_unit_range():
    rng = np.random.default_rng(1)
    source = rng.uniform(0.45, 0.55, (16, 16, 3)).astype(np.float32)  # narrow
    target = rng.choice([0.0, 1.0], (16, 16, 3)).astype(np.float32)  # extreme: the map overshoots
    out = np.asarray(colour.match_color_histogram(jnp.asarray(source), jnp.asarray(target)))
    assert out.min() >= 0 and out.max() <= 1 and np.isfinite(out).all()
    with pytest.raises(ValueError, match="colour-matching method"):
        colour.match_color_histogram(jnp.asarray(source), jnp.asarray(target), "lab")


def test_yiq_known_values_and_round_trip():
    # Greys have no chroma; white has Y = 1 (the NTSC luma weights 0.299 + 0.587 + 0.114 sum to 1).
    np.testing.assert_allclose(np.asarray(colour.rgb_to_yiq(jnp.array([1.0, 1.0, 1.0]))), [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(colour.rgb_to_yiq(jnp.array([0.3, 0.3, 0.3]))), [0.3, 0, 0], atol=1e-6)
    # Pure red: Y = 0.299, I = 0.595716, Q = 0.211456 (first column of the NTSC matrix).
    # Every primary: its column of the NTSC matrix (a coefficient typed wrong shows on one primary only).
    for primary, column in (([1.0, 0.0, 0.0], [0.299, 0.595716, 0.211456]),
                            ([0.0, 1.0, 0.0], [0.587, -0.274453, -0.522591]),
                            ([0.0, 0.0, 1.0], [0.114, -0.321263, 0.311135])):
        np.testing.assert_allclose(np.asarray(colour.rgb_to_yiq(jnp.array(primary))), column, atol=1e-6)
        np.testing.assert_allclose(np.asarray(colour.luminance(jnp.array([[primary]]))), [[column[0]]], atol=1e-6)
    # The inverse maps pure I and Q back to the published YIQ -> RGB coefficients.
    np.testing.assert_allclose(np.asarray(colour.yiq_to_rgb(jnp.array([0.0, 1.0, 0.0]))), [0.956, -0.272, -1.106],
                               atol=2e-3)
    np.testing.assert_allclose(np.asarray(colour.yiq_to_rgb(jnp.array([0.0, 0.0, 1.0]))), [0.621, -0.647, 1.703],
                               atol=2e-3)
    rgb = np.random.default_rng(2).uniform(size=(9, 7, 3)).astype(np.float32)
    back = np.asarray(colour.yiq_to_rgb(colour.rgb_to_yiq(jnp.asarray(rgb))))
    np.testing.assert_allclose(back, rgb, atol=1e-6)


def test_combine_luminance_keeps_content_chroma_and_stylized_luma():
    rng = np.random.default_rng(3)
    content = rng.uniform(0.3, 0.7, (12, 10, 3)).astype(np.float32)
    stylized = rng.uniform(0.3, 0.7, (12, 10, 3)).astype(np.float32)
    out = np.asarray(colour.combine_luminance(jnp.asarray(stylized), jnp.asarray(content)))
    yiq_out, yiq_c, yiq_s = (np.asarray(colour.rgb_to_yiq(jnp.asarray(a))) for a in (out, content, stylized))
    np.testing.assert_allclose(yiq_out[..., 0], yiq_s[..., 0], atol=1e-5)
    np.testing.assert_allclose(yiq_out[..., 1:], yiq_c[..., 1:], atol=1e-5)
    # Independently: changing Y alone adds the same amount to R, G and B (YIQ -> RGB has a first column of 1s).
    np.testing.assert_allclose(out, content + (yiq_s[..., :1] - yiq_c[..., :1]), atol=1e-5)
    # Out-of-gamut combinations are clipped
    extreme = np.asarray(colour.combine_luminance(jnp.ones((2, 2, 3)), jnp.asarray([[[1.0, 0, 0]] * 2] * 2)))
    assert extreme.min() >= 0 and extreme.max() <= 1


def test_luminance_mode_returns_content_chroma():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxstyle.RandomWeightsWarning)
        model = jaxstyle.load_vgg("random")
    content = load_image(os.path.join(REPO, "examples", "images", "chelsea.jpg"))
    style = load_image(os.path.join(REPO, "examples", "images", "starry_night.jpg"))
    # Light configuration (as in test_optimize): the colour handling does not depend on the layers.
    config = gatys.StyleConfig(image_size=32, iterations=10, content_layers=("relu2_1",),
                           style_layers=("relu1_1", "relu2_1"), original_colors="luminance")
    r = gatys.run_stylize(content, [style], model, config, chunk=25)
    assert r.status == "done"
    content_rgb = np.asarray(gatys.prepare(model, content, [style], config).content_rgb)
    out = r.image
    assert out.shape == content_rgb.shape
    yiq_out = np.asarray(colour.rgb_to_yiq(jnp.asarray(out)))
    yiq_c = np.asarray(colour.rgb_to_yiq(jnp.asarray(content_rgb)))
    unclipped = ((out > 1e-6) & (out < 1 - 1e-6)).all(-1)
    assert unclipped.mean() > 0.5  # most pixels: the check below is not vacuous
    np.testing.assert_allclose(yiq_out[unclipped][:, 1:], yiq_c[unclipped][:, 1:], atol=1e-5)
    # and the luminance is the optimised one, not the content's
    assert np.abs(yiq_out[..., 0] - yiq_c[..., 0]).mean() > 0.02
    # A transfer without colour control changes the chroma (so the equality above is the mode's doing).
    plain = gatys.run_stylize(content, [style], model, dataclasses.replace(config, original_colors="none"), chunk=25)
    yiq_plain = np.asarray(colour.rgb_to_yiq(jnp.asarray(plain.image)))
    assert np.abs(yiq_plain[..., 1:] - yiq_c[..., 1:]).mean() > 0.01


def _fitted_map(source, out):
    """The 3x3 matrix A of ``out = (source - mu_s) A^T + mu_o``, fitted by least squares."""
    s = source.reshape(-1, 3).astype(np.float64)
    o = out.reshape(-1, 3).astype(np.float64)
    a_t, *_ = np.linalg.lstsq(s - s.mean(0), o - o.mean(0), rcond=None)
    return a_t.T


def _sqrtm(c):
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(w)) @ v.T


def test_each_histogram_method_is_its_own_map(pair):
    # Each method's A, recovered from its output, has the method's own form (computed here with numpy from the
    # two covariances): Cholesky factors (lower triangular), PCA (Sigma_t^1/2 Sigma_s^-1/2), the symmetric one.
    source, target = pair
    eye = 1e-5 * np.eye(3)
    cs = np.cov(source.reshape(-1, 3).astype(np.float64), rowvar=False) + eye
    ct = np.cov(target.reshape(-1, 3).astype(np.float64), rowvar=False) + eye
    rt = _sqrtm(ct)
    expected = {"chol": np.linalg.cholesky(ct) @ np.linalg.inv(np.linalg.cholesky(cs)),
                "pca": _sqrtm(ct) @ np.linalg.inv(_sqrtm(cs)),
                "sym": rt @ np.linalg.inv(_sqrtm(rt @ cs @ rt)) @ rt}
    for method, a in expected.items():
        out = np.asarray(colour.match_color_histogram(jnp.asarray(source), jnp.asarray(target), method))
        np.testing.assert_allclose(_fitted_map(source, out), a, atol=2e-3, err_msg=method)
        np.testing.assert_allclose(out.reshape(-1, 3).mean(0), target.reshape(-1, 3).mean(0), atol=1e-5)
    assert np.allclose(np.triu(expected["chol"], 1), 0) and np.allclose(expected["sym"], expected["sym"].T)


def test_match_luminance_takes_the_contents_mean_and_spread():
    rng = np.random.default_rng(4)
    style_y = jnp.asarray(rng.uniform(0.0, 1.0, (10, 12)).astype(np.float32))
    content_y = jnp.asarray(rng.uniform(0.4, 0.6, (8, 9)).astype(np.float32))
    out = np.asarray(colour.match_luminance(style_y, content_y))
    assert out.shape == (10, 12)
    assert out.mean() == pytest.approx(float(content_y.mean()), abs=1e-5)
    assert out.std() == pytest.approx(float(content_y.std()), rel=1e-3)
    # affine and increasing: the order of the style's values is kept
    assert np.array_equal(np.argsort(out.ravel()), np.argsort(np.asarray(style_y).ravel()))
    flat = np.asarray(colour.match_luminance(jnp.full((4, 4), 0.3), content_y))  # no spread: eps, no NaN
    np.testing.assert_allclose(flat, float(content_y.mean()), atol=1e-6)


def test_combine_luminance_clips_below_zero_too():
    # A black luminance with a saturated content's chroma goes below 0 in some channels: clipped to 0.
    out = np.asarray(colour.combine_luminance(jnp.zeros((2, 2, 3)), jnp.asarray([[[1.0, 0.0, 0.0]] * 2] * 2)))
    assert out.min() == 0.0 and out.max() <= 1.0
    raw = np.asarray(colour.yiq_to_rgb(colour.rgb_to_yiq(jnp.asarray([1.0, 0.0, 0.0])).at[0].set(0.0)))
    assert raw.min() < 0  # the unclipped value was negative
