"""Download the public pretrained VGG weights, verify them, and convert them in one step.

The file streams (with a tqdm progress bar) into ``<weights dir>/<published name>.part`` while it is hashed;
the checksum is verified, the file converted with :func:`jaxstyle.convert.convert`, and only then is the
``.part`` removed (or, with ``keep_source``, renamed to the published name). On any failure, including
Ctrl-C, the partial download is deleted and no converted file is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import NamedTuple

from tqdm import tqdm

from . import convert as converter
from .errors import UsageError, WeightsError


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
DOWNLOADABLE = ("keras", "torchvision")
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


def download(source: str, arch: str = "vgg19", output=None, *, keep_source: bool = False, url: str | None = None,
             md5: str | None = None, sha256_prefix: str | None = None, overwrite: bool = False,
             progress: bool = True) -> dict:
    """Download ``source`` (``"keras"`` or ``"torchvision"``) weights for ``arch``, verify, convert.

    ``url``, ``md5`` and ``sha256_prefix`` replace the published location and checksums (for mirrors). If a
    checksum option is given, only the given checksums are checked; otherwise the published one is.
    Returns :func:`jaxstyle.convert.convert`'s summary plus ``url`` and ``kept_source`` (path or ``None``).
    """
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

    output = os.fspath(output) if output is not None else converter.default_output(arch)
    if os.path.isdir(output):
        raise UsageError(f"{output}: is a directory — pass an output file name such as weights/{arch}.npz")
    if os.path.exists(output) and not overwrite:
        raise UsageError(f"{output}: already exists — pass --force to overwrite it")
    directory = os.path.dirname(os.path.abspath(output))
    kept = os.path.join(directory, name)
    if keep_source and os.path.exists(kept) and not overwrite:
        raise UsageError(f"{kept}: already exists — pass --force to overwrite it, or convert it with jaxstyle convert")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise WeightsError(directory, f"cannot create the weights directory ({e.strerror})",
                           "choose another -o path") from None
    part = os.path.join(directory, name + ".part")
    try:
        _fetch(url, part, md5=md5, sha256_prefix=sha256_prefix, progress=progress)
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


def _fetch(url: str, part: str, *, md5: str | None, sha256_prefix: str | None, progress: bool) -> None:
    """Stream ``url`` into ``part``, then verify the length and checksums. Raises ``WeightsError``."""
    hashes = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    fix = "check your network connection and retry, or pass --url for a mirror"
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "jaxstyle"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(part, "wb") as f:
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
