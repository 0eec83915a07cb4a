"""Checkpoints: safetensors weights plus the resolved architecture and run facts as metadata.

A checkpoint rebuilds its model with no code and no YAML beside it, and
opening one never executes anything: safetensors holds only tensors, and the
metadata is JSON validated like any other model spec. Writes are atomic.
The format and its metadata keys are described in ``docs/checkpoints.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..builder.construct import BuildInfo
from ..errors import CheckpointError, ModelFactoryError
from ..safety.json_bounded import loads_bounded
from ..sharing import tensor_groups, unique_state
from ..spec.model import ModelSpec
from ..spec.validate import check_data_shape, refuse_interpolation, validate_data
from ..spec.yaml_reader import MAX_BYTES, MAX_DEPTH
from .atomic import atomic_path
from .safetensors_file import SafetensorsHeader, read_header, read_into, write_safetensors
from .suffixes import CHECKSUM_KEY

__all__ = [
    "save",
    "read_checkpoint",
    "read_metadata",
    "check_ties",
    "verify_checksum",
    "check_tie_groups",
    "stored_from_metadata",
    "build_metadata",
    "fingerprint",
    "StoredModel",
    "FORMAT_VERSION",
    "META_PREFIX",
]

FORMAT_VERSION = "1"
# A stored spec is JSON of the validated model: as deep as the data limit allows
# (each YAML level is at most two JSON levels), and never larger than a model file.
MAX_METADATA_DEPTH = 2 * MAX_DEPTH + 8
MAX_METADATA_BYTES = 4 * MAX_BYTES
META_PREFIX = "modelfactory."


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data, equal text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# Labels, not architecture: renaming a model keeps its fingerprint.
_LABELS = ("name", "description")


def _fingerprint_data(data: dict[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k not in _LABELS}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode()).hexdigest()


def fingerprint(spec: ModelSpec) -> str:
    """Hash of the canonical resolved architecture (not its labels).

    Computed from the validated spec with defaults filled in and keys sorted, so
    the same architecture written with another key order, other comments or
    defaults spelled out gets the same fingerprint.
    """
    return _fingerprint_data(spec.model_dump(mode="json"))


def tie_map(model: nn.Module) -> list[list[str]]:
    """The groups of state_dict names that are one tensor (shared modules, tied parameters)."""
    return sorted(sorted(group) for group in tensor_groups(model) if len(group) > 1)


def _jsonable(value: Any) -> Any:
    # Init rules may be a pydantic model or plain data; both become JSON.
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("modelfactory")
    except PackageNotFoundError:  # running from a source tree
        ours = "unknown"
    return {"modelfactory": ours, "torch": torch.__version__}


def build_metadata(info: BuildInfo, ties: list[list[str]]) -> dict[str, str]:
    """The string-to-string metadata stored in the safetensors header."""
    meta = {
        "format": FORMAT_VERSION,
        # Not key-sorted: the order of children is the order of modules and parameters.
        "spec": json.dumps(info.spec.model_dump(mode="json"), separators=(",", ":")),
        "fingerprint": fingerprint(info.spec),
        "ties": canonical_json(ties),
        "seed": str(info.seed),
        "device": info.device,
        "versions": canonical_json(_versions()),
    }
    if info.init is not None:
        meta["init"] = canonical_json(_jsonable(info.init))
    if info.facts:
        meta["facts"] = canonical_json(_jsonable(info.facts))
    return {META_PREFIX + k: v for k, v in meta.items()}


def save(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically as safetensors, shared tensors stored once.

    The model must come from :func:`modelfactory.build`: its resolved
    architecture, tie map, seed, init rules, build device, versions and
    fingerprint go into the metadata so :func:`modelfactory.load` can rebuild
    it from the file alone.
    """
    info = getattr(model, "modelfactory_info", None)
    if not isinstance(info, BuildInfo):
        raise CheckpointError(
            f"save: {type(model).__name__} was not built by modelfactory.build, so its architecture "
            "is unknown. Build it with modelfactory.build, or save its state_dict with "
            "modelfactory.save_tensors or modelfactory.save_state_dict."
        )
    if _has_dtensors(model):
        raise CheckpointError(
            f"save: {type(model).__name__} is sharded (FSDP), so no process holds all of it. Save it "
            "with modelfactory.io.dcp.save_dcp (called on every rank), then convert the directory "
            "with modelfactory.io.dcp.dcp_to_safetensors if one file is needed."
        )
    path = Path(path)
    metadata = build_metadata(info, tie_map(model))
    try:
        with atomic_path(path) as tmp:
            # each shared or tied tensor once, under its first name; the tie map in
            # the metadata says which other names it stands for
            write_safetensors(tmp, unique_state(model), metadata, checksum_key=CHECKSUM_KEY)
    except OSError as err:
        raise CheckpointError(f"save: could not write '{path}': {err.strerror or err}") from err
    return path


def _has_dtensors(model: nn.Module) -> bool:
    # No DTensor can exist before torch.distributed.tensor is imported: do not import it here.
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and any(isinstance(p, module.DTensor) for p in model.parameters())


