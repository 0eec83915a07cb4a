"""The public pipeline: each stage once, from whatever stage the caller has, to a built model.

    text / mapping / path --validate--> ModelSpec --resolve--> ResolvedSpec
        --check--> CheckedSpec --build--> nn.Module (constructed, tied, initialised once)

Each function here takes the earliest form it is given and runs only the
stages still missing: a :class:`CheckedSpec` is never validated, resolved or
checked again. ``load`` rebuilds a model from its checkpoint on the meta
device, so it constructs once and allocates only what it reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ValidationError
from torch import nn

from .builder.construct import BuildInfo, BuildRecord, construct
from .builder.init import (
    LabeledRule,
    apply_init,
    fully_covered_layers,
    plan_init,
    replay_default_init,
)
from .builder.materialize import (
    META_THRESHOLD,
    estimate_parameters,
    has_unsaved_buffers,
    materialize,
    meta_safe,
)
from .builder.ties import apply_ties
from .checker.limits import check_structure, enforce_parameter_budget
from .checker.shapes import CheckedSpec
from .checker.shapes import check as check_shapes
from .devices import resolve_device
from .errors import InitDoesNotFit, InitError, ModelFactoryError
from .io.checkpoint import check_ties, read_checkpoint
from .io.weights import check_weights, load_weights
from .resolve import ResolvedSpec, resolve
from .safety.terminal import printable
from .spec.init_rules import InitSpec
from .spec.model import ModelSpec
from .spec.validate import plain_data, problems_from, to_spec
from .spec.yaml_reader import load_yaml_file
from .zoo import init_path, is_name

__all__ = ["validate", "check", "build", "load", "to_init_spec", "to_resolved", "to_checked"]

log = logging.getLogger(__name__)

InitLike = InitSpec | Mapping[str, Any] | Sequence[Any] | str | Path | None
Strategy = Literal["auto", "meta", "direct"]
Stage = CheckedSpec | ResolvedSpec | ModelSpec


def validate(spec: Any) -> ModelSpec:
    """Validate a YAML path, mapping or spec; raise one error listing every problem.

    Also refuses a spec whose module tree, constants or input are over the size
    limits (counted from the spec; nothing is built).
    """
    if isinstance(spec, (CheckedSpec, ResolvedSpec)):
        return spec.spec
    model_spec = spec if isinstance(spec, ModelSpec) else to_spec(spec)
    check_structure(model_spec)
    return model_spec


def to_resolved(spec: Any) -> ResolvedSpec:
    """Advance ``spec`` to a :class:`ResolvedSpec`, running only the stages it still needs."""
    if isinstance(spec, ResolvedSpec):
        return spec
    if isinstance(spec, CheckedSpec):
        return spec.resolved
    validated = validate(spec)
    resolved = resolve(validated)
    if resolved.spec is not validated:  # sizes computed from block parameters: limits again
        check_structure(resolved.spec)
    return resolved


def to_checked(spec: Any) -> CheckedSpec:
    """Advance ``spec`` to a :class:`CheckedSpec`, running only the stages it still needs."""
    if isinstance(spec, CheckedSpec):
        return spec
    return check_shapes(to_resolved(spec))


def check(spec: Any) -> CheckedSpec:
    """Validate, resolve and shape-check ``spec`` (a path, mapping or spec) without building it.

    Omitted sizes are inferred, shape mismatches are reported with their config
    path (and ``file:line``), and the parameter budget is enforced. The result
    builds without any of these stages running again.
    """
    return to_checked(spec)


def to_init_spec(init: InitLike, *, root: str = "init") -> InitSpec:
    """Accept an :class:`InitSpec`, a mapping ``{rules: [...]}``, a list of rules, a YAML path,
    or the name of a preset shipped with modelfactory (``"xavier"``; see ``list_inits()``)."""
    if init is None:
        return InitSpec()
    if isinstance(init, InitSpec):
        return init
    source = None
    if isinstance(init, str) and is_name(init) and not Path(init).is_file():
        init = init_path(init)  # a preset by name: "xavier" is conf/init/xavier.yaml
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
    spec: Any,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    init: InitLike = None,
    strategy: Strategy = "auto",
    progress: Callable[[int, int], None] | None = None,
    check: bool = True,
) -> nn.Module:
    """Build the ``nn.Module`` described by ``spec`` on ``device``, initialised exactly once.

    ``spec`` may be a YAML path, a zoo model's name (``"resnet18"``), a mapping (a Hydra ``DictConfig`` too), a
    validated :class:`ModelSpec`, or a :class:`ResolvedSpec` or
    :class:`CheckedSpec` from :func:`check`; only the stages it still needs
    run. ``init`` adds rules after the model file's own ``init:`` section
    (later rules win): rules, a YAML path or a preset's name (``"xavier"``). ``strategy`` picks how tensors are made: ``meta``
    constructs on the meta device and allocates once on the target,
    ``direct`` constructs on the target, ``auto`` takes ``meta`` for large
    models. Both give identical values for the same seed and rules.
    ``progress(done, total)`` is called as parameters are initialised (elements).

    ``check=False`` skips the shape check, and only that. Its one consequence:
    nothing is known about shapes before the model runs, so sizes cannot be
    omitted and a mismatch shows up at forward time; the parameter budget is
    then counted on the constructed model (before init) instead of on the
    dry run.
    """
    check_seed(seed)
    if strategy not in ("auto", "meta", "direct"):
        raise ModelFactoryError(f"strategy: must be 'auto', 'meta' or 'direct', found {strategy!r}")
    target = resolve_device(device)
    init_spec = to_init_spec(init)
    stage: Stage = to_checked(spec) if check else spec_without_check(spec)
    check_init_fits(init_spec, stage.spec)
    return _assemble(stage, target, seed, init_spec, strategy, progress, initialize=True)


def check_seed(seed: Any) -> None:
    """Refuse a seed that is not a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ModelFactoryError(f"seed: must be a non-negative integer, found {seed!r}")


