"""Open a GGUF file: metadata, the tensor index, and tensor bytes (memory-mapped, or read).

No torch here, so `tokenize` and `info` start fast. Every length in the header is
checked against the bytes that remain: a corrupt or hostile file fails with one clear
error instead of a huge allocation, a long loop or a traceback.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from llamatp.errors import LlamatpError

GGUF_MAGIC = b"GGUF"
DIRECT_IO_ALIGN = 4096  # O_DIRECT reads start, end and land on boundaries of this many bytes
DIRECT_IO_CHUNK = 1 << 30  # Linux reads at most about 2 GiB a call
MAX_DIMS = 4

# Smallest encoding of each metadata value type, in bytes (strings: the u64 length).
_NUMPY_TYPES = {
    GGUFValueType.UINT8: np.dtype("<u1"), GGUFValueType.INT8: np.dtype("<i1"), GGUFValueType.BOOL: np.dtype("?"),
    GGUFValueType.UINT16: np.dtype("<u2"), GGUFValueType.INT16: np.dtype("<i2"),
    GGUFValueType.UINT32: np.dtype("<u4"), GGUFValueType.INT32: np.dtype("<i4"),
    GGUFValueType.FLOAT32: np.dtype("<f4"), GGUFValueType.UINT64: np.dtype("<u8"),
    GGUFValueType.INT64: np.dtype("<i8"), GGUFValueType.FLOAT64: np.dtype("<f8"),
}
_SCALAR_SIZES = {vtype: dtype.itemsize for vtype, dtype in _NUMPY_TYPES.items()}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in the file. `shape` is torch order: (rows, cols)."""

    name: str
    qtype: GGMLQuantizationType
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape))

    @property
    def row_bytes(self) -> int:
        block, size = GGML_QUANT_SIZES[self.qtype]
        return self.shape[-1] // block * size


Access = Literal["mmap", "read", "direct"]
# How each of llama.cpp's load modes (-lm) reads the file; the mlock modes also lock a CPU
# worker's weights in RAM (`runtime.lock_in_ram`).
LOAD_MODE_ACCESS: dict[str, Access] = {"none": "read", "mmap": "mmap", "mlock": "read", "mmap+mlock": "mmap",
                                       "dio": "direct"}


