"""Saving and loading a tensor, a list of tensors or a dict of tensors through safetensors.

These are the text's ``x-file``, ``x-files`` and ``mydict``, written in the
safe format instead of a pickle. The container kind is stored in the metadata
(``modelfactory.container``), so :func:`load_tensors` gives back what was saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..checker.limits import current_limits
from ..errors import CheckpointError
from .atomic import atomic_path
from .checkpoint import FORMAT_VERSION, META_PREFIX
from .ptfile import read_torch_file
from .safetensors_file import read_header, read_into, write_safetensors
from .suffixes import CHECKSUM_KEY, TORCH_SUFFIXES

__all__ = ["save_tensors", "load_tensors"]

TensorsLike = torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor]

_KIND = META_PREFIX + "container"
_SINGLE = "tensor"  # the one key of a single-tensor file


def _flatten(obj: Any, path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        return "tensor", {_SINGLE: obj}
    if isinstance(obj, Mapping):
        kind, items = "dict", list(obj.items())
    elif isinstance(obj, (list, tuple)):
        kind, items = "list", [(str(i), v) for i, v in enumerate(obj)]
    else:
        raise CheckpointError(
            f"save_tensors: expected a tensor, a list of tensors or a dict of str -> tensor, "
            f"found {type(obj).__name__} (writing '{path}')"
        )
    bad = [repr(k) for k, v in items if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"save_tensors: every entry of the {kind} must be a tensor under a string key; "
            f"not so at {', '.join(bad[:10])} (writing '{path}')"
        )
    return kind, dict(items)


def _unshare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors sharing memory (safetensors#202): store repeats as copies.
    seen: set[int] = set()
    out = {}
    for key, tensor in tensors.items():
        tensor = tensor.detach()
        storage = tensor.untyped_storage().data_ptr()
        if storage in seen:
            tensor = tensor.clone()
        seen.add(storage)
        out[key] = tensor.contiguous()
    return out


def save_tensors(obj: TensorsLike, path: str | Path) -> Path:
    """Write a tensor, a list of tensors or a dict of str -> tensor to ``path`` (safetensors), atomically.

    Tensors that share memory (views, repeats) are stored as separate copies.
    """
    path = Path(path)
    kind, tensors = _flatten(obj, path)
    metadata = {META_PREFIX + "format": FORMAT_VERSION, _KIND: kind}
    try:
        with atomic_path(path) as tmp:
            write_safetensors(tmp, _unshare(tensors), metadata, checksum_key=CHECKSUM_KEY)
    except OSError as err:
        raise CheckpointError(f"save: could not write '{path}': {err.strerror or err}") from err
    return path


def load_tensors(path: str | Path, *, device: str | torch.device = "cpu") -> Any:
    """Read what :func:`save_tensors` wrote: a tensor, a list of tensors or a dict.

    A safetensors file from elsewhere reads as a dict. A ``.pt``/``.pth`` file
    (``torch.save`` of a tensor, list or dict) is read weights-only.
    """
    path = Path(path)
    if path.suffix.lower() in TORCH_SUFFIXES:
        return _checked_torch_object(read_torch_file(path), path, device)
    header = read_header(path)  # checked sizes before anything is allocated
    total = sum(entry.nbytes for entry in header.tensors.values())
    budget = current_limits().max_parameters * 8  # bytes: the element budget in float64
    if total > budget:
        raise CheckpointError(
            f"load_tensors: '{path}' holds {total:,} bytes of tensors, over the budget of "
            f"{budget:,}; raise it with modelfactory.limits.budget(max_parameters=...) if the "
            "file is trusted"
        )
    tensors = {
        name: torch.empty(entry.shape, dtype=getattr(torch, entry.torch_dtype))
        for name, entry in header.tensors.items()
    }
    # read straight into the new tensors, each checked against its stored checksum
    read_into(header, tensors, checksums=header.metadata.get(CHECKSUM_KEY))
    device = torch.device(device)
    if device.type != "cpu":
        tensors = {name: t.to(device) for name, t in tensors.items()}
    kind = header.metadata.get(_KIND, "dict")
    if kind == "dict":
        return tensors
    if kind == "tensor" and set(tensors) == {_SINGLE}:
        return tensors[_SINGLE]
    if kind == "list" and set(tensors) == {str(i) for i in range(len(tensors))}:
        return [tensors[str(i)] for i in range(len(tensors))]
    raise CheckpointError(
        f"load_tensors: '{path}' says it holds a {kind!r} but its tensor names are "
        f"{sorted(tensors)[:10]}; the file was edited or corrupted."
    )


def _checked_torch_object(obj: Any, path: Path, device: str | torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        return {k: v.to(device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and all(isinstance(v, torch.Tensor) for v in obj):
        return [v.to(device) for v in obj]
    raise CheckpointError(
        f"load_tensors: '{path}' holds a {type(obj).__name__} that is not a tensor, a list of "
        "tensors or a dict of str -> tensor"
    )
