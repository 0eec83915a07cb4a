"""Stage: checkpoints. safetensors weights plus the resolved architecture as metadata.

A checkpoint rebuilds its model with no code and no YAML beside it, and
opening one never executes anything: safetensors holds only tensors, and the
metadata is JSON validated like any other model spec. Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_model
from torch import nn

from .builder import BuildInfo
from .errors import CheckpointError, ModelFactoryError
from .spec import ModelSpec

__all__ = ["save", "read_metadata", "fingerprint", "atomic_path", "FORMAT_VERSION", "META_PREFIX"]

FORMAT_VERSION = "1"
META_PREFIX = "modelfactory."


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data, equal text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def fingerprint(spec: ModelSpec) -> str:
    """Hash of the architecture (not its labels): key order and comments do not matter."""
    data = spec.model_dump(mode="json", exclude={"name", "description"})
    return "sha256:" + hashlib.sha256(canonical_json(data).encode()).hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("modelfactory")
    except PackageNotFoundError:  # running from a source tree
        ours = "unknown"
    return {"modelfactory": ours, "torch": torch.__version__}


def build_metadata(info: BuildInfo) -> dict[str, str]:
    """The string-to-string metadata stored in the safetensors header."""
    meta = {
        "format": FORMAT_VERSION,
        "spec": canonical_json(info.spec.model_dump(mode="json")),
        "fingerprint": fingerprint(info.spec),
        "seed": str(info.seed),
        "device": info.device,
        "versions": canonical_json(_versions()),
    }
    if info.init is not None:
        meta["init"] = canonical_json(info.init)
    if info.facts:
        meta["facts"] = canonical_json(info.facts)
    return {META_PREFIX + k: v for k, v in meta.items()}


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` durably.

    The temp file is fsynced, given the target's mode (or the umask default for
    a new file), renamed over the target, and the directory is fsynced. On any
    failure the temp file is removed and ``target`` is untouched.
    """
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        _fsync_dir(directory)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` to ``path`` as safetensors, shared tensors stored once.

    The model must come from :func:`modelfactory.build` (its architecture is
    written into the file so :func:`modelfactory.load` can rebuild it).
    """
    info = getattr(model, "modelfactory_info", None)
    if not isinstance(info, BuildInfo):
        raise CheckpointError(
            f"save: {type(model).__name__} was not built by modelfactory.build, so its architecture "
            "is unknown. Build it with modelfactory.build, or save its state_dict with "
            "modelfactory.save_tensors."
        )
    path = Path(path)
    metadata = build_metadata(info)
    try:
        with atomic_path(path) as tmp:
            # save_model drops all but one name of each shared tensor and records
            # the dropped names in the metadata (safetensors#202).
            save_model(model, str(tmp), metadata=metadata)
    except OSError as err:
        raise CheckpointError(f"save: could not write '{path}': {err.strerror or err}") from err
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The header metadata of a safetensors file, without reading any tensor."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"load: no checkpoint at '{path}'")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"load: '{path}' is not a readable safetensors file ({err}). "
            "It may be truncated or corrupted; re-save it from the original model."
        ) from None


def spec_from_metadata(
    metadata: dict[str, str], path: str | Path
) -> tuple[ModelSpec, dict[str, str]]:
    """Validate the architecture stored in a checkpoint's metadata."""
    from .parse import validate_data

    raw = metadata.get(META_PREFIX + "spec")
    if raw is None:
        raise CheckpointError(
            f"load: '{path}' has no modelfactory architecture in its metadata; it was not written by "
            "modelfactory.save. Build the model yourself and load weights with load_weights."
        )
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"load: '{path}': the stored architecture is not valid JSON ({err})"
        ) from None
    try:
        return validate_data(data, root="checkpoint.spec"), metadata
    except ModelFactoryError as err:
        raise CheckpointError(
            f"load: '{path}': the stored architecture is invalid", err.problems
        ) from None
