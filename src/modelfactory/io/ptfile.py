"""Plain PyTorch files (``torch.save``), read weights-only and never unpickled freely.

The text saves ``state_dict`` s, tensors, lists and dicts with ``torch.save``.
We read such files only with ``torch.load(..., weights_only=True)``, passed
explicitly (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` flips only the default), and a
failure is never retried without it: the file's author controls that failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checker.limits import current_limits
from ..errors import CheckpointError
from .atomic import atomic_path
from .ptscan import open_scanned

__all__ = ["read_torch_file", "load_state_dict", "save_state_dict"]


def _reason(err: BaseException) -> str:
    # torch's weights-only message advises weights_only=False; keep only the cause.
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("WeightsUnpickler error:"):
            return line.removeprefix("WeightsUnpickler error:").strip()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def read_torch_file(path: str | Path) -> Any:
    """Read a ``torch.save`` file weights-only onto the CPU: tensors and plain containers only.

    Raises :class:`CheckpointError` for a missing file, or a file that is not
    a PyTorch file or holds anything but tensors and plain data (code, classes).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no PyTorch file at '{path}': the file does not exist")
    # The weights-only unpickler refuses code, but still builds what the pickle
    # describes: a key nested 200,000 deep crashed the interpreter. The scan
    # walks the opcodes first (building nothing) and bounds nesting, opcodes,
    # zip members and storage bytes; torch then reads the very handle scanned.
    budget = current_limits().max_parameters * 8  # bytes: the element budget in float64
    with open_scanned(path, max_bytes=budget) as handle:
        try:
            return torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure is the file's; never retried unsafely
            raise CheckpointError(
                f"could not read '{path}' as a weights-only PyTorch file: {_reason(err)}. "
                "modelfactory never unpickles arbitrary objects: the file must hold only tensors "
                "and plain containers (as torch.save(model.state_dict()) writes)."
            ) from None  # torch's own chained message suggests weights_only=False


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``torch.save(model.state_dict())`` file as a dict of name -> tensor (CPU)."""
    path = Path(path)
    obj = read_torch_file(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"'{path}' holds a {type(obj).__name__}, not a state_dict (a mapping of names to "
            "tensors). Read it with modelfactory.load_tensors instead."
        )
    bad = [
        f"{k!r} ({type(v).__name__})"
        for k, v in obj.items()
        if not isinstance(k, str) or not isinstance(v, torch.Tensor)
    ]
    if bad:
        raise CheckpointError(
            f"'{path}' is not a state_dict: these entries are not name -> tensor: "
            + ", ".join(bad[:10])
            + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        )
    return dict(obj)


def save_state_dict(obj: nn.Module | Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Write a model's ``state_dict`` (or a mapping of name -> tensor) with ``torch.save``, atomically.

    The file is what ``torch.save(net.state_dict(), path)`` writes, so plain
    PyTorch code can read it; tied names keep sharing one tensor.
    """
    path = Path(path)
    state = obj.state_dict() if isinstance(obj, nn.Module) else obj
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"save_state_dict: expected an nn.Module or a mapping of names to tensors, found "
            f"{type(obj).__name__} (writing '{path}')"
        )
    try:
        with atomic_path(path) as tmp:
            # A state_dict's own OrderedDict keeps its _metadata (layer versions), as torch.save would.
            torch.save(state if isinstance(state, dict) else dict(state), tmp)
    except OSError as err:
        raise CheckpointError(f"save: could not write '{path}': {err.strerror or err}") from err
    return path
