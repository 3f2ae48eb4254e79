"""Resumable stylize runs, tested the way they fail in practice: real ``scripts/stylize.py`` subprocesses stopped
with SIGINT (clean stop) or SIGKILL (no warning) once their first checkpoint exists, then continued with
``--resume``. The reference is an uninterrupted run with the same settings: the resumed final image must have
the same pixels, bit for bit (same device, same seed). Also: checkpoints that are corrupt, truncated, or from
other inputs are refused with one line and exit 3; options contradicting the checkpoint with exit 2.

48 px thumbnails, random VGG weights, two shallow style layers, 60 iterations with a checkpoint every 10.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from PIL import Image

from jaxstyle.io import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "stylize.py")
EXAMPLES = os.path.join(REPO, "examples", "images")
ITERATIONS = 60
EVERY = 10
SETTINGS = ["--weights", "random", "--image-size", "48", "--iterations", str(ITERATIONS), "--content-layers",
            "relu2_1", "--style-layers", "relu1_1,relu2_1", "--seed", "7", "--print-every", "10",
            "--save-every", "20", "--checkpoint-every", str(EVERY)]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    return e


def cli(*args, cwd):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=300)


def load_checkpoint(path):
    """(the run state's iteration and image, the checkpoint's metadata)."""
    tree, meta = checkpoint.load(path)
    return types.SimpleNamespace(iteration=int(tree["run"]["iteration"]), x=tree["run"]["x"]), meta


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    out = {}
    for name in ("chelsea", "starry_night"):
        im = Image.open(os.path.join(EXAMPLES, f"{name}.jpg")).convert("RGB")
        im.thumbnail((48, 48), Image.Resampling.LANCZOS)
        out[name] = str(d / f"{name}.png")
        im.save(out[name])
    return out


def run_args(inputs, out):
    return ["--content", inputs["chelsea"], "--style", inputs["starry_night"], "-o", out, *SETTINGS]


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """The uninterrupted run."""
    d = tmp_path_factory.mktemp("reference")
    proc = cli(*run_args(inputs, d / "ref.png"), "--log", d / "ref.jsonl", cwd=d)
    assert proc.returncode == 0, proc.stderr
    shutil.copy(d / "ref.jsonl", d / "ref.finished.jsonl")  # the log as the run left it (resuming extends it)
    return d


def interrupted_run(inputs, d, sig):
    """Start a run, wait for its first checkpoint, send ``sig``; return (exit status, stderr)."""
    ckpt = d / "out.ckpt.npz"
    proc = subprocess.Popen([sys.executable, SCRIPT, *map(str, run_args(inputs, d / "out.png")), "--log",
                             d / "out.jsonl"], cwd=d, env=env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before its first checkpoint: " + proc.stderr.read()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


def test_sigint_mid_run_then_resume_gives_the_reference_image(inputs, reference, tmp_path):
    code, err = interrupted_run(inputs, tmp_path, signal.SIGINT)
    assert code == 130, err
    assert "Traceback" not in err
    assert (tmp_path / "out.last-good.png").exists() and not (tmp_path / "out.png").exists()
    resume, run = load_checkpoint(tmp_path / "out.ckpt.npz")
    # The clean stop wrote a final checkpoint at the iteration it stopped at, and the last-good image is it.
    assert EVERY <= resume.iteration < ITERATIONS and resume.iteration % EVERY == 0
    assert f"checkpoint of iteration {resume.iteration}" in err and "--resume" in err
    np.testing.assert_array_equal(pixels(tmp_path / "out.last-good.png"),
                                  np.rint(np.clip(np.asarray(resume.x), 0, 1) * 255).astype(np.uint8))
    # The run description is complete: the request (config, inputs, outputs, intervals), inputs' sha256, network.
    request = run["request"]
    assert request["config"]["seed"] == 7 and request["config"]["iterations"] == ITERATIONS
    assert request["content"] == inputs["chelsea"] and len(run["hashes"][inputs["chelsea"]]) == 64
    assert request["weights"] == "random" and run["arch"] == "vgg19"
    assert request["output"] == str(tmp_path / "out.png")
    assert (request["print_every"], request["save_every"], request["checkpoint_every"]) == (10, 20, EVERY)
    assert request["max_pixels"] == 40_000_000 and run["iteration"] == resume.iteration

    proc = cli("--resume", tmp_path / "out.ckpt.npz", cwd=tmp_path)  # no other option needed
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(pixels(tmp_path / "out.png"), pixels(reference / "ref.png"))
    # The log continues: the same records as the uninterrupted run's (values bitwise), plus the stop's record.
    ref = [json.loads(line) for line in open(reference / "ref.finished.jsonl")]
    got = [json.loads(line) for line in open(tmp_path / "out.jsonl")]
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}
    assert [drop(r) for r in got] == [drop(r) for r in ref]  # the stop fell on a print point (every 10)
    # Frames of both parts exist; the GIF has them all.
    for it in (20, 40, 60):
        assert (tmp_path / f"out.iter{it:04d}.png").exists()
    assert Image.open(tmp_path / "out.gif").n_frames == 3
    # The checkpoint stays after the finished run (documented) and holds its end: --iterations can extend it.
    assert load_checkpoint(tmp_path / "out.ckpt.npz")[0].iteration == ITERATIONS


def test_sigkill_mid_run_leaves_a_complete_checkpoint_and_resume_gives_the_reference(inputs, reference, tmp_path):
    code, _ = interrupted_run(inputs, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not (tmp_path / "out.png").exists()
    resume, _ = load_checkpoint(tmp_path / "out.ckpt.npz")  # complete: atomic write, never half a file
    assert EVERY <= resume.iteration < ITERATIONS
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".npz") and f != "out.ckpt.npz"]
    proc = cli("--resume", tmp_path / "out.ckpt.npz", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(pixels(tmp_path / "out.png"), pixels(reference / "ref.png"))


def test_resume_can_extend_a_finished_run_and_move_its_output(inputs, reference, tmp_path):
    """--iterations beyond the planned number, -o elsewhere: the reference's checkpoint continues, the reference's
    outputs are untouched, and the derived outputs follow the new -o."""
    ckpt = tmp_path / "ref.ckpt.npz"
    shutil.copy(reference / "ref.ckpt.npz", ckpt)
    before = (reference / "ref.png").read_bytes()
    log_before = (reference / "ref.jsonl").read_bytes()
    proc = cli("--resume", ckpt, "--iterations", ITERATIONS + 10, "-o", tmp_path / "more.png", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (reference / "ref.png").read_bytes() == before
    # The run's log (its request names it; --log cannot change on --resume) continues with the new iterations.
    added = (reference / "ref.jsonl").read_bytes()[len(log_before):].decode().splitlines()
    assert [json.loads(line)["iteration"] for line in added][-1] == ITERATIONS + 10
    assert load_checkpoint(tmp_path / "more.ckpt.npz")[0].iteration == ITERATIONS + 10
    assert pixels(tmp_path / "more.png").shape == pixels(reference / "ref.png").shape
    assert not np.array_equal(pixels(tmp_path / "more.png"), pixels(reference / "ref.png"))


# ------------------------------------------------------------------------------------------------ bad checkpoints


def one_line_error(proc, code, *needles):
    assert proc.returncode == code, proc.stderr
    err = [line for line in proc.stderr.splitlines() if not line.startswith("warning:")]
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in err[0], err[0]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing", "not-a-checkpoint"])
def test_corrupt_or_truncated_checkpoint_exits_3(reference, tmp_path, damage):
    ckpt = tmp_path / "bad.ckpt.npz"
    data = (reference / "ref.ckpt.npz").read_bytes()
    if damage == "truncated":
        ckpt.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        ckpt.write_bytes(data[:100] + bytes(200) + data[300:])
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "not-a-checkpoint":
        np.savez(ckpt, x=np.zeros(3))
    proc = cli("--resume", ckpt, cwd=tmp_path)
    one_line_error(proc, 3, "bad.ckpt.npz", "without --resume")
    assert os.listdir(tmp_path) == ([] if damage == "missing" else ["bad.ckpt.npz"])


def test_checkpoint_of_other_inputs_exits_3_naming_the_file(inputs, reference, tmp_path):
    """A checkpoint whose style image was replaced since (same path, other bytes) is refused; so is one whose
    content image is gone."""
    d = tmp_path / "run"
    d.mkdir()
    style, content = d / "style.png", d / "content.png"
    shutil.copy(inputs["starry_night"], style)
    shutil.copy(inputs["chelsea"], content)
    proc = cli("--content", content, "--style", style, "-o", d / "o.png", "--weights", "random", "--image-size", 32,
               "--iterations", 2, "--checkpoint-every", 1, "--content-layers", "relu2_1", "--style-layers",
               "relu1_1,relu2_1", "-q", cwd=d)
    assert proc.returncode == 0, proc.stderr
    shutil.copy(inputs["chelsea"], style)
    proc = cli("--resume", d / "o.ckpt.npz", cwd=d)
    one_line_error(proc, 3, str(style), "has changed since the checkpoint")
    shutil.copy(inputs["starry_night"], style)
    os.remove(content)
    proc = cli("--resume", d / "o.ckpt.npz", cwd=d)
    one_line_error(proc, 3, str(content), "missing")


@pytest.mark.parametrize("extra, needle", [
    (["--style-weight", "3"], "--style-weight 3.0 contradicts"),
    (["--seed", "8"], "--seed 8 contradicts"),
    (["--content", "other.png"], "--content other.png contradicts"),
    (["--checkpoint-every", "5"], "--checkpoint-every 5 contradicts"),
    (["--weights", "vgg.npz"], "--weights vgg.npz contradicts"),
    (["--iterations", "5"], "is below the 60 iterations"),
])
def test_options_contradicting_the_checkpoint_exit_2(reference, tmp_path, extra, needle):
    proc = cli("--resume", reference / "ref.ckpt.npz", "-o", tmp_path / "o.png", *extra, cwd=tmp_path)
    one_line_error(proc, 2, needle)
    assert os.listdir(tmp_path) == []
