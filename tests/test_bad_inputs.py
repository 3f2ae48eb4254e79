"""Every bad input a user can give, through the real commands (``scripts/stylize.py``, ``scripts/sweep.py``,
``scripts/convert_weights.py`` in subprocesses): the exit status (2 = usage, 3 = data, 4 = non-finite), ONE line on
stderr (besides ``warning:`` lines) naming the file or option and saying what to do, never a traceback, no output
file, and the inputs byte-identical afterwards (sha256 before/after).

The images that must work (greyscale, LA, palette, RGBA, CMYK JPEG, 16-bit PNG, EXIF-rotated, odd sizes) run
in-process through ``jaxstyle.cli.main`` with 0 iterations and ``--init content``: the output is then the loaded
content itself, so its values can be checked against what each file holds. A 4x4 image and an animated GIF
succeed with a warning (documented decisions) and run as subprocesses so the warning is checked on real stderr.

All inputs are tiny and made once per module; every failing row exits before the optimisation starts, except the
non-finite row (6 iterations at 32 px).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxstyle.nets import vgg
from jaxstyle.nets import weights as jw
from jaxstyle.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples", "images")
FAST = ["--weights", "random", "--image-size", "32", "--content-layers", "relu2_1", "--style-layers",
        "relu1_1,relu2_1", "--iterations", "1"]


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def tree_hashes(d) -> dict:
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, d)] = sha(p)
    return out


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    return e


def cli(script, *args, cwd):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", script), *map(str, args)], cwd=cwd,
                          env=env(), capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------------------------ the inputs


def _jpeg_bytes(im, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _png_bytes(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _tiny_weights(path, *, arch="vgg19", keys=None, nan=False):
    """A converted-format archive with valid metadata. ``keys``: which conv keys to include (default all); every
    array but conv1_1's is a 1-element stand-in, so the file is tiny: loading fails (as these tests want) at the
    first key checked, before the stand-ins are reached."""
    shapes = vgg.conv_shapes(arch)
    arrays = {}
    for name in (keys if keys is not None else shapes):
        for part, shape in (("kernel", shapes[name]), ("bias", shapes[name][-1:])):
            full = name == "conv1_1"
            arrays[f"{name}/{part}"] = np.zeros(shape if full else (1,), np.float32)
    if nan:
        arrays["conv1_1/kernel"][0, 0, 0, 0] = np.nan
    p = vgg.PRESETS["torchvision"]
    arrays.update({"meta/format_version": np.int64(jw.FORMAT_VERSION), "meta/arch": np.str_(arch),
                   "meta/preset": np.str_(p.name), "meta/bgr": np.bool_(p.bgr), "meta/scale": np.float64(p.scale),
                   "meta/mean": np.asarray(p.mean, np.float64), "meta/std": np.asarray(p.std, np.float64),
                   "meta/source": np.str_("test"), "meta/source_sha256": np.str_("0" * 64),
                   "meta/source_format": np.str_("test")})
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    cat = Image.open(os.path.join(EXAMPLES, "chelsea.jpg")).convert("RGB")
    cat.thumbnail((48, 48), Image.Resampling.LANCZOS)  # 48 x 32
    star = Image.open(os.path.join(EXAMPLES, "starry_night.jpg")).convert("RGB")
    star.thumbnail((48, 48), Image.Resampling.LANCZOS)
    f = {"content": d / "content.png", "style": d / "style.png"}
    cat.save(f["content"])
    star.save(f["style"])
    f["missing"] = d / "missing.png"
    f["directory"] = d / "folder.png"
    f["directory"].mkdir()
    f["empty"] = d / "empty.png"
    f["empty"].write_bytes(b"")
    f["text"] = d / "notes.jpg"
    f["text"].write_text("this is not a picture\n")
    jpeg = _jpeg_bytes(cat, quality=90)
    f["truncated_jpeg"] = d / "cut.jpg"
    f["truncated_jpeg"].write_bytes(jpeg[: len(jpeg) // 2])
    png = _png_bytes(cat)
    f["truncated_png"] = d / "cut.png"
    f["truncated_png"].write_bytes(png[: len(png) // 2])
    f["tiny"] = d / "tiny.png"
    cat.resize((4, 4)).save(f["tiny"])
    f["animated"] = d / "anim.gif"
    cat.save(f["animated"], save_all=True, append_images=[star.resize(cat.size)], duration=100, loop=0)
    # Weights.
    f["w_missing"] = d / "nope.npz"
    f["w_pickle"] = d / "vgg19.pth"
    f["w_pickle"].write_bytes(pickle.dumps({"features.0.weight": [0.0]}, protocol=2))
    f["w_wrongkey"] = d / "wrongkey.npz"
    _tiny_weights(f["w_wrongkey"], keys=["conv1_1"])
    f["w_nan"] = d / "nan.npz"
    _tiny_weights(f["w_nan"], nan=True)
    f["w_truncated"] = d / "cut.npz"
    f["w_truncated"].write_bytes(f["w_nan"].read_bytes()[:3000])
    f["w_vgg16"] = d / "vgg16.npz"  # a real converted VGG16 (59 MB), removed at the end of the module
    hwio = {n: (p["kernel"], p["bias"]) for n, p in jw.random_params("vgg16")["params"].items()}
    jw.save_converted(f["w_vgg16"], "vgg16", hwio, vgg.PRESETS["torchvision"], source="vgg16.pth",
                      source_sha256="0" * 64, source_format="torchvision")
    yield {k: str(v) for k, v in f.items()}
    os.remove(f["w_vgg16"])


@pytest.fixture()
def guarded(files, tmp_path):
    """The output directory and the input hashes; after the test: no file appeared, no input changed."""
    before = tree_hashes(os.path.dirname(files["content"]))
    out = tmp_path / "out"
    out.mkdir()
    yield out
    assert tree_hashes(os.path.dirname(files["content"])) == before, "an input file changed"


def one_line_error(proc, code, needles):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------------------ the table

# (id, script, args (names in {} are files, {out} is the output directory), exit status, needles in the error).
# Every message names the file or option; the fix is the text after "—" or, for option values, the rule given.
C, S, O = "{content}", "{style}", "{out}/o.png"
ROWS = [
    # images
    ("image-missing", "stylize", ["--content", "{missing}", "--style", S, "-o", O], 3,
     ["missing.png", "no such file", "— check the path"]),
    ("image-directory", "stylize", ["--content", C, "--style", "{directory}", "-o", O], 3,
     ["folder.png", "is a directory", "— pass an image file"]),
    ("image-empty", "stylize", ["--content", "{empty}", "--style", S, "-o", O], 3,
     ["empty.png", "empty file", "— "]),
    ("image-text-as-jpg", "stylize", ["--content", "{text}", "--style", S, "-o", O], 3,
     ["notes.jpg", "not an image file", "— use PNG, JPEG"]),
    ("image-truncated-jpeg", "stylize", ["--content", "{truncated_jpeg}", "--style", S, "-o", O], 3,
     ["cut.jpg", "truncated", "— re-export"]),
    ("image-truncated-png", "stylize", ["--content", C, "--style", "{truncated_png}", "-o", O], 3,
     ["cut.png", "— re-export"]),
    ("image-too-large", "stylize", ["--content", C, "--style", S, "-o", O, "--max-pixels", "1000"], 3,
     ["content.png", "48x32", "above the limit", "--max-pixels"]),
    # weights
    ("weights-missing", "stylize", ["--content", C, "--style", S, "-o", O, "--weights", "{w_missing}"], 3,
     ["nope.npz", "no such file", "— convert or download"]),
    ("weights-truncated", "stylize", ["--content", C, "--style", S, "-o", O, "--weights", "{w_truncated}"], 3,
     ["cut.npz", "— convert it again"]),
    ("weights-pickle", "stylize", ["--content", C, "--style", S, "-o", O, "--weights", "{w_pickle}"], 3,
     ["vgg19.pth", "pickle", "— convert the source"]),
    ("weights-wrong-key", "stylize", ["--content", C, "--style", S, "-o", O, "--weights", "{w_wrongkey}"], 3,
     ["wrongkey.npz", "missing key 'conv1_2/", "— convert it again"]),
    ("weights-nan", "stylize", ["--content", C, "--style", S, "-o", O, "--weights", "{w_nan}"], 3,
     ["nan.npz", "'conv1_1/kernel' contains non-finite", "— convert it again"]),
    ("weights-other-arch", "stylize", ["--content", C, "--style", S, "-o", O, "--weights", "{w_vgg16}",
                                       "--arch", "vgg19"], 3,
     ["vgg16.npz", "holds vgg16 weights but vgg19 was requested", "— pass a vgg19 file"]),
    ("weights-layer-not-in-vgg16", "stylize", ["--content", C, "--style", S, "-o", O, "--weights", "{w_vgg16}",
                                               "--style-layers", "relu5_4"], 2,
     ["--style-layers", "relu5_4", "valid layers"]),
    # options
    ("negative-weight", "stylize", ["--content", C, "--style", S, "-o", O, "--style-weight", "-1"], 2,
     ["--style-weight", "must be a finite number >= 0"]),
    ("non-numeric-weight", "stylize", ["--content", C, "--style", S, "-o", O, "--content-weight", "lots"], 2,
     ["--content-weight", "expected a number, got 'lots'"]),
    ("unknown-layer", "stylize", ["--content", C, "--style", S, "-o", O, "--content-layers", "relu4_9"], 2,
     ["--content-layers", "relu4_9", "valid layers: conv1_1 relu1_1"]),
    ("blend-count", "stylize", ["--content", C, "--style", S, S, "-o", O, "--style-blend-weights", "1,2,3"], 2,
     ["--style-blend-weights", "3 values but there are 2 style images"]),
    ("output-missing-dir", "stylize", ["--content", C, "--style", S, "-o", "{out}/nope/o.png"], 2,
     ["nope/o.png", "does not exist", "— create it first"]),
    ("output-unknown-extension", "stylize", ["--content", C, "--style", S, "-o", "{out}/o.webp"], 2,
     ["o.webp", "unsupported output type", "— use one of .png, .jpg"]),
    ("checkpoint-unknown-extension", "stylize", ["--content", C, "--style", S, "-o", O, "--checkpoint",
                                                 "{out}/c.pkl"], 2, ["c.pkl", "— use one of .npz"]),
    ("output-is-content", "stylize", ["--content", C, "--style", S, "-o", C], 2,
     ["content.png", "would overwrite the input", "— choose another output name"]),
    ("output-is-style", "stylize", ["--content", C, "--style", S, "-o", S], 2,
     ["style.png", "would overwrite the input", "— choose another output name"]),
    # the other commands
    ("sweep-missing-style", "sweep", ["--content", C, "--style", "{missing}", "-o", "{out}/sweep"], 3,
     ["missing.png", "no such file"]),
    ("sweep-negative-weight", "sweep", ["--content", C, "--style", S, "-o", "{out}/sweep", "--style-weight",
                                        "1,-1"], 2, ["--style-weight", ">= 0"]),
    ("convert-missing-source", "convert_weights", ["{w_missing}", "-o", "{out}/v.npz"], 3,
     ["nope.npz", "no such file", "— download"]),
    ("convert-not-weights", "convert_weights", ["{text}", "-o", "{out}/v.npz"], 3,
     ["notes.jpg", "unknown weights format", "— pass one of the supported"]),
    ("convert-onto-its-source", "convert_weights", ["{w_nan}", "-o", "{w_nan}"], 2,
     ["nan.npz", "overwrite the source", "— choose another"]),
]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_exits_with_one_line_and_no_output(files, guarded, row):
    _, script, args, code, needles = row
    args = [a.format(out=guarded, **files) for a in args]
    if script in ("stylize", "sweep"):
        args += ["--weights", "random"] if "--weights" not in args else []
        args += ["--image-size", "32", "--iterations", "1"]
    proc = cli(f"{script}.py", *args, cwd=guarded)
    one_line_error(proc, code, needles)
    # Nothing written anywhere: no file, and no directory either (sweep makes its -o only after inputs load).
    assert tree_hashes(guarded) == {}, os.listdir(guarded)
    assert os.listdir(guarded) == [], os.listdir(guarded)


def test_non_finite_loss_keeps_the_last_finite_image_and_exits_4(files, guarded):
    # Unit L-BFGS steps on an absurd style weight overflow float32 within a few iterations.
    proc = cli("stylize.py", "--content", files["content"], "--style", files["style"], "-o", guarded / "o.png",
               *FAST[:-2], "--iterations", 8, "--optimizer", "lbfgs-nols", "--style-weight", "1e30",
               "--print-every", 1, "-q", cwd=guarded)
    line = one_line_error(proc, 4, ["non-finite", "o.last-good.png", "— lower --style-weight"])
    m = re.search(r"non-finite at iteration (\d+) \(([a-z, ]+) term\); kept the image of iteration (\d+)", line)
    assert m, line
    assert int(m.group(3)) == int(m.group(1)) - 1 and "style" in m.group(2)
    assert sorted(os.listdir(guarded)) == ["o.last-good.png"]
    good = np.asarray(Image.open(guarded / "o.last-good.png"))
    assert good.shape == (21, 32, 3)


# ------------------------------------------------------------------------------------------------ accepted with a warning


@pytest.mark.parametrize("which, warning, hw", [
    ("tiny", "is only 4x4 pixels; upscaled to 16x16", (32, 32)),
    ("animated", "has 2 frames (animated or multi-page); using the first", (21, 32)),
])
def test_tiny_and_animated_images_succeed_with_a_warning(files, tmp_path, which, warning, hw):
    out = tmp_path / "o.png"
    before = sha(files[which])
    proc = cli("stylize.py", "--content", files[which], "--style", files["style"], "-o", out, *FAST, "-q",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert any(l.startswith("warning: ") and files[which] in l and warning in l for l in proc.stderr.splitlines()), \
        proc.stderr
    assert np.asarray(Image.open(out)).shape == (*hw, 3)
    assert sha(files[which]) == before


# ------------------------------------------------------------------------------------------------ must work


def _odd_photo():
    rng = np.random.default_rng(0)
    return (rng.random((24, 36, 3)) * 255).astype(np.uint8)  # 36 x 24, the output aspect of every kind below


def _write_kind(path, kind) -> np.ndarray:
    """Write ``kind`` and return the RGB values (0-255 float) the file holds, as a viewer would show them."""
    rgb = _odd_photo().astype(np.float64)
    grey = np.round(rgb.mean(axis=2))
    if kind == "greyscale":
        Image.fromarray(grey.astype(np.uint8), "L").save(path)
        return np.repeat(grey[..., None], 3, axis=2)
    if kind == "grey-alpha":
        alpha = np.full(grey.shape, 255, np.uint8)
        alpha[:, :12] = 0  # transparent left third: composited on white
        Image.fromarray(np.stack([grey.astype(np.uint8), alpha], axis=2), "LA").save(path)
        out = np.repeat(grey[..., None], 3, axis=2)
        out[:, :12] = 255
        return out
    if kind == "palette":
        im = Image.fromarray(rgb.astype(np.uint8)).quantize(16)
        im.save(path)
        return np.asarray(im.convert("RGB"), np.float64)
    if kind == "rgba":
        alpha = np.full(grey.shape, 255, np.uint8)
        alpha[:12] = 0
        Image.fromarray(np.dstack([rgb.astype(np.uint8), alpha]), "RGBA").save(path)
        out = rgb.copy()
        out[:12] = 255
        return out
    if kind == "cmyk-jpeg":
        im = Image.fromarray(rgb.astype(np.uint8)).convert("CMYK")
        im.save(path, quality=100)
        return np.asarray(Image.open(path).convert("RGB"), np.float64)
    if kind == "16-bit-png":
        g16 = (grey * 257).astype(np.uint16)
        Image.fromarray(g16).save(path)  # mode I;16
        assert Image.open(path).mode.startswith("I")
        return np.repeat(grey[..., None], 3, axis=2)
    if kind == "exif-rotated":
        # Stored sideways (24 wide, 36 tall) with EXIF orientation 6 ("rotate 90 CW to view"): shown 36 x 24.
        stored = np.rot90(rgb.astype(np.uint8), k=1)
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(np.ascontiguousarray(stored)).save(path, quality=100, exif=exif)
        shown = np.asarray(Image.open(path).convert("RGB").transpose(Image.Transpose.ROTATE_270), np.float64)
        return shown
    if kind == "odd-size":
        Image.fromarray(rgb[:23, :35].astype(np.uint8)).save(path)  # 35 x 23: odd, not square
        return rgb[:23, :35]
    raise AssertionError(kind)


KINDS = ["greyscale", "grey-alpha", "palette", "rgba", "cmyk-jpeg", "16-bit-png", "exif-rotated", "odd-size"]


@pytest.mark.parametrize("kind", KINDS)
def test_unusual_images_work(files, tmp_path, capsys, kind):
    """0 iterations from --init content at the image's own size: the output IS the loaded image."""
    ext = ".jpg" if kind in ("cmyk-jpeg", "exif-rotated") else ".png"
    path = tmp_path / f"{kind}{ext}"
    expected = _write_kind(path, kind)
    before = sha(path)
    out = tmp_path / "o.png"
    code = main(["stylize", "--content", str(path), "--style", files["style"], "-o", str(out), "--weights", "random",
                 "--image-size", "original", "--iterations", "0", "--init", "content", "--content-layers",
                 "relu1_1", "--style-layers", "relu1_1", "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    got = np.asarray(Image.open(out).convert("RGB"), np.float64)
    assert got.shape == expected.shape
    # CMYK and JPEG round trips are lossy in the file itself; expected values come from the file, so only
    # rounding differs.
    assert np.abs(got - expected).max() <= 1.0, (kind, np.abs(got - expected).max())
    assert sha(path) == before