def labeled_rules(spec: ModelSpec, init_spec: InitSpec) -> list[LabeledRule]:
    """The model file's own init rules, then those passed to build, each with where it was written."""
    rules = [LabeledRule(r, f"init[{i}]") for i, r in enumerate(spec.init)]
    return rules + [LabeledRule(r, f"init.rules[{i}]") for i, r in enumerate(init_spec.rules)]


def check_init_fits(init_spec: InitSpec, spec: ModelSpec) -> None:
    """Refuse a preset whose ``models:`` list does not name this (named) model, before building."""
    if init_spec.models is None or spec.name is None or spec.name in init_spec.models:
        return
    preset = f"init preset '{init_spec.name}'" if init_spec.name else "this init config"
    raise InitDoesNotFit(
        f"{preset} is written for the models {', '.join(init_spec.models)} (its rules address "
        f"their module paths); '{printable(spec.name, 80)}' is not one of them. Pick another "
        "preset (python -m modelfactory ls inits), or add the model to the preset's models: list "
        "if its rules fit it."
    )


def spec_without_check(spec: Any) -> Stage:
    """The latest stage of ``spec`` short of the shape check (resolving it if needed)."""
    return spec if isinstance(spec, CheckedSpec) else to_resolved(spec)


def _assemble(
    stage: Stage,
    target: torch.device,
    seed: int,
    init_spec: InitSpec,
    strategy: Strategy,
    progress: Callable[[int, int], None] | None,
    *,
    initialize: bool,
    before_allocate: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """Construct once (meta or direct), tie, and initialise once; attach the build facts.

    ``before_allocate(model)`` sees the constructed model before its tensors
    are allocated (on the meta path; right after construction otherwise).
    """
    spec = stage.spec
    counted = isinstance(stage, CheckedSpec)  # the budget was enforced by the check
    rules = labeled_rules(spec, init_spec)
    # Identical values on every device: build and initialise on the CPU, then move.
    on_cpu_first = init_spec.cpu_generator and target.type not in ("cpu", "meta")
    build_device = torch.device("cpu") if on_cpu_first else target

    use_meta = strategy == "meta" or (
        strategy == "auto" and estimate_parameters(spec) >= META_THRESHOLD
    )
    made = None
    if use_meta:
        made = _via_meta(spec, rules, seed, build_device, initialize, counted, before_allocate)
    chosen = "meta" if made is not None else "direct"
    if made is None:
        model, record = construct(spec, device=build_device, seed=seed)
        if not counted:  # counted after construction: the shape check counts before
            enforce_parameter_budget(model)
        pairs = apply_ties(model, spec.ties)
        if before_allocate is not None:
            before_allocate(model)
        made = (model, record, pairs)
    model, record, pairs = made

    if rules and initialize:
        plan = plan_init(model, rules, record.block_types)  # on the final parameter objects
        report: Any = apply_init(plan, seed=seed, progress=progress)
    else:  # nothing to apply: the all-default report is only built if someone reads it
        report = _DefaultReport(model, record.block_types, seed)
    if build_device != target:
        model.to(target)

    model.modelfactory_info = BuildInfo(
        spec=spec,
        seed=seed,
        device=str(target),
        init=[{"path": r.path, **r.rule.model_dump()} for r in rules],
        facts={"strategy": chosen, "cpu_generator": bool(on_cpu_first), "ties": dict(pairs)},
        report=report,
    )
    log.debug("built %s on %s via %s", type(model).__name__, target, chosen)
    return model


class _DefaultReport:
    """The init report of a model no rule touched, made only when someone reads it."""

    def __init__(self, model: nn.Module, block_types: dict[str, type], seed: int) -> None:
        self.model, self.block_types, self.seed = model, block_types, seed

    def __call__(self) -> list[dict[str, Any]]:
        return apply_init(plan_init(self.model, [], self.block_types), seed=self.seed)


def _via_meta(
    spec: ModelSpec,
    rules: list[LabeledRule],
    seed: int,
    device: torch.device,
    initialize: bool,
    counted: bool,
    before_allocate: Callable[[nn.Module], None] | None,
) -> tuple[nn.Module, BuildRecord, list[tuple[str, str]]] | None:
    """Construct on meta, allocate once on ``device``, default-init what rules leave.

    ``None`` when some layer could not get its values back after ``to_empty``
    (the caller then builds directly; the log says why).
    """
    model, record = construct(spec, device=torch.device("meta"), seed=seed)
    why_not = meta_safe(model, record)
    if why_not is not None:
        log.info("building directly on %s instead of via meta: %s", device, why_not)
        return None
    if not counted:  # on meta tensors: before anything is allocated
        enforce_parameter_budget(model)
    pairs = apply_ties(model, spec.ties)
    if before_allocate is not None:  # tied, so each tensor appears once
        before_allocate(model)
    plan = plan_init(model, rules, record.block_types) if rules and initialize else None
    # layer ids survive materialising; parameter objects may not
    skip = fully_covered_layers(record, plan.covered()) if plan else set()
    if not initialize:  # the caller overwrites every saved tensor; keep the rest valid
        skip = {id(layer) for _, layer in record.layers if not has_unsaved_buffers(layer)}
    if device.type != "meta":
        tied_away = {
            (id(model.get_submodule(target.rpartition(".")[0])), target.rpartition(".")[2])
            for target, _ in pairs
        }
        materialize(model, record, device=device, seed=seed, tied_away=tied_away)
        replay_default_init(record, seed=seed, device=device, skip=skip, tied_away=tied_away)
    return model, record, pairs


def load(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    strict: bool = True,
    verify: bool = True,
) -> nn.Module:
    """Rebuild a model from its checkpoint alone and load its weights strictly.

    A strict load constructs the stored architecture once, on the meta device;
    the file's names, shapes and dtypes are matched against it before anything
    is allocated; then each tensor is allocated once on ``device`` and
    overwritten from the file (no init pass). ``strict=False`` builds and
    initialises first, loads the tensors that match and logs (as warnings)
    what it skipped. The file's checksum is verified on the same read
    (``verify=False`` skips it). See ``docs/checkpoints.md``.
    """
    stored = read_checkpoint(path)
    target = resolve_device(device)
    check_structure(stored.spec)
    resolved = resolve(stored.spec)  # stored specs are already expanded: no work
    if not strict:
        model = _assemble(resolved, target, stored.seed, InitSpec(), "auto", None, initialize=True)
        load_weights(model, path, strict=False, verify=verify)
        check_ties(model, stored)
        return model
    model = _assemble(
        resolved,
        target,
        stored.seed,
        InitSpec(),
        "meta",
        None,
        initialize=False,
        # names, shapes and dtypes of the file against the meta model: nothing allocated yet
        before_allocate=lambda meta_model: check_weights(meta_model, path),
    )
    load_weights(model, path, strict=True, verify=verify)
    check_ties(model, stored)
    return model
