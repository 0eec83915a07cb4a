"""Stage: a sharded build on FSDP2, whose gathered values equal ``modelfactory.build``'s bit for bit.

The same stages as :func:`modelfactory.build`'s meta path, with ``fully_shard``
between tying and allocating:

1. construct on ``meta``, tie, plan the FSDP units (:mod:`.shard_plan`) and
   check them before anything is sharded;
2. ``fully_shard`` each unit, inner units first, then the root, on a 1-D
   device mesh over all ranks;
3. ``to_empty``: each rank allocates only its own shards (and the replicated
   buffers);
4. initialise from the same named streams as the single-process build: per
   layer, an unsharded scratch copy of that one layer is allocated, reset from
   the layer's stream and sliced into the local shards by ``distribute_tensor``
   (``src_data_rank=None``: every rank takes its own slice, nothing is sent);
   each rule draws its full parameter from the parameter's stream and is
   sliced the same way. Peak extra memory: one full layer.

Initialising the shards directly (``reset_parameters`` on DTensors) would give
values that depend on the world size; drawing full tensors from named streams
does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..checker.limits import enforce_parameter_budget
from ..checker.shapes import CheckedSpec
from ..devices import resolve_device
from ..distributed import device_mesh
from ..errors import ConfigProblem
from ..pipeline import (
    InitLike,
    Stage,
    check_seed,
    labeled_rules,
    spec_without_check,
    to_checked,
    to_init_spec,
)
from ..spec.init_rules import InitSpec
from ..spec.parallel import ParallelSpec, ShardRule
from .construct import BuildInfo, construct
from .init import LabeledRule, apply_init, apply_rule, fully_covered_layers, plan_init, reset_layer
from .materialize import has_unsaved_buffers, materialize, meta_safe
from .shard_plan import ShardError, ShardPlan, plan_shards
from .streams import derive_seed, layer_stream, seed_default_generator
from .ties import apply_ties

__all__ = [
    "build_sharded",
    "assemble_sharded",
    "full_state_dict",
    "local_parameter_bytes",
    "is_sharded",
]

log = logging.getLogger(__name__)

Slot = tuple[int, str]  # (id(module), attribute): survives fully_shard, unlike Parameter objects


def _rank_target(device: str | torch.device) -> torch.device:
    target = resolve_device(device)
    if target.type == "cuda" and torch.device(device).index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    if target.type not in ("cpu", "cuda"):
        raise ShardError(
            f"device: a sharded build needs real memory on cpu or cuda, found '{device}'. "
            "Use device=cpu or device=cuda."
        )
    return target


def build_sharded(
    spec: Any,
    *,
    shard: Sequence[ShardRule] | ParallelSpec = (),
    mesh: Any = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    init: InitLike = None,
    reshard_after_forward: bool | None = None,
    check: bool = True,
) -> nn.Module:
    """Build ``spec`` sharded with FSDP2 over ``mesh`` (default: every rank of the process group).

    Every rank must call it with the same arguments. ``shard`` lists the FSDP
    units (globs, or lists of globs for one unit; see ``docs/scale.md``), or
    is a :class:`ParallelSpec`; the root is always the last unit. ``spec``,
    ``seed``, ``init`` and ``check`` mean what they mean for
    :func:`modelfactory.build`, and the gathered model
    (:func:`full_state_dict`) equals ``modelfactory.build(spec, seed=seed,
    init=init)`` bit for bit at any world size (on the CPU; on CUDA, equal to
    a CUDA build). ``device`` is this rank's device: ``cpu``, or ``cuda``
    (this rank's current GPU).
    """
    check_seed(seed)
    if isinstance(shard, ParallelSpec):
        if reshard_after_forward is None:
            reshard_after_forward = shard.reshard_after_forward
        shard = shard.shard
    target = _rank_target(device)
    stage: Stage = to_checked(spec) if check else spec_without_check(spec)
    return assemble_sharded(
        stage,
        target,
        seed,
        to_init_spec(init),
        list(shard),
        mesh if mesh is not None else device_mesh(target),
        True if reshard_after_forward is None else reshard_after_forward,
        initialize=True,
    )


def assemble_sharded(
    stage: Stage,
    target: torch.device,
    seed: int,
    init_spec: InitSpec,
    shard: Sequence[ShardRule],
    mesh: Any,
    reshard_after_forward: bool,
    *,
    initialize: bool,
    before_allocate: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """Construct on meta, tie, shard, allocate the local shards and initialise them once.

    ``initialize=False`` (loading) leaves every tensor a checkpoint restores
    uninitialised; ``before_allocate(model)`` sees the tied, unsharded meta
    model (to match a checkpoint against it before anything is allocated).
    """
    spec = stage.spec
    rules = labeled_rules(spec, init_spec)
    draw_device = torch.device("cpu") if init_spec.cpu_generator else target
    model, record = construct(spec, device=torch.device("meta"), seed=seed)
    why_not = meta_safe(model, record)
    if why_not is not None:
        raise ShardError(
            f"this model cannot be built sharded: {why_not}. A sharded build allocates on the meta "
            "device first and restores every tensor with the layer's reset_parameters(); register "
            "the layer with one, or build it unsharded (parallel=none)."
        )
    if not isinstance(stage, CheckedSpec):  # the shape check enforced the budget already
        enforce_parameter_budget(model)
    pairs = apply_ties(model, spec.ties)
    plan = plan_shards(model, shard)
    if before_allocate is not None:
        before_allocate(model)

    # Decided on the unsharded meta model: fully_shard replaces the Parameter objects.
    init_plan = plan_init(model, rules, record.block_types) if rules and initialize else None
    report = apply_init(init_plan or plan_init(model, [], record.block_types), seed=seed)  # on meta
    skip = fully_covered_layers(record, init_plan.covered()) if init_plan else set()
    if not initialize:  # a checkpoint overwrites every saved tensor
        skip = {id(layer) for _, layer in record.layers if not has_unsaved_buffers(layer)}
    by_rule = _rule_slots(model, init_plan)
    tied_away = {_slot(model, target) for target, _ in pairs}
    jobs = [] if init_plan is None else _rule_jobs(init_plan)

    _fully_shard(model, plan, mesh, reshard_after_forward)
    # each rank's shards, plus buffers and composite-owned parameters (refilled from their fills)
    materialize(model, record, device=target, seed=seed, tied_away=tied_away)
    template, template_record = construct(spec, device=torch.device("meta"), seed=seed)
    layers = [
        (path, layer, scratch)
        for (path, layer), (_, scratch) in zip(record.layers, template_record.layers, strict=True)
        if id(layer) not in skip
    ]
    fork = [draw_device.index or 0] if draw_device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork), torch.no_grad():
        for path, layer, scratch in layers:
            _init_layer(path, layer, scratch, seed, draw_device, tied_away | by_rule)
        for name, labeled in jobs:
            _init_by_rule(model.get_parameter(name), name, labeled, seed, draw_device)

    model.modelfactory_info = BuildInfo(
        spec=spec,
        seed=seed,
        device=str(target),
        init=[{"path": r.path, **r.rule.model_dump()} for r in rules],
        facts={
            "strategy": "fsdp",
            "world_size": mesh.size(),
            "units": plan.labels,
            "reshard_after_forward": reshard_after_forward,
            "cpu_generator": bool(init_spec.cpu_generator and target.type != "cpu"),
            "ties": dict(pairs),
        },
        report=report,
    )
    model.modelfactory_shard_plan = plan
    log.debug("built %s sharded over %d rank(s) on %s", type(model).__name__, mesh.size(), target)
    return model


def _slot(model: nn.Module, name: str) -> Slot:
    module, _, attr = name.rpartition(".")
    return id(model.get_submodule(module)), attr


def _rule_slots(model: nn.Module, init_plan: Any) -> set[Slot]:
    """Every (module, attribute) whose parameter some rule initialises (all its names)."""
    if init_plan is None:
        return set()
    covered = init_plan.covered()
    return {
        _slot(model, alias)
        for info in init_plan.params
        if id(info.tensor) in covered
        for alias in info.aliases
    }


def _rule_jobs(init_plan: Any) -> list[tuple[str, LabeledRule]]:
    jobs = []
    for info in init_plan.params:
        labeled = init_plan.winners[id(info.tensor)]
        if labeled is not None:
            jobs.append((info.name, labeled))
    return jobs


def _fully_shard(model: nn.Module, plan: ShardPlan, mesh: Any, reshard: bool) -> None:
    from torch.distributed.fsdp import fully_shard

    for unit in (*plan.units, None):
        modules = [model] if unit is None else [model.get_submodule(p) for p in unit.paths]
        label = "<root>" if unit is None else unit.label
        try:
            fully_shard(
                modules[0] if len(modules) == 1 else modules,
                mesh=mesh,
                reshard_after_forward=reshard,
            )
        except (ValueError, RuntimeError, AssertionError, TypeError) as err:
            where = "parallel.shard" if unit is None else unit.rule
            raise ShardError(
                f"fully_shard failed on unit '{label}'",
                [
                    ConfigProblem(
                        where,
                        f"torch refused to shard unit '{label}': {err}. Choose other units "
                        "(see docs/scale.md), or build unsharded (parallel=none).",
                    )
                ],
            ) from err


def _init_layer(
    path: str,
    layer: nn.Module,
    scratch: nn.Module,
    seed: int,
    draw_device: torch.device,
    leave: set[Slot],
) -> None:
    """Reset a full-size scratch copy of one layer from its stream; copy each rank's slice in."""
    scratch.to_empty(device=draw_device)
    seed_default_generator(draw_device, derive_seed(seed, layer_stream(path)))
    reset_layer(scratch)
    for sub_name, scratch_sub in scratch.named_modules():
        sub = layer.get_submodule(sub_name)
        for attr, full in scratch_sub._parameters.items():
            if full is not None and (id(sub), attr) not in leave:
                _copy_full_into(sub._parameters[attr], full)
        for attr, full in scratch_sub._buffers.items():
            if full is not None:
                _copy_full_into(sub._buffers[attr], full)
    scratch.to_empty(device="meta")  # frees the scratch


def _init_by_rule(
    param: torch.Tensor, name: str, labeled: LabeledRule, seed: int, draw_device: torch.device
) -> None:
    full = torch.empty(param.shape, dtype=param.dtype, device=draw_device)
    apply_rule(labeled, name, full, seed=seed)
    _copy_full_into(param, full)


def _copy_full_into(dst: torch.Tensor, full: torch.Tensor) -> None:
    """Write ``full``'s values into ``dst``: only this rank's slice if ``dst`` is a DTensor."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(dst, DTensor):
        local = dst.to_local()  # a view into FSDP's sharded storage
        piece = distribute_tensor(
            full.to(local.device), dst.device_mesh, dst.placements, src_data_rank=None
        ).to_local()
        local.copy_(piece)
    else:  # buffers are replicated, not sharded
        dst.copy_(full.to(dst.device))


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` holds DTensor parameters (a sharded build)."""
    import sys

    tensor_module = sys.modules.get("torch.distributed.tensor")
    if tensor_module is None:  # nothing can be a DTensor before it is imported
        return False
    return any(isinstance(p, tensor_module.DTensor) for p in model.parameters())


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The gathered, unsharded state dict on rank 0 (CPU tensors); ``{}`` on other ranks.

    A collective: every rank must call it. Rank 0 needs the whole model's memory.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def local_parameter_bytes(model: nn.Module) -> int:
    """Bytes of parameter data this rank holds (its shards; each tied tensor once)."""
    from torch.distributed.tensor import DTensor

    total = 0
    for param in model.parameters():
        local = param.to_local() if isinstance(param, DTensor) else param
        total += local.numel() * local.element_size()
    return total
