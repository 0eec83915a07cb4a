"""Stage: from a module tree on the ``meta`` device to real tensors on the target device.

Constructing on ``meta`` allocates nothing and runs no init; ``to_empty`` then
allocates each tensor once, directly on the target, and the configured init
runs exactly once. For tiny models the meta detour costs more than it saves
(100 small Linears took 3.1 ms directly, 6.8 ms under meta), so
``strategy="auto"`` takes it only for models estimated to be large.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..spec.model import ModelSpec
from ..spec.nodes import CompositeNode, LayerNode
from ..spec.walk import fold
from .construct import BuildRecord, fill_constant

__all__ = [
    "estimate_parameters",
    "meta_safe",
    "materialize",
    "has_unsaved_buffers",
    "META_THRESHOLD",
]

# Above this estimated parameter count the meta path is worth it: the default
# init pass it saves costs more than constructing twice (see docs/benchmarks.md).
META_THRESHOLD = 1_000_000


def _layer_estimate(node: LayerNode) -> int:
    """A rough parameter count: the product of the two largest size arguments and any kernel."""
    sizes: list[int] = []
    kernel = 1
    for key, value in node.args.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value > 0:
            sizes.append(value)
        elif "kernel" in key and isinstance(value, (list, tuple)):
            for item in value:
                kernel *= int(item) if isinstance(item, int) and item > 0 else 1
    sizes.sort(reverse=True)
    if not sizes:
        return 0
    return (sizes[0] * (sizes[1] if len(sizes) > 1 else 1)) * kernel


def estimate_parameters(spec: ModelSpec) -> int:
    """Estimate a model's parameter count from its spec, without building anything.

    Only used to pick a build strategy; both strategies give identical values.
    """

    def estimate(node: Any, parts: list[tuple[int, int]]) -> int:
        own = _layer_estimate(node) if isinstance(node, LayerNode) else 0
        if isinstance(node, CompositeNode):
            own += sum(math.prod(p.concrete_shape() or ()) for p in node.parameters.values())
        return own + sum(copies * result for copies, result in parts)

    return fold(spec, spec.network, estimate)


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(
        True for _ in module.buffers(recurse=False)
    )


def _has_reset(module: nn.Module) -> bool:
    return callable(getattr(module, "reset_parameters", None)) or callable(
        getattr(module, "_reset_parameters", None)
    )


def meta_safe(model: nn.Module, record: BuildRecord) -> str | None:
    """``None`` if every tensor can get its values back after ``to_empty``, else why not."""
    constant_owners = {id(owner) for owner, *_ in record.constants}
    # composite-owned parameters are refilled from their fills, as constants are
    learned = {(id(owner), name) for owner, name, *_ in record.learned}
    constant_owners |= {id(owner) for owner, *_ in record.learned}
    in_layer: dict[int, nn.Module] = {}
    for _, layer in record.layers:
        for sub in layer.modules():
            in_layer[id(sub)] = layer
    for name, module in model.named_modules():
        if not _has_state(module):
            continue
        layer = in_layer.get(id(module))
        if layer is None:
            if id(module) in constant_owners and all(
                (id(module), name) in learned for name, _ in module.named_parameters(recurse=False)
            ):
                continue
            return f"module '{name}' ({type(module).__name__}) holds tensors outside any registered layer"
        if not (_has_reset(module) or _has_reset(layer)):
            return (
                f"layer '{name}' ({type(module).__name__}) has parameters or buffers but no "
                "reset_parameters() to restore them after materialising"
            )
    return None


def materialize(
    model: nn.Module,
    record: BuildRecord,
    *,
    device: torch.device,
    seed: int,
    tied_away: set[tuple[int, str]] = frozenset(),  # type: ignore[assignment]
) -> nn.Module:
    """Allocate ``model``'s tensors on ``device`` (uninitialised), keeping ties and constants.

    Parameters and buffers come back as garbage: the caller runs the default
    init replay and the rules next. Constants and composite-owned parameters
    are refilled here from their own seeded streams (a parameter in place, so
    ties hold; one tied away to another, ``(id(owner), name)`` in
    ``tied_away``, is left to its tie's owner).
    """
    # to_empty replaces Parameter objects (meta -> real tensors are not
    # shallow-copy compatible), which would silently untie parameters; a tied
    # model re-asserts its ties after every _apply (see ties.keep_ties).
    model.to_empty(device=device)
    for owner, name, constant, stream in record.constants:
        owner._buffers[name] = fill_constant(constant, seed=seed, stream=stream, device=device)
    with torch.no_grad():
        for owner, name, learned, stream in record.learned:
            if (id(owner), name) not in tied_away:
                target = owner._parameters[name]
                assert target is not None
                filled = fill_constant(learned, seed=seed, stream=stream, device=device)
                target.copy_(_like(target, filled))
    return model


def _like(target: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """``full`` as ``target`` holds it: on a sharded build, this rank's shard of it.

    Every rank fills the same whole tensor from the same stream, so each takes
    its own shard locally (no communication).
    """
    mesh, placements = getattr(target, "device_mesh", None), getattr(target, "placements", None)
    if mesh is None or placements is None:
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full, mesh, placements, src_data_rank=None)


def has_unsaved_buffers(layer: nn.Module) -> bool:
    """True if a layer holds non-persistent buffers, which no checkpoint restores."""
    return any(m._non_persistent_buffers_set for m in layer.modules())