class GGUFFile:
    """A validated GGUF file. Its header is read through a memory map; tensor bytes come from
    the map (`access="mmap"`), or, each tensor's rows as they are asked for and no map kept,
    from plain reads ("read", llama.cpp's load mode none) or reads that bypass the page cache
    ("direct", load mode dio; plain reads where the file system refuses O_DIRECT, with a warning)."""

    def __init__(self, path: str | Path, access: Access = "mmap") -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise LlamatpError(f"model file {self.path} is a directory")
        if not self.path.is_file():
            raise LlamatpError(f"model file not found: {self.path}")
        try:
            self._data = np.memmap(self.path, mode="r")
        except (OSError, ValueError) as e:
            raise LlamatpError(f"cannot read {self.path}: {e}") from None
        header = _HeaderParser(self._data, self.path)
        header.run()
        self.metadata: dict[str, Any] = header.metadata
        self.tensors: dict[str, TensorInfo] = {t.name: t for t in header.tensors}
        self.access = access
        if access == "direct" and not _direct_io_works(self.path):
            print(f"warning: {self.path}: the file system refuses direct I/O; reading through the page cache",
                  file=sys.stderr)
            self.access = "read"
        if self.access != "mmap":
            del self._data

    @property
    def architecture(self) -> str:
        return self.string("general.architecture")

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    # Typed metadata: a value of the wrong type or out of range fails with one line naming the key.

    def integer(self, key: str, default: int | None = None, *, positive: bool = True, layers: int = 0) -> int:
        """A positive (or else non-negative) integer. With `layers`, an array of one value per layer
        is read too, as llama.cpp reads head counts and FFN sizes; its values must all be the same here."""
        value = self._value(key, default)
        if layers and isinstance(value, list) and len(value) == layers:
            if len(set(value)) > 1:
                raise self._bad(key, "the same value for every layer", value)
            value = value[0]
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if positive else 0):
            expected = "a positive integer" if positive else "a non-negative integer"
            raise self._bad(key, expected + (f" or an array of {layers}, one per layer" if layers else ""), value)
        return value

    def number(self, key: str, default: float | None = None) -> float:
        """A positive, finite number; integers are read as numbers too."""
        value = self._value(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise self._bad(key, "a positive number", value)
        return float(value)

    def string(self, key: str, default: str | None = None) -> str:
        value = self._value(key, default)
        if not isinstance(value, str):
            raise self._bad(key, "a string", value)
        return value

    def _value(self, key: str, default: Any) -> Any:
        value = self.metadata.get(key, default)
        if value is None:
            raise LlamatpError(f"{self.path} lacks metadata key '{key}'")
        return value

    def _bad(self, key: str, expected: str, value: Any) -> LlamatpError:
        shown = repr(value)
        if len(shown) > 60:  # a long array or string would swamp the line
            shown = shown[:57] + "..."
        return LlamatpError(f"{self.path}: metadata {key}: expected {expected}, got {shown}")

    def tensor(self, name: str) -> TensorInfo:
        info = self.tensors.get(name)
        if info is None:
            raise LlamatpError(f"{self.path} lacks tensor '{name}'")
        return info

    def raw(self, name: str, rows: range | None = None) -> np.ndarray:
        """The tensor's bytes, of shape (rows, row_bytes): all its rows, or `rows`. Read-only
        where memory-mapped."""
        info = self.tensor(name)
        rows = rows if rows is not None else range(info.n_elements // info.shape[-1])
        start, stop = info.offset + rows.start * info.row_bytes, info.offset + rows.stop * info.row_bytes
        if self.access == "mmap":
            return self._data[start:stop].reshape(len(rows), info.row_bytes)
        try:
            data = _read_direct(self.path, start, stop) if self.access == "direct" else \
                np.fromfile(self.path, dtype=np.uint8, count=stop - start, offset=start)
        except OSError as e:
            raise LlamatpError(f"cannot read {self.path}: {e.strerror or e}") from None
        if data.size != stop - start:
            raise LlamatpError(f"{self.path} ended while reading tensor '{name}' (truncated or changed?)")
        return data.reshape(len(rows), info.row_bytes)


def _direct_io_works(path: Path) -> bool:
    if not hasattr(os, "O_DIRECT"):
        return False
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
    except OSError:
        return False
    return True


def _read_direct(path: Path, start: int, stop: int) -> np.ndarray:
    """Bytes [start, stop) read with O_DIRECT into page-aligned memory (as many as there are)."""
    first, last = start // DIRECT_IO_ALIGN * DIRECT_IO_ALIGN, -(-stop // DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN
    buffer = mmap.mmap(-1, last - first)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        done = 0
        while done < last - first:
            want = min(DIRECT_IO_CHUNK, last - first - done)
            got = os.preadv(fd, [memoryview(buffer)[done : done + want]], first + done)
            done += got
            if got < want:  # the end of the file (the next offset would not be aligned)
                break
    finally:
        os.close(fd)
    return np.frombuffer(buffer, dtype=np.uint8)[start - first : min(stop, first + done) - first]


class _HeaderParser:
    """Reads the header with every length checked against the bytes that remain.

    gguf.GGUFReader builds a numpy array per metadata item, which takes seconds on a
    128k-token vocabulary and trusts the lengths it reads; this parser does neither.
    """

    def __init__(self, data: np.ndarray, path: Path) -> None:
        self.data = memoryview(data)
        self.size = len(data)
        self.path = path
        self.pos = 0
        self.metadata: dict[str, Any] = {}
        self.tensors: list[TensorInfo] = []

    def fail(self, why: str) -> LlamatpError:
        return LlamatpError(f"{self.path} is not a valid GGUF file: {why}")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"header ends early (at byte {self.pos} of {self.size})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return str(self.take(self.u64()), "utf-8", errors="replace")

    def run(self) -> None:
        if bytes(self.take(4)) != GGUF_MAGIC:
            raise self.fail("bad magic (expected 'GGUF')")
        version = self.u32()
        if version not in (2, 3):
            raise self.fail(f"unsupported GGUF version {version}")
        n_tensors, n_kv = self.u64(), self.u64()
        remaining = self.size - self.pos
        if n_kv * 13 > remaining or n_tensors * 24 > remaining:
            raise self.fail(f"counts ({n_kv} metadata keys, {n_tensors} tensors) exceed the file size")
        for _ in range(n_kv):
            key = self.string()
            self.metadata[key] = self.value(self.u32())
        alignment = self.metadata.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise self.fail(f"general.alignment must be a power of two, got {alignment!r}")
        infos = [self.tensor_info() for _ in range(n_tensors)]
        data_start = -(-self.pos // alignment) * alignment
        names: set[str] = set()
        for name, qtype, shape, offset in infos:
            if name in names:
                raise self.fail(f"tensor {name!r} appears twice")
            names.add(name)
            if offset % alignment:
                raise self.fail(f"tensor {name!r} is not aligned to {alignment} bytes")
            block, size = GGML_QUANT_SIZES[qtype]
            nbytes = int(np.prod(shape, dtype=object)) // block * size
            if data_start + offset + nbytes > self.size:
                raise self.fail(f"tensor {name!r} data runs past the end of the file (truncated download?)")
            self.tensors.append(TensorInfo(name, qtype, shape, data_start + offset, nbytes))

    def value(self, vtype: int) -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            item_type, count = self.u32(), self.u64()
            if item_type == GGUFValueType.ARRAY:
                raise self.fail("nested metadata arrays are not supported")
            least = 8 if item_type == GGUFValueType.STRING else _SCALAR_SIZES.get(item_type, 1)
            if count * least > self.size - self.pos:
                raise self.fail(f"a metadata array of {count} items exceeds the file size")
            if item_type in _NUMPY_TYPES:
                dtype = _NUMPY_TYPES[item_type]
                return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype).tolist()
            return [self.value(item_type) for _ in range(count)]
        dtype = _NUMPY_TYPES.get(vtype)
        if dtype is None:
            raise self.fail(f"unknown metadata value type {vtype}")
        return np.frombuffer(self.take(dtype.itemsize), dtype=dtype)[0].item()

    def tensor_info(self) -> tuple[str, GGMLQuantizationType, tuple[int, ...], int]:
        name = self.string()
        n_dims = self.u32()
        if not 1 <= n_dims <= MAX_DIMS:
            raise self.fail(f"tensor {name!r} has {n_dims} dimensions")
        dims = [self.u64() for _ in range(n_dims)]
        raw_type = self.u32()
        offset = self.u64()
        try:
            qtype = GGMLQuantizationType(raw_type)
            block, _ = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise self.fail(f"tensor {name!r} has unknown type id {raw_type}") from None
        if dims[0] % block:
            raise self.fail(f"tensor {name!r} row of {dims[0]} is not a whole number of {qtype.name} blocks")
        if 0 in dims:
            raise self.fail(f"tensor {name!r} has an empty dimension")
        while len(dims) > 2 and dims[-1] == 1:
            dims.pop()
        return name, qtype, tuple(reversed(dims)), offset
