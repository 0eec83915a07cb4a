"""Loading weights into a built model: strictly, with an explicit account of any mismatch."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .errors import CheckpointError, ConfigProblem

__all__ = ["load_weights", "shared_groups", "tensor_groups"]


def tensor_groups(model: nn.Module) -> list[list[str]]:
    """State-dict names grouped by tensor: a shared or tied tensor is one group of several names."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def shared_groups(model: nn.Module) -> dict[str, list[str]]:
    """For each tensor stored under several state_dict names: first name -> the other names."""
    return {group[0]: group[1:] for group in tensor_groups(model) if len(group) > 1}


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = True) -> list[str]:
    """Copy the tensors of a safetensors file into ``model`` in place.

    Copying (never ``assign=True``) keeps shared modules and tied parameters the
    same objects. A tensor stored under several names needs only one of them in
    the file. With ``strict`` any missing key, unexpected key or shape mismatch
    is an error listing all of them, and nothing is loaded; ``strict=False``
    loads what matches and returns a description of everything skipped.
    """
    path = Path(path)
    state = model.state_dict(keep_vars=True)
    problems: list[ConfigProblem] = []
    plan: list[tuple[str, torch.Tensor]] = []  # (file key, model tensor)
    try:
        with safe_open(str(path), framework="pt") as handle:
            file_keys = set(handle.keys())
            for group in tensor_groups(model):
                present = [name for name in group if name in file_keys]
                if not present:
                    problems.append(ConfigProblem(group[0], "missing from the checkpoint"))
                    continue
                target = state[group[0]]
                shape = list(handle.get_slice(present[0]).get_shape())
                if shape != list(target.shape):
                    problems.append(
                        ConfigProblem(
                            present[0],
                            f"shape mismatch: checkpoint {shape}, model {list(target.shape)}",
                        )
                    )
                    continue
                plan.append((present[0], target))
            for key in sorted(file_keys - set(state)):
                problems.append(
                    ConfigProblem(key, "unexpected key in the checkpoint (not in the model)")
                )
            if problems and strict:
                raise CheckpointError(
                    f"load: '{path}' does not match the model ({len(problems)} problem(s)); "
                    "nothing was loaded. Pass strict=False to load the matching tensors only.",
                    problems,
                )
            with torch.no_grad():
                for key, target in plan:
                    target.copy_(
                        handle.get_tensor(key).to(device=target.device, dtype=target.dtype)
                    )
    except SafetensorError as err:
        raise CheckpointError(
            f"load: '{path}' is not a readable safetensors file ({err})"
        ) from None
    return [str(p) for p in problems]
