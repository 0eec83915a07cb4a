"""Sharded checkpoints through ``torch.distributed.checkpoint``: save, load at any world size, convert.

``save_dcp`` writes a DCP directory (every rank writes its own shards) plus
``modelfactory.json``, the architecture and build facts of a single-file
checkpoint (see :mod:`.dcp_files`). ``load_dcp`` rebuilds the model from that
record alone, sharded over any number of ranks or as one plain model, and
DCP reshards on load. ``dcp_to_safetensors`` and ``safetensors_to_dcp``
convert to and from the single-file checkpoint that :func:`modelfactory.load`
reads.

Each tensor is stored once: the extra names of a tied parameter or shared
module are left out, as in the single-file checkpoint, and the tie gives them
back on load. Saves go into a fresh directory, renamed into place once
complete; see ``docs/scale.md`` for what DCP guarantees after a crash.
"""

from __future__ import annotations

import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

from ..builder.construct import BuildInfo
from ..builder.sharded import _rank_target, assemble_sharded, is_sharded
from ..checker.limits import check_structure
from ..devices import resolve_device
from ..distributed import broadcast_object, device_mesh, rank, world_size
from ..errors import CheckpointError
from ..pipeline import _assemble
from ..resolve import resolve
from ..sharing import tensor_groups
from ..spec.init_rules import InitSpec
from ..spec.parallel import ShardRule
from .atomic import atomic_path
from .checkpoint import META_PREFIX, build_metadata, check_tie_groups, read_checkpoint
from .dcp_files import DcpCheckpoint, SafeReader, fsync_dir, read_dcp, write_record
from .safetensors_file import write_safetensors
from .suffixes import CHECKSUM_KEY
from .weights import check_layout

