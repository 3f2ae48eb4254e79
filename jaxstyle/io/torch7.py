"""Read Torch7's binary serialisation (``torch.save`` in Lua, ``.t7``) without Lua: :func:`load_t7`.

The format (torch7's File.lua ``writeObject``): each object is an int32 type tag then its value, little-endian as
written on x86-64 (Lua numbers are float64, C ``long`` int64). Tags: 0 nil, 1 number, 2 string (int32 length,
bytes), 3 table, 4 torch object, 5 boolean (int32), 6-8 Lua functions. Tables and torch objects carry an int32
reference index, so a second occurrence of an index is the same object; a table is then an int32 count and that
many key, value pairs. A torch object is a version string ``"V <n>"`` and its class name, then, for tensors, int32
ndim, int64 sizes, int64 strides, int64 1-based storage offset and the storage object; for storages an int64 count
and the raw elements; for every other class (nn modules) one object, its field table.

Nothing here executes anything: Lua functions are refused, unknown classes become :class:`TorchObject`. Every
length and offset is checked against the bytes that are there, so a truncated or damaged file is a one-line
:class:`~jaxstyle.errors.InputError`, never a crash or an out-of-bounds read. (The ``torchfile`` package reads
the same format but views tensors with ``as_strided`` over storages it never checks, so a damaged file reads
outside them.)
"""

from __future__ import annotations

import dataclasses
import struct
import numpy as np

from ..errors import InputError

NIL, NUMBER, STRING, TABLE, TORCH, BOOLEAN = 0, 1, 2, 3, 4, 5
FUNCTIONS = (6, 7, 8)
_STORAGE_DTYPES = {"Double": "<f8", "Float": "<f4", "Half": "<f2", "Long": "<i8", "Int": "<i4", "Short": "<i2",
                   "Char": "i1", "Byte": "u1"}
MAX_DEPTH = 200


class T7Error(InputError):
    """A Torch7 file is truncated, damaged, or holds something this reader does not read."""


@dataclasses.dataclass(eq=False)
class TorchObject:
    """An instance of a Torch class other than tensors and storages (an nn module): its class and fields."""

    classname: str
    fields: object


def is_t7(head: bytes) -> bool:
    """A binary Torch7 file starts with the tag of a table or a torch object and reference index 1."""
    tag, index = head[:4], head[4:8]
    return len(head) >= 8 and tag in (b"\x03\x00\x00\x00", b"\x04\x00\x00\x00") and index == b"\x01\x00\x00\x00"


class _Reader:
    def __init__(self, path: str, data: bytes):
        self.path, self.data, self.pos, self.refs = path, memoryview(data), 0, {}

    def fail(self, problem: str):
        raise T7Error(self.path, f"damaged Torch7 file at byte {self.pos}: {problem}", "download the file again")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            self.fail(f"needs {n} more bytes, the file has {len(self.data) - self.pos} (truncated?)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def string(self) -> str:
        (n,) = self.unpack("<i")
        return bytes(self.take(n)).decode("utf-8", errors="replace")

    def obj(self, depth: int = 0):
        if depth > MAX_DEPTH:
            self.fail("objects nested too deeply")
        (tag,) = self.unpack("<i")
        if tag == NIL:
            return None
        if tag == NUMBER:
            return self.unpack("<d")[0]
        if tag == BOOLEAN:
            return self.unpack("<i")[0] == 1
        if tag == STRING:
            return self.string()
        if tag in FUNCTIONS:
            raise T7Error(self.path, "holds a Lua function, which is never loaded", "pass a saved network")
        if tag not in (TABLE, TORCH):
            self.fail(f"unknown type tag {tag}")
        (index,) = self.unpack("<i")
        if index in self.refs:
            return self.refs[index]
        return self.table(index, depth) if tag == TABLE else self.torch(index, depth)

    def table(self, index: int, depth: int) -> dict:
        out: dict = {}
        self.refs[index] = out
        (n,) = self.unpack("<i")
        if n < 0:
            self.fail(f"table of {n} entries")
        for _ in range(n):
            key = self.obj(depth + 1)
            key = int(key) if isinstance(key, float) and key.is_integer() else key
            if not isinstance(key, (str, int, float, bool)):
                self.fail("a table key that is not a number or string")
            out[key] = self.obj(depth + 1)
        return out

    def torch(self, index: int, depth: int):
        version = self.string()
        classname = self.string() if version.startswith("V ") else version  # files before versioning: no "V n"
        kind = classname.removeprefix("torch.").removeprefix("Cuda")
        if classname.startswith("torch.") and kind.endswith("Storage"):
            out = self.storage(classname, kind.removesuffix("Storage") or "Float")
        elif classname.startswith("torch.") and kind.endswith("Tensor"):
            out = self.tensor(depth)
        else:
            out = TorchObject(classname, None)
            self.refs[index] = out  # before the fields: a module may refer to itself
            out.fields = self.obj(depth + 1)
        self.refs[index] = out
        return out

    def storage(self, classname: str, kind: str) -> np.ndarray:
        if kind not in _STORAGE_DTYPES:
            self.fail(f"unsupported storage class {classname}")
        (n,) = self.unpack("<q")
        dtype = np.dtype(_STORAGE_DTYPES[kind])
        if n < 0 or n * dtype.itemsize > len(self.data) - self.pos:
            self.fail(f"{classname} of {n} elements, more than the file holds (truncated?)")
        return np.frombuffer(self.take(n * dtype.itemsize), dtype).copy()

    def tensor(self, depth: int) -> np.ndarray:
        (ndim,) = self.unpack("<i")
        if not 0 <= ndim <= 8:
            self.fail(f"tensor with {ndim} dimensions")
        sizes, strides = self.unpack(f"<{ndim}q"), self.unpack(f"<{ndim}q")
        (offset,) = self.unpack("<q")
        storage = self.obj(depth + 1)
        if ndim == 0 or storage is None or 0 in sizes:
            return np.zeros(sizes if ndim and storage is not None else (0,), np.float32)
        if not isinstance(storage, np.ndarray) or min(sizes) < 0 or min(strides) < 0 or offset < 1:
            self.fail("tensor with a negative size/stride or without a storage")
        last = offset - 1 + sum((s - 1) * st for s, st in zip(sizes, strides))
        if last >= len(storage):
            self.fail(f"tensor of size {list(sizes)} reaches element {last} of a storage of {len(storage)}")
        index = offset - 1 + sum(np.arange(s).reshape((-1,) + (1,) * (ndim - 1 - i)) * st
                                 for i, (s, st) in enumerate(zip(sizes, strides)))
        return storage[index]


def load_t7(path: str):
    """The object stored in the binary Torch7 file ``path``: dicts for tables, numpy arrays for tensors,
    :class:`TorchObject` for other classes. Raises :class:`T7Error` (one line) when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise T7Error(path, f"cannot read ({e.strerror})", "check the path and permissions") from None
    reader = _Reader(path, data)
    out = reader.obj()
    if reader.pos != len(data):
        reader.fail(f"{len(data) - reader.pos} bytes after the end of the stored object")
    return out
