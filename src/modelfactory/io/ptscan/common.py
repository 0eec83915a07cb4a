"""Shared pieces of the ``.pt`` scanner: budgets, storage element sizes, the refusal type."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import NoReturn

KIB = 1024
MIB = 1024 * KIB

DEFAULT_MAX_PICKLE_BYTES = 64 * MIB
DEFAULT_MAX_OPCODES = 2_000_000
DEFAULT_MAX_DEPTH = 100
DEFAULT_MAX_MEMBERS = 100_000
DEFAULT_MAX_RATIO = 100
# Everything that is neither data.pkl nor a storage (version, byteorder, ...)
# is a few bytes in a real file; together they may declare at most this.
OTHER_MEMBERS_BUDGET = 1 * MIB
# zipfile reads the whole central directory into memory: bound it first.
MAX_CENTRAL_DIRECTORY_BYTES = 32 * MIB

# Legacy typed storage classes (torch.FloatStorage, ...) and their element
# sizes; torch writes these for the classic dtypes. Newer dtypes (float8,
# uint16, ...) are saved as torch.storage.UntypedStorage with numel in bytes.
ELEMENT_SIZES: dict[str, int] = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "BFloat16Storage": 2,
    "ComplexDoubleStorage": 16,
    "ComplexFloatStorage": 8,
    "QInt8Storage": 1,
    "QInt32Storage": 4,
    "QUInt8Storage": 1,
    "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
}
_TYPED_MODULES = frozenset({"torch", "torch.cuda"})
_UNTYPED_MODULES = frozenset({"torch", "torch.storage"})

_ZIP_MAGIC = b"PK\x03\x04"
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory, 22 bytes
_EOCD_SIG = b"PK\x05\x06"
_Z64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes
_Z64_LOCATOR_SIG = b"PK\x06\x07"
_Z64_EOCD = struct.Struct("<4sQ2H2L4Q")  # 56 bytes
_Z64_EOCD_SIG = b"PK\x06\x06"
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # 30 bytes
_MAX_COMMENT = 65535
_INT64_MAX = 2**63 - 1


def short(value: object, limit: int = 80) -> str:
    """``repr`` of untrusted text, cut to about ``limit`` characters."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return repr(value[:limit]) + "..."
    text = repr(value)
    return text if len(text) <= limit + 2 else text[: limit + 2] + "..."


@dataclass
class ScanStats:
    """What a successful scan measured (for tests, logs and tuning budgets)."""

    members: int = 0
    pickle_bytes: int = 0
    opcodes: int = 0
    max_depth: int = 0
    max_marks: int = 0
    storages: dict[str, int] = field(default_factory=dict)

    @property
    def storage_bytes(self) -> int:
        """Total bytes of all distinct storages the pickle declares."""
        return sum(self.storages.values())


class Refuse(Exception):
    """Internal: a finding, turned into a CheckpointError with the path added."""

    def __init__(self, finding: str, remedy: str) -> None:
        super().__init__(finding)
        self.finding = finding
        self.remedy = remedy


def refuse(finding: str, remedy: str) -> NoReturn:
    raise Refuse(finding, remedy)


RAISE_LIMIT = "If you trust this file and need it, raise the limit passed to scan_torch_file."
RESAVE = "Re-save the weights with torch.save(model.state_dict(), path) from a trusted source."