__all__ = [
    "save_dcp",
    "load_dcp",
    "load_dcp_into",
    "read_dcp",
    "dcp_to_safetensors",
    "safetensors_to_dcp",
]


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _describe(err: BaseException) -> str:
    """One line per failed rank of a ``CheckpointException`` (a BaseException)."""
    failures = getattr(err, "failures", None)
    if not failures:
        return f"{type(err).__name__}: {str(err)[:300]}"
    parts = []
    for failed_rank, failure in sorted(failures.items()):
        inner = failure[0] if isinstance(failure, tuple) else failure
        first = (str(inner).splitlines() or [""])[0][:200]
        parts.append(f"rank {failed_rank}: {type(inner).__name__}: {first}")
    return "; ".join(parts)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence DCP's warning that a ``no_dist`` call runs in one process (that is the intent)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _unique_state(model: nn.Module) -> tuple[dict[str, Any], list[list[str]]]:
    """The state dict (DTensor shards for a sharded model), each tensor once; and the tie groups."""
    groups = [g for g in tensor_groups(model) if len(g) > 1]
    aliases = {name for group in groups for name in group[1:]}
    state = get_model_state_dict(model)
    return {k: v for k, v in state.items() if k not in aliases}, groups


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` directory to ``path`` (rank 0 only), durably."""
    fsync_dir(tmp)  # DCP's own renames into it (.metadata) and our record
    old = None
    if path.exists():
        if not overwrite:
            raise CheckpointError(f"save: '{path}' appeared while saving; nothing was replaced")
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        path.rename(old)
    tmp.rename(path)
    fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fresh_tmp(
    path: Path, overwrite: bool, *, local: bool = False
) -> tuple[str | None, str | None]:
    """(temp directory name, error) as rank 0 sees them (this process's, if ``local``)."""
    if rank() != 0 and not local:
        return None, None
    if path.exists() and not overwrite:
        return None, (
            f"save: '{path}' exists. DCP checkpoints are written into a fresh directory "
            "(a save over an old one could leave a mix of both after a crash); choose a new path, "
            "or pass overwrite=True to replace it once the new one is complete."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return None, f"save: cannot create '{path.parent}': {err.strerror or err}"
    return f".{path.name}.tmp-{uuid.uuid4().hex[:12]}", None


def save_dcp(model: nn.Module, path: str | Path, *, overwrite: bool = False) -> Path:
    """Save ``model`` (sharded or not) as a DCP checkpoint directory at ``path``.

    A collective: every rank calls it with the same path, on a shared file
    system. Each rank writes its own shards into a fresh temporary directory;
    DCP writes ``.metadata`` last, on rank 0, once every rank's writes have
    succeeded; rank 0 then writes ``modelfactory.json`` (the architecture,
    seed, init rules and tie map, and the save's ``save_id``) and renames the
    directory to ``path``. On failure nothing is at ``path`` and every rank
    raises :class:`CheckpointError`.
    """
    info = getattr(model, "modelfactory_info", None)
    if not isinstance(info, BuildInfo):
        raise CheckpointError(
            f"save_dcp: {type(model).__name__} was not built by modelfactory (build or "
            "build_sharded), so its architecture is unknown. Save its state dict with "
            "torch.distributed.checkpoint directly."
        )
    path = Path(path)
    name, error = broadcast_object(_fresh_tmp(path, overwrite))
    if error:
        raise CheckpointError(error)
    tmp = path.parent / name
    state, groups = _unique_state(model)
    try:
        with _quiet():
            saved = dcp.save(
                state,
                storage_writer=FileSystemWriter(tmp, sync_files=True),
                no_dist=not _distributed(),
            )
    except (Exception, dcp.CheckpointException) as err:  # CheckpointException is a BaseException
        raise CheckpointError(
            f"save_dcp: writing '{path}' failed ({_describe(err)}); nothing was written there. "
            f"Leftovers are in '{tmp}' (safe to delete). Check the disk and retry."
        ) from None
    error = None
    if rank() == 0:
        try:
            metadata = build_metadata(info, sorted(sorted(g) for g in groups))
            write_record(tmp, metadata, saved.storage_meta.save_id, world_size())
            _publish(tmp, path, overwrite)
        except (OSError, CheckpointError) as err:
            error = f"save_dcp: finishing '{path}' failed: {err}. Nothing was replaced."
    error = broadcast_object(error)
    if error:
        raise CheckpointError(error)
    return path


def _check_against(checkpoint: DcpCheckpoint) -> Any:
    """A ``before_allocate`` hook: the meta model must match the stored keys, shapes and dtypes."""

    def check(meta_model: nn.Module) -> None:
        shapes, dtypes, other = checkpoint.layout()
        if other:
            raise CheckpointError(
                f"load: '{checkpoint.path}' holds non-tensor entries {other[:5]}; a modelfactory "
                "checkpoint holds tensors only. Re-save it with save_dcp."
            )
        check_layout(meta_model, shapes, dtypes, checkpoint.path)

    return check


def load_dcp_into(model: nn.Module, path: str | Path) -> nn.Module:
    """Read a DCP checkpoint into ``model`` (sharded or plain) in place; DCP reshards as needed.

    A sharded model must be loaded on every rank (a collective). A plain model
    is loaded by its own process alone. Names, shapes and dtypes must match
    exactly; the tie map must equal the stored one.
    """
    checkpoint = path if isinstance(path, DcpCheckpoint) else read_dcp(path)
    state, groups = _unique_state(model)
    shapes, dtypes, _ = checkpoint.layout()
    check_layout(model, shapes, dtypes, checkpoint.path)  # DTensors report their global shapes
    sharded = is_sharded(model)
    try:
        with _quiet():
            dcp.load(
                state,
                storage_reader=SafeReader(checkpoint.path),
                no_dist=not (sharded and _distributed()),
            )
    except (Exception, dcp.CheckpointException) as err:  # CheckpointException is a BaseException
        raise CheckpointError(
            f"load: reading '{checkpoint.path}' failed ({_describe(err)}). A data file is missing, "
            "truncated or corrupted; load an earlier checkpoint or re-save it."
        ) from None
    for group in groups:  # the tie's other names: the same tensor
        for alias in group[1:]:
            state[alias] = state[group[0]]
    set_model_state_dict(model, state)  # dcp.load wrote in place; this also re-ties
    check_tie_groups(model, checkpoint.ties, checkpoint.path)
    return model


def load_dcp(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    shard: Sequence[ShardRule] | None = None,
    mesh: Any = None,
    reshard_after_forward: bool = True,
) -> nn.Module:
    """Rebuild a model from a DCP checkpoint directory alone and load it, at any world size.

    ``shard=None`` builds one plain model in this process (no process group
    needed). With ``shard`` (the FSDP unit rules, ``[]`` for the root alone),
    every rank calls it and the model is sharded over ``mesh`` (default: all
    ranks); the checkpoint may come from any world size. The architecture is
    built on ``meta`` and matched against the stored names, shapes and dtypes
    before anything is allocated; nothing is initialised that the checkpoint
    overwrites.
    """
    checkpoint = read_dcp(path)
    check_structure(checkpoint.spec)
    resolved = resolve(checkpoint.spec)
    check = _check_against(checkpoint)
    if shard is None:
        target = resolve_device(device)
        model = _assemble(
            resolved, target, checkpoint.seed, InitSpec(), "meta", None,
            initialize=False, before_allocate=check,
        )  # fmt: skip
    else:
        target = _rank_target(device)
        model = assemble_sharded(
            resolved, target, checkpoint.seed, InitSpec(), list(shard),
            mesh if mesh is not None else device_mesh(target), reshard_after_forward,
            initialize=False, before_allocate=check,
        )  # fmt: skip
    return load_dcp_into(model, checkpoint)


def dcp_to_safetensors(directory: str | Path, file: str | Path) -> Path:
    """Convert a DCP checkpoint directory to one single-file checkpoint that ``modelfactory.load`` reads.

    Runs in one process, which holds the whole model in memory; the file is
    written atomically, with the same ``modelfactory.*`` metadata.
    """
    checkpoint = read_dcp(directory)
    shapes, dtypes, other = checkpoint.layout()
    if other:
        raise CheckpointError(
            f"convert: '{checkpoint.path}' holds non-tensor entries {other[:5]}; only tensors "
            "can go into a safetensors file."
        )
    tensors = {
        key: torch.empty(shape, dtype=getattr(torch, dtypes[key])) for key, shape in shapes.items()
    }
    try:
        with _quiet():
            dcp.load(tensors, storage_reader=SafeReader(checkpoint.path), no_dist=True)
    except (Exception, dcp.CheckpointException) as err:
        raise CheckpointError(
            f"convert: reading '{checkpoint.path}' failed ({_describe(err)}). A data file is "
            "missing, truncated or corrupted."
        ) from None
    file = Path(file)
    try:
        with atomic_path(file) as tmp:
            write_safetensors(tmp, tensors, checkpoint.metadata, checksum_key=CHECKSUM_KEY)
    except OSError as err:
        raise CheckpointError(f"convert: could not write '{file}': {err.strerror or err}") from err
    return file


def safetensors_to_dcp(file: str | Path, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Convert a single-file checkpoint (``modelfactory.save``) to a DCP checkpoint directory.

    Runs in one process; the directory loads at any world size with :func:`load_dcp`.
    """
    from safetensors import safe_open

    stored = read_checkpoint(file)
    path = Path(directory)
    name, error = _fresh_tmp(path, overwrite, local=True)
    if error:
        raise CheckpointError(error.replace("save:", "convert:", 1))
    tmp = path.parent / name
    with safe_open(str(file), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in stored.header.tensors}
    try:
        with _quiet():
            saved = dcp.save(
                tensors, storage_writer=FileSystemWriter(tmp, sync_files=True), no_dist=True
            )
    except (Exception, dcp.CheckpointException) as err:
        raise CheckpointError(f"convert: writing '{path}' failed ({_describe(err)})") from None
    metadata = {k: v for k, v in stored.metadata.items() if k.startswith(META_PREFIX)}
    write_record(tmp, metadata, saved.storage_meta.save_id, 1)
    _publish(tmp, path, overwrite)
    return path
