"""The public pipeline: ``build`` a model from a spec, ``load`` one from a checkpoint.

build: spec -> construct (meta or direct) -> materialise -> init exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ValidationError
from torch import nn

from .builder import BuildInfo, BuildRecord, construct
from .check import check as run_check
from .checkpoint import check_ties, read_checkpoint
from .devices import resolve_device
from .errors import InitError, ModelFactoryError
from .initialize import (
    LabeledRule,
    apply_init,
    fully_covered_layers,
    plan_init,
    replay_default_init,
)
from .initspec import InitSpec
from .limits import check_structure, enforce_parameter_budget
from .materialize import META_THRESHOLD, estimate_parameters, materialize, meta_safe
from .parse import plain_data, problems_from, to_spec
from .resolve import resolve
from .source import load_yaml_file
from .spec import ModelSpec
from .ties import apply_ties
from .weights import check_weights, load_weights

__all__ = ["build", "load", "validate", "to_init_spec"]

log = logging.getLogger(__name__)

InitLike = InitSpec | Mapping[str, Any] | Sequence[Any] | str | Path | None
Strategy = Literal["auto", "meta", "direct"]


def validate(spec: Any) -> ModelSpec:
    """Validate a YAML path, mapping or spec; raise one error listing every problem."""
    return to_spec(spec)


def to_init_spec(init: InitLike, *, root: str = "init") -> InitSpec:
    """Accept an :class:`InitSpec`, a mapping ``{rules: [...]}``, a list of rules, or a YAML path."""
    if init is None:
        return InitSpec()
    if isinstance(init, InitSpec):
        return init
    source = None
    if isinstance(init, (str, Path)):
        loaded = load_yaml_file(init)
        data, source = loaded.data, loaded.source
    else:
        data = plain_data(init)
    if isinstance(data, (list, tuple)):
        data = {"rules": list(data)}
    if not isinstance(data, Mapping):
        raise InitError(
            f"{root}: an init config must be a mapping with 'rules' or a list of rules, found {type(data).__name__}"
        )
    try:
        return InitSpec.model_validate(dict(data))
    except ValidationError as err:
        problems = problems_from(err, source, root)
        raise InitError(f"invalid init config: {len(problems)} problem(s)", problems) from None


def build(
    spec: ModelSpec | Any,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    init: InitLike = None,
    strategy: Strategy = "auto",
    progress: Callable[[int, int], None] | None = None,
    check: bool = True,
    initialize: bool = True,
) -> nn.Module:
    """Build the ``nn.Module`` described by ``spec`` on ``device``, initialised exactly once.

    ``spec`` may be a YAML path, a mapping (a Hydra ``DictConfig`` too) or a
    validated :class:`ModelSpec`. ``init`` adds rules after the model file's own
    ``init:`` section (later rules win). ``strategy`` picks how tensors are made:
    ``meta`` constructs on the meta device and allocates once on the target,
    ``direct`` constructs on the target, ``auto`` takes ``meta`` for large
    models. Both give identical values for the same seed and rules.
    ``progress(done, total)`` is called as parameters are initialised (elements).

    ``check`` runs the shape check first (a dry run on ``meta``: omitted sizes
    are inferred; shape mismatches and models over the parameter budget are
    reported before anything is allocated). It is required when sizes are
    omitted, and can be skipped for a spec :func:`modelfactory.check` already
    resolved; the budget is then enforced on the meta path before allocating
    and on the direct path (models estimated small) right after.
    ``initialize=False`` skips every init on the meta path (values are left
    uninitialised), for callers that overwrite all of them, as :func:`load` does.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ModelFactoryError(f"seed: must be a non-negative integer, found {seed!r}")
    if strategy not in ("auto", "meta", "direct"):
        raise ModelFactoryError(f"strategy: must be 'auto', 'meta' or 'direct', found {strategy!r}")
    model_spec = to_spec(spec)
    if check:  # the dry run also enforces the parameter budget, before anything is allocated
        model_spec = run_check(model_spec).spec
    else:  # blocks still expanded; bounded by module count, constant and input sizes
        model_spec = resolve(model_spec).spec
        check_structure(model_spec)
    init_spec = to_init_spec(init)
    rules = [LabeledRule(r, f"init[{i}]") for i, r in enumerate(model_spec.init)]
    rules += [LabeledRule(r, f"init.rules[{i}]") for i, r in enumerate(init_spec.rules)]
    target = resolve_device(device)
    # Identical values on every device: build and initialise on the CPU, then move.
    on_cpu_first = init_spec.cpu_generator and target.type not in ("cpu", "meta")
    build_device = torch.device("cpu") if on_cpu_first else target

    use_meta = strategy == "meta" or (
        strategy == "auto" and estimate_parameters(model_spec) >= META_THRESHOLD
    )
    made = _via_meta(model_spec, rules, seed, build_device, initialize) if use_meta else None
    chosen = "meta" if made is not None else "direct"
    if made is None:
        made = construct(model_spec, device=build_device, seed=seed)
        if not check:  # estimated small: counted after construction (the check counts before)
            enforce_parameter_budget(made[0])
        made = (*made, apply_ties(made[0], model_spec.ties))
    model, record, pairs = made

    if rules and initialize:
        plan = plan_init(model, rules, record.block_types)  # on the final parameter objects
        report: Any = apply_init(plan, seed=seed, progress=progress)
    else:  # nothing to apply: the all-default report is only built if someone reads it
        blocks = record.block_types
        report = lambda: apply_init(plan_init(model, [], blocks), seed=seed)  # noqa: E731
    if build_device != target:
        model.to(target)

    model.modelfactory_info = BuildInfo(
        spec=model_spec,
        seed=seed,
        device=str(target),
        init=[{"path": r.path, **r.rule.model_dump()} for r in rules],
        facts={"strategy": chosen, "cpu_generator": bool(on_cpu_first), "ties": dict(pairs)},
        report=report,
    )
    log.debug("built %s on %s via %s", type(model).__name__, target, chosen)
    return model


