"""Which names reach the same tensor: the one helper that groups tensors by identity.

Shared modules and tied parameters make one tensor reachable under several
names. Checkpoints store it once, counts count it once, init initialises it
once; all of them ask this module.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["group_by_identity", "tensor_groups", "unique_state", "unique_tensors"]


def group_by_identity(
    named: Iterable[tuple[str, torch.Tensor]],
) -> list[list[tuple[str, torch.Tensor]]]:
    """Group ``(name, tensor)`` pairs by tensor object, in first-seen order (names in order)."""
    groups: dict[int, list[tuple[str, torch.Tensor]]] = {}
    for name, tensor in named:
        groups.setdefault(id(tensor), []).append((name, tensor))
    return list(groups.values())


def tensor_groups(model: nn.Module) -> list[list[str]]:
    """State-dict names grouped by tensor: a shared or tied tensor is one group of several names."""
    state = model.state_dict(keep_vars=True).items()
    return [[name for name, _ in group] for group in group_by_identity(state)]


def unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict with each tensor once, under its first name (shared and tied tensors)."""
    state = model.state_dict(keep_vars=True).items()
    return {group[0][0]: group[0][1] for group in group_by_identity(state)}


def unique_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer object once (persistent or not)."""
    named = list(model.named_parameters(remove_duplicate=False))
    named += list(model.named_buffers(remove_duplicate=False))
    return [group[0][1] for group in group_by_identity(named)]
