"""Tiled application (jaxstyle/fast/tiled.py): layer by layer in windows, equal to the whole-image network."""

import numpy as np
import pytest

from jaxstyle import fast
from jaxstyle.cli import main
from jaxstyle.errors import UsageError
from jaxstyle.fast import inference, layers
from jaxstyle.fast.model_file import save_model
from jaxstyle.fast.tiled import apply_tiled
from jaxstyle.io import images
from test_fast_apply import tiny_model


SHAPE, TILE = (37, 50, 3), 9  # one image shape and window for every test here: each program compiles once


def test_tiles_equal_the_whole_image():
    # Windows of 9 outputs on a 37 x 50 batch of two: odd sizes, tiles that overlap at the borders, every layer
    # (stride 2, upsampling, residual blocks) cut; the instance-norm statistics still come from the whole map;
    # a style mix reaches every normalisation.
    model = tiny_model(n_styles=2, seed=2)
    x = np.random.default_rng(0).random((2, *SHAPE), dtype=np.float32)
    whole = fast.apply(model, x, mix=[0.3, 0.7], tile=0)
    np.testing.assert_allclose(apply_tiled(model, x, inference.parse_mix(model, [0.3, 0.7]), TILE), whole, atol=2e-5)


def test_layer_sequence_walks_every_parameter_once():
    # export.py and tiled.py walk layers.sequence(); it must name each Flax module exactly once.
    model = tiny_model()
    paths = [op.path for op in layers.sequence(model.net) if hasattr(op, "path")]
    assert len(paths) == len(set(paths)) == len(model.params["params"]) - model.net.n_residual + 4 * model.net.n_residual


def test_apply_chooses_tiles_for_large_images_and_keeps_colour_option(monkeypatch):
    model = tiny_model(seed=5)
    x = np.random.default_rng(1).random((2, *SHAPE), dtype=np.float32)
    whole = fast.apply(model, x, original_colors=True, tile=0)
    calls = []
    real = inference.tiled.apply_tiled
    monkeypatch.setattr(inference.tiled, "apply_tiled", lambda *a: calls.append(a[-1]) or real(*a))
    monkeypatch.setattr(inference, "AUTO_TILE_PIXELS", 37 * 49)  # this image is "large"
    monkeypatch.setattr(inference, "AUTO_TILE", TILE)
    np.testing.assert_allclose(fast.apply(model, x, original_colors=True), whole, atol=2e-5)
    assert calls == [TILE]
    fast.apply(model, x[:, :, :49])  # at the threshold: whole image
    assert calls == [TILE]
    with pytest.raises(UsageError, match="tile"):
        fast.apply(model, x, tile=2)


def test_cli_tile_flag_gives_the_same_picture(tmp_path):
    save_model(str(tmp_path / "m.npz"), tiny_model(seed=6))
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):  # two same-size images: one batch, as in the tests above
        images.save_image(str(src / f"{i}.png"), np.random.default_rng(i).random(SHAPE, dtype=np.float32))
    for tile in ("0", str(TILE)):
        assert main(["apply", "--model", str(tmp_path / "m.npz"), str(src), "-o", str(tmp_path / tile),
                     "--tile", tile, "-q"]) == 0
    for i in range(2):
        a, b = (images.load_image(str(tmp_path / t / f"{i}.png")) for t in ("0", str(TILE)))
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6
    assert main(["apply", "--model", str(tmp_path / "m.npz"), str(src), "-o", str(tmp_path / "x"),
                 "--tile", "2"]) == 2


def test_imported_variants_refuse_tiles_with_one_line(tmp_path):
    net = fast.TransformerNet(width=4, n_residual=1, preprocess="rgb255")
    model = fast.FastModel(params=fast.init_params(net), net=net, meta={})
    x = np.random.default_rng(3).random(SHAPE, dtype=np.float32)
    with pytest.raises(UsageError, match="preprocess=rgb255"):
        fast.apply(model, x, tile=TILE)
    assert inference.use_tiles(net, (10_000, 10_000, 3), None) == 0  # too large, but whole: no silent error
