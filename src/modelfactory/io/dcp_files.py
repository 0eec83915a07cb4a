"""The files of a DCP checkpoint directory: DCP's ``.metadata`` read without running pickle code, and our JSON.

A checkpoint directory holds what ``torch.distributed.checkpoint`` writes
(``__<rank>_<n>.distcp`` data files and ``.metadata``, the index, last) and
``modelfactory.json``: the architecture and build facts a single-file
checkpoint carries in its header, plus the ``save_id`` of the DCP save it
belongs to. A directory is complete only if ``.metadata`` exists and its
``save_id`` equals the JSON's.

DCP reads ``.metadata`` with plain ``pickle.load``, which runs whatever a
crafted file names. Here it is unpickled with an allow-list of the classes DCP
metadata is made of (``torch.distributed.checkpoint.metadata``, ``torch.Size``,
dtypes, layouts, paths); anything else is a :class:`CheckpointError`. Tensor data
is read by DCP itself with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata

from ..errors import CheckpointError
from ..safety.json_bounded import loads_bounded
from ..safety.read import read_bounded
from ..spec.model import ModelSpec
from .atomic import _fsync_dir, atomic_path
from .checkpoint import MAX_METADATA_BYTES, META_PREFIX, stored_from_metadata

__all__ = [
    "RECORD",
    "RECORD_FORMAT",
    "DcpCheckpoint",
    "SafeReader",
    "read_dcp",
    "read_dcp_metadata",
    "write_record",
    "fsync_dir",
]

RECORD = "modelfactory.json"
RECORD_FORMAT = "modelfactory-dcp/1"
DCP_METADATA = ".metadata"
MAX_DCP_METADATA_BYTES = 1 << 30  # the index of a checkpoint of thousands of ranks stays far below

_DTYPES = {n for n in dir(torch) if isinstance(getattr(torch, n, None), torch.dtype)}
_ALLOWED: dict[str, set[str]] = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "TensorProperties",
        "MetadataIndex",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch": {"Size"} | _DTYPES,
    "torch.serialization": {"_get_layout"},
    "pathlib": {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"'{module}.{name}' is not part of DCP metadata")


def read_dcp_metadata(directory: str | Path) -> Metadata:
    """DCP's ``.metadata`` of ``directory``, unpickled with the allow-list (no code runs)."""
    path = Path(directory) / DCP_METADATA
    if not path.exists():
        raise CheckpointError(
            f"load: '{directory}' has no {DCP_METADATA}: the DCP save did not finish (DCP writes it "
            "last, after every rank's data), or this is not a DCP checkpoint directory. "
            "Re-save it, or load an earlier checkpoint."
        )
    data = read_bounded(
        path, limit=MAX_DCP_METADATA_BYTES, what="DCP metadata", error=CheckpointError
    )
    try:
        metadata = _MetadataUnpickler(io.BytesIO(data)).load()
    except Exception as err:  # any malformed pickle: refused, never executed
        raise CheckpointError(
            f"load: '{path}' is not DCP metadata modelfactory reads ({type(err).__name__}: "
            f"{str(err)[:200]}). Only checkpoints written by torch.distributed.checkpoint are read; "
            "re-save it from the original model."
        ) from None
    if not isinstance(metadata, Metadata):
        raise CheckpointError(
            f"load: '{path}' holds a {type(metadata).__name__}, not DCP metadata; re-save it."
        )
    return metadata


class SafeReader(FileSystemReader):
    """DCP's file reader, with ``.metadata`` read through the allow-list."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        if kwargs.get("rank") is not None:  # the per-rank layout of use_collectives=False saves
            raise FileNotFoundError("modelfactory reads the global .metadata only")
        metadata = read_dcp_metadata(Path(str(self.path)))
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


@dataclass(frozen=True)
class DcpCheckpoint:
    """A complete, checked DCP checkpoint directory; no tensor data read."""

    path: Path
    spec: ModelSpec
    seed: int
    ties: list[list[str]]
    metadata: dict[str, str]  # the modelfactory.* keys, as in a single-file checkpoint
    save_id: str
    world_size: int  # of the save
    index: Metadata  # DCP's

    def layout(self) -> tuple[dict[str, tuple[int, ...]], dict[str, str], list[str]]:
        """Stored shapes and dtype names by key, and the keys that are not tensors."""
        shapes, dtypes, other = {}, {}, []
        for key, entry in self.index.state_dict_metadata.items():
            if isinstance(entry, TensorStorageMetadata):
                shapes[key] = tuple(entry.size)
                dtypes[key] = str(entry.properties.dtype).removeprefix("torch.")
            else:
                other.append(key)
        return shapes, dtypes, other


def _record(path: Path) -> dict[str, Any]:
    file = path / RECORD
    if not file.exists():
        raise CheckpointError(
            f"load: '{path}' has no {RECORD}: it was not written by modelfactory's save_dcp, or the "
            "save stopped after DCP finished and before the record was written. Re-save it."
        )
    raw = read_bounded(
        file, limit=MAX_METADATA_BYTES + 65536, what="DCP record", error=CheckpointError
    )
    data = loads_bounded(
        raw,
        max_bytes=MAX_METADATA_BYTES + 65536,
        max_depth=4,
        what=str(file),
        error=CheckpointError,
    )
    ok = (
        isinstance(data, dict)
        and data.get("format") == RECORD_FORMAT
        and isinstance(data.get("save_id"), str)
        and isinstance(data.get("world_size"), int)
        and isinstance(data.get("metadata"), dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in data["metadata"].items())
    )
    if not ok:
        raise CheckpointError(
            f"load: '{file}' is not a {RECORD_FORMAT} record (format, save_id, world_size and "
            "string metadata expected); it was edited or written by another version. Re-save it."
        )
    return data


def read_dcp(path: str | Path) -> DcpCheckpoint:
    """Check that ``path`` is a complete modelfactory DCP checkpoint and read what it says.

    Complete: ``.metadata`` exists and its ``save_id`` equals the record's, so
    the record and the data come from the same save. The architecture is
    validated like any model file (see :func:`read_checkpoint`).
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"load: '{path}' is not a directory; a DCP checkpoint is a directory written by "
            "save_dcp. For a .safetensors file use modelfactory.load."
        )
    data = _record(path)
    index = read_dcp_metadata(path)
    saved = getattr(getattr(index, "storage_meta", None), "save_id", None)
    if saved != data["save_id"]:
        raise CheckpointError(
            f"load: '{path}': {DCP_METADATA} belongs to save {saved!r} but {RECORD} to save "
            f"{data['save_id']!r}: the directory was written again after the record (a save into "
            "an existing directory), so its data files may mix two saves. Save into a fresh "
            "directory and load that."
        )
    metadata = {k: v for k, v in data["metadata"].items() if k.startswith(META_PREFIX)}
    spec, seed, ties = stored_from_metadata(metadata, path)
    return DcpCheckpoint(
        path, spec, seed, ties, metadata, data["save_id"], data["world_size"], index
    )


def write_record(directory: Path, metadata: dict[str, str], save_id: str, world: int) -> None:
    """Write ``modelfactory.json`` into ``directory`` atomically (temp file, fsync, rename)."""
    record = {
        "format": RECORD_FORMAT,
        "save_id": save_id,
        "world_size": world,
        "metadata": metadata,
    }
    with atomic_path(directory / RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make the directory's entries (renames into it) durable."""
    _fsync_dir(Path(directory))
