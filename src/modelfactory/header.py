"""Reading a safetensors header ourselves, with every size checked before it is trusted.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes
of JSON (tensor name -> dtype, shape, byte offsets; plus ``__metadata__``), then
the tensor bytes. Reading the header this way lets ``inspect`` list a file
without touching tensor data, and lets ``load`` reject a hostile file (absurd
lengths, truncation, overlapping or out-of-range offsets) with a clear error
before anything is allocated from the numbers it claims.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError

__all__ = ["TensorEntry", "SafetensorsHeader", "read_header", "DTYPES", "MAX_HEADER_BYTES"]

# The safetensors library's own limit on the JSON header; a larger claim is hostile or corrupt.
MAX_HEADER_BYTES = 100_000_000

# Each dtype code safetensors writes: (bytes per element, torch dtype name).
DTYPES: dict[str, tuple[int, str]] = {
    "BOOL": (1, "bool"),
    "U8": (1, "uint8"),
    "I8": (1, "int8"),
    "F8_E5M2": (1, "float8_e5m2"),
    "F8_E4M3": (1, "float8_e4m3fn"),
    "F8_E5M2FNUZ": (1, "float8_e5m2fnuz"),
    "F8_E4M3FNUZ": (1, "float8_e4m3fnuz"),
    "I16": (2, "int16"),
    "U16": (2, "uint16"),
    "F16": (2, "float16"),
    "BF16": (2, "bfloat16"),
    "I32": (4, "int32"),
    "U32": (4, "uint32"),
    "F32": (4, "float32"),
    "I64": (8, "int64"),
    "U64": (8, "uint64"),
    "F64": (8, "float64"),
    "C64": (8, "complex64"),
}

_HINT = "It may be truncated or corrupted: re-save it from the original model."


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # byte offsets into the data section
    end: int

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def torch_dtype(self) -> str:
        """The dtype's name in torch (``float32`` for ``F32``)."""
        return DTYPES[self.dtype][1]


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked safetensors header: tensors in file order, and the string metadata."""

    path: Path
    file_size: int
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]


def _bad(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"'{path}' is not a readable safetensors file: {what}. {_HINT}")


def read_header(path: str | Path) -> SafetensorsHeader:
    """Read and check the header of a safetensors file; read no tensor data.

    Raises :class:`CheckpointError` for a missing file, a header length larger
    than the file (or than :data:`MAX_HEADER_BYTES`), a header that is not a
    JSON object, a malformed entry, or tensor bytes that are out of range,
    overlapping, of the wrong size or not covering the data section exactly.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}': the file does not exist")
    try:
        with open(path, "rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise _bad(path, f"it is {file_size} bytes, too short for a header")
            (length,) = struct.unpack("<Q", prefix)
            # Checked before reading: a hostile length must not become an allocation.
            if length > MAX_HEADER_BYTES or length > file_size - 8:
                raise _bad(
                    path,
                    f"the header claims {length} bytes but the file has {file_size - 8} after "
                    f"the length field (limit {MAX_HEADER_BYTES})",
                )
            raw = handle.read(length)
    except OSError as err:
        raise CheckpointError(f"could not read '{path}': {err.strerror or err}") from err
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _bad(path, f"the header is not UTF-8 JSON ({err})") from None
    if not isinstance(header, dict):
        raise _bad(path, f"the header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _bad(path, "'__metadata__' must map strings to strings")
    data_size = file_size - 8 - length
    tensors = {name: _entry(path, name, value) for name, value in header.items()}
    _check_layout(path, tensors, data_size)
    return SafetensorsHeader(path, file_size, tensors, dict(metadata))


def _entry(path: Path, name: str, value: object) -> TensorEntry:
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise _bad(path, f"tensor {name!r}: expected keys dtype, shape, data_offsets")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if dtype not in DTYPES:
        raise _bad(path, f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise _bad(path, f"tensor {name!r}: shape must be a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise _bad(path, f"tensor {name!r}: data_offsets must be two ordered byte offsets")
    entry = TensorEntry(name, dtype, tuple(shape), offsets[0], offsets[1])
    if entry.numel * DTYPES[dtype][0] != entry.end - entry.start:
        raise _bad(
            path,
            f"tensor {name!r}: shape {list(shape)} of {dtype} needs "
            f"{entry.numel * DTYPES[dtype][0]} bytes, the offsets span {entry.end - entry.start}",
        )
    return entry


def _check_layout(path: Path, tensors: dict[str, TensorEntry], data_size: int) -> None:
    """Tensors must tile the data section exactly: no gap, no overlap, nothing past the end."""
    position = 0
    for entry in sorted(tensors.values(), key=lambda e: (e.start, e.end)):
        if entry.start != position:
            raise _bad(
                path,
                f"tensor {entry.name!r} starts at byte {entry.start} of the data, expected "
                f"{position} (overlapping or missing bytes)",
            )
        position = entry.end
    if position != data_size:
        raise _bad(
            path,
            f"the tensors need {position} bytes of data but the file holds {data_size}"
            + (" (truncated)" if position > data_size else ""),
        )