@dataclass(frozen=True)
class StoredModel:
    """What a checkpoint says about its model, checked; no tensor data read."""

    header: SafetensorsHeader
    spec: ModelSpec
    seed: int
    ties: list[list[str]]
    metadata: dict[str, str]


def read_metadata(path: str | Path) -> dict[str, str]:
    """The header metadata of a safetensors file, without reading any tensor."""
    return read_header(path).metadata


def _meta_json(metadata: dict[str, str], key: str, path: Path) -> Any:
    # bounded depth and integer size: a stored spec nested 100,000 deep, or a
    # 5,000-digit number, is a clean error rather than a RecursionError
    try:
        return loads_bounded(
            metadata[META_PREFIX + key],
            max_bytes=MAX_METADATA_BYTES,
            max_depth=MAX_METADATA_DEPTH,
            what="the text",
            allow_duplicate_keys=True,
            error=CheckpointError,
        )
    except CheckpointError as err:
        raise CheckpointError(
            f"load: '{path}': metadata '{META_PREFIX}{key}' is not valid JSON ({err}). "
            "The file was edited or corrupted; re-save it from the original model."
        ) from None


def read_checkpoint(path: str | Path) -> StoredModel:
    """Read and check everything a checkpoint says about its model; build nothing.

    Checks the safetensors header (sizes, offsets), the format version, the
    architecture (validated like any model file), that the fingerprint matches
    it, the seed and the tie map.
    """
    path = Path(path)
    header = read_header(path)
    spec, seed, ties = stored_from_metadata(header.metadata, path)
    return StoredModel(header, spec, seed, ties, header.metadata)


def stored_from_metadata(
    metadata: dict[str, str], path: str | Path
) -> tuple[ModelSpec, int, list[list[str]]]:
    """Check the ``modelfactory.*`` metadata of a checkpoint; return its spec, seed and tie map.

    The same checks for a safetensors header and for the JSON beside a DCP
    checkpoint (:mod:`modelfactory.io.dcp`).
    """
    path = Path(path)
    if META_PREFIX + "spec" not in metadata:
        raise CheckpointError(
            f"load: '{path}' has no modelfactory architecture in its metadata; it was not written by "
            "modelfactory.save. Build the model yourself and load the weights with "
            "modelfactory.load_weights, or read the tensors with modelfactory.load_tensors."
        )
    version = metadata.get(META_PREFIX + "format")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"load: '{path}' is in checkpoint format {version!r}; this modelfactory reads format "
            f"{FORMAT_VERSION!r}. Load it with the modelfactory version that wrote it."
        )
    data = _meta_json(metadata, "spec", path)
    spec = spec_from_data(data, path)
    stored_print = metadata.get(META_PREFIX + "fingerprint")
    if isinstance(data, dict) and stored_print != _fingerprint_data(data):
        raise CheckpointError(
            f"load: '{path}': the stored fingerprint {stored_print!r} does not match the stored "
            "architecture; the metadata was edited or corrupted. Re-save it from the original model."
        )
    seed_text = metadata.get(META_PREFIX + "seed", "0")
    if re.fullmatch(r"[0-9]{1,19}", seed_text) is None:
        raise CheckpointError(
            f"load: '{path}': metadata '{META_PREFIX}seed' must be a non-negative integer, "
            f"found {seed_text[:40]!r}"
        )
    ties = _meta_json(metadata, "ties", path) if META_PREFIX + "ties" in metadata else []
    if not isinstance(ties, list) or not all(
        isinstance(g, list) and all(isinstance(n, str) for n in g) for g in ties
    ):
        raise CheckpointError(
            f"load: '{path}': metadata '{META_PREFIX}ties' must be a list of lists of names"
        )
    return spec, int(seed_text), ties


def spec_from_data(data: Any, path: str | Path) -> ModelSpec:
    """Validate the architecture stored in a checkpoint's metadata."""
    try:
        check_data_shape(data, root="checkpoint.spec")  # bounded before walking it
        refuse_interpolation(data, root="checkpoint.spec")
        return validate_data(data, root="checkpoint.spec")
    except ModelFactoryError as err:
        raise CheckpointError(
            f"load: '{path}': the stored architecture is invalid; the file was edited, corrupted or "
            "written by an incompatible version",
            err.problems,
        ) from None


def verify_checksum(path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless the file's tensor data matches its stored checksum.

    Reads the whole data section once (no model is built). Files written
    before checksums existed have none and pass.
    """
    header = read_header(path)
    checksums = header.metadata.get(CHECKSUM_KEY)
    if checksums is not None:
        read_into(header, {}, checksums=checksums, check_all=True)


def check_ties(model: nn.Module, stored: StoredModel) -> None:
    """The rebuilt model must tie exactly the names the checkpoint says were tied."""
    check_tie_groups(model, stored.ties, stored.header.path)


def check_tie_groups(model: nn.Module, ties: list[list[str]], path: str | Path) -> None:
    """Refuse a model whose tie map differs from ``ties`` (what the checkpoint at ``path`` records)."""
    found = tie_map(model)
    expected = sorted(sorted(group) for group in ties)
    if found != expected:
        raise CheckpointError(
            f"load: '{path}': the rebuilt model ties {found} but the checkpoint "
            f"records ties {expected}. Its weights were saved from a differently tied model; "
            "re-save it from the original model."
        )
