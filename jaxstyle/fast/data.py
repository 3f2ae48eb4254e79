"""Training images streamed from a folder tree: decoding and random crops in background threads.

Deterministic and resumable by one integer. Sample ``g`` (counting from 0 over the whole run) is file
``perm_e[g mod n]`` of epoch ``e = g // n``, where ``perm_e`` is a permutation seeded by ``(seed, e)``; its crop is
drawn from a generator seeded by ``(seed, g)``. An unreadable file is skipped (with a counted warning) and the
next sample takes its place, so the stream is the same function of ``(files, seed)`` however it is consumed.
The position (the next ``g``) is all a checkpoint needs to continue the stream exactly.

Several processes (data parallelism over hosts) each read one share of every global batch: with ``share=(p, P)``
and a local batch of ``b``, the process's ``j``-th sample is global sample ``(j // b) * b * P + p * b + j % b``,
so process ``p`` holds rows ``p*b .. p*b+b-1`` of the global batch, which, with no unreadable file, is exactly the
single-process batch. An unreadable file is replaced from the process's own share (the next of its samples), so
the position (``j``, local) is then per process.

Decoding uses Pillow, which releases the GIL, in a thread pool with a bounded look-ahead; JPEGs are decoded at
reduced resolution (``Image.draft``) when they are much larger than the crop. Nothing is held in memory but the
file list and the look-ahead window.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import warnings

import numpy as np
from PIL import Image, ImageFile

from ..errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
MAX_SCALE = 1.25  # crops cover 1/1.25^2 .. all of the short side's square (a departure: pytorch/examples centre-crops)
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is unreadable, never a grey-padded picture


class DatasetWarning(UserWarning):
    """A training file could not be used and was skipped."""


def list_images(root) -> list[str]:
    """Every image file under ``root`` (by extension), sorted; :class:`InputError` if there are none."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise InputError(root, "dataset is not a directory" if os.path.exists(root) else "no such dataset directory",
                         "pass a folder of training images (e.g. COCO train2014)")
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        files += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise InputError(root, "no image files found in the dataset folder",
                         f"it must contain images ({', '.join(IMAGE_EXTENSIONS)}), in subfolders or not")
    return files


def random_crop(path: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Decode ``path``, scale its short side to ``size * U(1, MAX_SCALE)``, take a random ``size`` square: uint8."""
    target = int(round(size * rng.uniform(1.0, MAX_SCALE)))
    with Image.open(path) as im:
        im.draft("RGB", (target, target))  # JPEG: decode at the smallest 1/2^k scale still >= target
        im = im.convert("RGB")
        w, h = im.size
        scale = target / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)
    x, y = int(rng.integers(0, nw - size + 1)), int(rng.integers(0, nh - size + 1))
    return np.asarray(im.crop((x, y, x + size, y + size)), np.uint8)


class ImageStream:
    """Batches of ``(batch_size, size, size, 3)`` uint8 crops, starting at sample ``position``.

    ``position`` after each batch is where a resumed stream must start to continue identically; ``skipped`` counts
    unreadable files met so far. Use as an iterator; ``close()`` stops the workers.
    """

    def __init__(self, files, size: int, batch_size: int, seed: int, position: int = 0, workers: int = 4,
                 lookahead: int | None = None, share: tuple[int, int] = (0, 1)):
        self.files, self.size, self.batch_size, self.seed = list(files), size, batch_size, seed
        self.share = share  # (this process, processes): batch_size is this process's part of the global batch
        self.position, self.skipped = int(position), 0
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, workers), thread_name_prefix="jaxstyle-data")
        self._lookahead = lookahead or max(2 * batch_size, 4 * workers)
        self._pending: collections.deque = collections.deque()
        self._next_submit = self.position
        self._perms: dict[int, np.ndarray] = {}
        self._failures_in_a_row = 0

    def file_of(self, g: int) -> str:
        epoch, i = divmod(g, len(self.files))
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.files))}
        return self.files[self._perms[epoch][i]]

    def global_index(self, j: int) -> int:
        """The global sample of this process's ``j``-th (see the module docstring)."""
        p, n = self.share
        return (j // self.batch_size) * self.batch_size * n + p * self.batch_size + j % self.batch_size

    def _load(self, g: int, path: str):
        try:
            return random_crop(path, self.size, np.random.default_rng([self.seed, 1 << 20, g]))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            return e

    def _fill(self) -> None:
        while len(self._pending) < self._lookahead:
            j = self._next_submit
            g = self.global_index(j)
            self._pending.append((j, g, self._pool.submit(self._load, g, self.file_of(g))))
            self._next_submit += 1

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        batch = []
        while len(batch) < self.batch_size:
            self._fill()
            j, g, future = self._pending.popleft()
            result = future.result()
            self.position = j + 1
            if isinstance(result, np.ndarray):
                batch.append(result)
                self._failures_in_a_row = 0
                continue
            self.skipped += 1
            self._failures_in_a_row += 1
            warnings.warn(f"{self.file_of(g)}: unreadable training image skipped ({type(result).__name__}: "
                          f"{result}); {self.skipped} skipped so far", DatasetWarning, stacklevel=2)
            if self._failures_in_a_row >= len(self.files):
                raise InputError(os.path.commonpath(self.files) if len(self.files) > 1 else self.files[0],
                                 "no readable image in the dataset", "check the files (all failed to decode)")
        return np.stack(batch)

    def close(self) -> None:
        for *_, future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
