"""Two real local processes on JAX's distributed runtime (2 forced CPU devices each, gloo collectives).

Each test starts ``jaxstyle ... --coordinator 127.0.0.1:PORT --num-processes 2 --process-id I`` twice (the
supervisor and its worker per process, as a user would) and compares with the same command run in this one
process (1 CPU device). Every child has a hard timeout (killed, never waited on forever), so a hang fails the test
instead of stalling CI. Equality is within float summation order: a 4-device program and a 1-device one sum in a
different order (as in test_sharding.py and test_fast_train.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

import training_compare
from jaxstyle import fast
from jaxstyle.cli import main
from jaxstyle.errors import EXIT_PEER
from jaxstyle.fast.config import FastConfig
from jaxstyle.fast.data import ImageStream, list_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 240  # seconds any two-process command may take on this (loaded) machine before it is killed
PROGRAM = "import sys; from jaxstyle.cli import main; sys.exit(main())"
SWEEP = ["--weights", "random", "--image-size", "32", "--content-layers", "relu2_2", "--style-layers",
         "relu1_1,relu2_1", "--pooling", "avg", "--style-weight", "10,100", "--seed", "0,1", "--no-target-cache"]
TRAIN = ["--image-size", "32", "--style-size", "32", "--batch-size", "4", "--width", "4", "--residual-blocks", "1",
         "--content-layers", "relu1_2", "--style-layers", "relu1_2,relu2_2", "--preview-every", "0", "-q"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, heartbeat=10):
    """Both processes of a job, each its own ``jaxstyle`` command."""
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    port = free_port()
    return [subprocess.Popen([sys.executable, "-c", PROGRAM, *argv, "--coordinator", f"127.0.0.1:{port}",
                              "--num-processes", "2", "--process-id", str(i), "--heartbeat-timeout", str(heartbeat)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]


def finish(procs, limit=LIMIT):
    """(exit status, stderr) of each process; kills them all if any outlives ``limit``."""
    out = []
    deadline = time.monotonic() + limit
    try:
        for p in procs:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((p.returncode, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out


def run_two(argv):
    results = finish(start(argv))
    for i, (code, err) in enumerate(results):
        assert code == 0, f"process {i}: {err[-3000:]}"
    return results


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((28, 32, 3)) * 255).astype(np.uint8)).save(root / "c.png")
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "s.png")
    (root / "data" / "sub").mkdir(parents=True)
    for i in range(6):
        where = root / "data" / ("sub" if i % 2 else "")
        Image.fromarray((rng.random((40 + 4 * i, 48, 3)) * 255).astype(np.uint8)).save(where / f"im{i}.jpg")
    return root


def test_two_process_sweep_equals_the_one_process_sweep(images, tmp_path):
    argv = ["sweep", "--content", str(images / "c.png"), "--style", str(images / "s.png"), *SWEEP,
            "--iterations", "4"]
    run_two([*argv, "-o", str(tmp_path / "two")])
    assert main([*argv, "-q", "-o", str(tmp_path / "one")]) == 0
    two, one = (json.load(open(tmp_path / d / "sweep.json")) for d in ("two", "one"))
    assert (two["processes"], two["devices"]) == (2, 4) and (one["processes"], one["devices"]) == (1, 1)
    assert len(two["runs"]) == 4
    for a, b in zip(two["runs"], one["runs"]):
        assert a["image"] == b["image"] and a["settings"] == b["settings"] and a["iterations"] == 4
        for k in b["losses"]:
            assert a["losses"][k] == pytest.approx(b["losses"][k], rel=1e-4, abs=1e-6), (a["image"], k)
        x, y = (np.asarray(Image.open(tmp_path / d / a["image"]), np.int16) for d in ("two", "one"))
        assert np.abs(x - y).max() <= 1, a["image"]  # 1e-4 in float, then rounded to 8 bits
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))


def test_two_process_training_resumed_equals_one_process_training(images, tmp_path):
    argv = ["train", "--style", str(images / "s.png"), "--dataset", str(images / "data"), *TRAIN]
    two = str(tmp_path / "two.npz")
    run_two([*argv, "--steps", "2", "--checkpoint-every", "1", "-o", two, "--profile", str(tmp_path / "prof")])
    run_two(["train", "--resume", "--steps", "3", "-q", "-o", two])  # both processes restore the orbax checkpoint
    one = str(tmp_path / "one.npz")
    assert main([*argv, "--steps", "3", "--checkpoint-every", "0", "-o", one]) == 0
    h2, h1 = ([json.loads(line) for line in open(p.replace(".npz", ".history.jsonl"))] for p in (two, one))
    assert [h["step"] for h in h2] == [1, 2, 3]
    for a, b in zip(h2, h1):
        # Up to rounding, carried on by Adam (training_compare.py): measured 2e-6 at steps 1-2, up to 1.4e-5 at 3;
        # half of the batch instead changes the first loss by 1e-1.
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["step"]
    kernels = [training_compare.kernels(fast.load_model(p).params) for p in (two, one)]
    training_compare.assert_same_training(*kernels, FastConfig.learning_rate)  # TRAIN keeps the default rate
    record = json.load(open(os.path.join(tmp_path, "two.ckpt", "3", "record", "metadata")))
    assert record["positions"] == [6, 6] and record["provenance"]["processes"] == 2
    profile = json.load(open(tmp_path / "prof" / "profile.json"))  # process 0's trace of step 2
    assert profile["devices"] == 4 and profile["step_seconds"] > 0 and profile["flops_per_step"] > 0


def test_the_shares_of_the_processes_make_the_one_process_batch(images):
    files = list_images(images / "data")
    one = ImageStream(files, 16, 4, seed=3, workers=1)
    shares = [ImageStream(files, 16, 2, seed=3, workers=1, share=(p, 2)) for p in range(2)]
    try:
        for _ in range(4):  # 16 samples of 6 files: across epochs, each with its own permutation
            np.testing.assert_array_equal(next(one), np.concatenate([next(s) for s in shares]))
        assert [s.position for s in shares] == [8, 8] and one.position == 16
    finally:
        for s in (one, *shares):
            s.close()


def test_killing_one_process_stops_the_other_with_one_line(images, tmp_path):
    heartbeat = 3
    procs = start(["sweep", "--content", str(images / "c.png"), "--style", str(images / "s.png"), *SWEEP,
                   "--iterations", "100000", "-o", str(tmp_path / "out")], heartbeat=heartbeat)
    lines, started = [], threading.Event()

    def read():
        for line in procs[0].stderr:
            lines.append(line)
            if line.startswith("iteration"):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(LIMIT), "".join(lines)[-3000:]
        procs[1].send_signal(signal.SIGKILL)  # its worker goes with it
        killed = time.monotonic()
        code = procs[0].wait(timeout=heartbeat + 60)
        took = time.monotonic() - killed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.communicate()
    reader.join(10)
    assert code == EXIT_PEER, "".join(lines)[-3000:]
    assert took < heartbeat + 30, took  # the heartbeat timeout, plus the coordination service's polling
    assert lines[-1].startswith("error: process 0 of 2 stopped: another process of the job stopped"), lines[-3:]
    assert len([line for line in lines if line.startswith("error")]) == 1
    assert not any("Check failure" in line or "Traceback" in line for line in lines)
    assert not (tmp_path / "out").exists()  # nothing half-written