def _via_meta(
    spec: ModelSpec,
    rules: list[LabeledRule],
    seed: int,
    device: torch.device,
    initialize: bool,
) -> tuple[nn.Module, BuildRecord, list[tuple[str, str]]] | None:
    """Construct on meta, check, allocate once on ``device``, default-init what rules leave.

    ``None`` when some layer could not get its values back after ``to_empty``
    (the caller then builds directly; the log says why).
    """
    model, record = construct(spec, device=torch.device("meta"), seed=seed)
    why_not = meta_safe(model, record)
    if why_not is not None:
        log.info("building directly on %s instead of via meta: %s", device, why_not)
        return None
    # Budget, ties and rules are checked on meta tensors, before anything is allocated.
    enforce_parameter_budget(model)
    pairs = apply_ties(model, spec.ties)
    plan = plan_init(model, rules, record.block_types) if rules else None
    # layer ids survive materialising; parameter objects may not
    skip = fully_covered_layers(record, plan.covered()) if plan else set()
    if not initialize:  # the caller overwrites every saved tensor; keep the rest valid
        skip = {id(layer) for _, layer in record.layers if not _has_unsaved_buffers(layer)}
    if device.type != "meta":
        materialize(model, record, device=device, seed=seed)
        tied_away = {
            (id(model.get_submodule(target.rpartition(".")[0])), target.rpartition(".")[2])
            for target, _ in pairs
        }
        replay_default_init(record, seed=seed, device=device, skip=skip, tied_away=tied_away)
    return model, record, pairs


def _has_unsaved_buffers(layer: nn.Module) -> bool:
    """True if a layer holds non-persistent buffers, which no checkpoint restores."""
    return any(m._non_persistent_buffers_set for m in layer.modules())


def load(path: str | Path, *, device: str | torch.device = "cpu", strict: bool = True) -> nn.Module:
    """Rebuild a model from its checkpoint alone and load its weights strictly.

    A strict load overwrites every saved tensor, so large models skip their
    init pass entirely (``initialize=False``). ``strict=False`` initialises
    first, loads the tensors that match and logs (as warnings) what it skipped.
    See ``docs/checkpoints.md``.
    """
    stored = read_checkpoint(path)
    if strict:
        # Match names and shapes on a meta-device build first (this also runs the
        # shape check): a file cannot make us allocate more than the weights it holds.
        check_weights(build(stored.spec, device="meta", seed=stored.seed), path)
    model = build(
        stored.spec, device=device, seed=stored.seed, initialize=not strict, check=not strict
    )
    load_weights(model, path, strict=strict)
    check_ties(model, stored)
    return model
