"""``--profile DIR``: a jax.profiler trace of steady-state steps and the compile / step / FLOP/s report."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
from PIL import Image

from jaxstyle.cli import main
from jaxstyle.io import profiling


def test_stylize_profile_writes_a_trace_and_the_figures(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("c.png", "s.png"):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / name)
    prof = tmp_path / "prof"
    assert main(["stylize", "--content", str(tmp_path / "c.png"), "--style", str(tmp_path / "s.png"), "--weights",
                 "random", "--image-size", "32", "--iterations", "8", "--print-every", "2", "--content-layers",
                 "relu2_1", "--style-layers", "relu1_1,relu2_1", "-q", "-o", str(tmp_path / "out.png"),
                 "--profile", str(prof)]) == 0
    traces = glob.glob(str(prof / "plugins" / "profile" / "*" / "*.xplane.pb"))
    assert traces and os.path.getsize(traces[0]) > 0
    report = json.load(open(prof / profiling.FILE))
    assert report["step_seconds"] > 0 and report["compile_seconds"] > 0
    assert report["flops_per_step"] > 1e6  # a VGG forward and backward pass at 32 px: tens of MFLOPs at least
    assert report["flops_per_second"] == report["flops_per_step"] / report["step_seconds"]
    assert report["peak_flops_per_second"] is None  # CPU: unknown, said so
    err = capsys.readouterr().err
    assert "profile (cpu" in err and "FLOP/s (peak unknown for this device)" in err


def test_peak_flops_by_device_kind():
    class Device:
        def __init__(self, kind):
            self.device_kind = kind

    assert profiling.peak_flops(Device("TPU v5 lite")) == 197e12  # not v5p's 459e12: the longest prefix wins
    assert profiling.peak_flops(Device("NVIDIA H100 80GB HBM3")) == 67e12
    assert profiling.peak_flops(Device("cpu")) is None
