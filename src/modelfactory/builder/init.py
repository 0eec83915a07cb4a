"""Stage: initialisation. Every parameter is initialised exactly once, by the last rule that matches it.

Random streams are derived from the seed and a path (the layer's module path
for PyTorch's default init, the parameter's name for rules), so adding or
changing a rule for one layer never changes another layer's values.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ConfigProblem, InitError
from ..registry import INITS, LAYERS
from ..sharing import group_by_identity
from ..spec.init_rules import InitRule, path_glob_match
from .construct import BuildRecord
from .streams import derive_seed, layer_stream, make_generator, param_stream, seed_default_generator

__all__ = [
    "ParamInfo",
    "InitPlan",
    "plan_init",
    "apply_init",
    "apply_rule",
    "replay_default_init",
    "reset_layer",
    "LabeledRule",
]


@dataclass(frozen=True)
class LabeledRule:
    """A rule and where it was written (``init[0]``, ``init.rules[2]``, ...)."""

    rule: InitRule
    path: str


@dataclass
class ParamInfo:
    """One parameter tensor (shared or tied names included) and where it lives."""

    name: str  # the first name: the owner, used for its random stream
    tensor: nn.Parameter
    aliases: list[str] = field(default_factory=list)  # every name, owner first
    owners: list[nn.Module] = field(default_factory=list)  # the module of each alias


def _split(name: str) -> tuple[str, str]:
    module, _, local = name.rpartition(".")
    return module, local


def inventory(model: nn.Module) -> list[ParamInfo]:
    """Every unique parameter with all the names and modules that reach it."""
    modules = dict(model.named_modules(remove_duplicate=False))
    return [
        ParamInfo(
            name=group[0][0],
            tensor=group[0][1],
            aliases=[name for name, _ in group],
            owners=[modules[_split(name)[0]] for name, _ in group],
        )
        for group in group_by_identity(model.named_parameters(remove_duplicate=False))
    ]


def _rule_matches(
    rule: InitRule, alias: str, owner: nn.Module, block_types: dict[str, type]
) -> bool:
    module_path, local = _split(alias)
    if rule.module is not None and not path_glob_match(rule.module, module_path):
        return False
    if rule.param is not None and not path_glob_match(rule.param, local):
        return False
    if rule.type is not None:
        classes = tuple(block_types.get(t) or LAYERS.get(t).target for t in rule.type_names())
        classes = tuple(c for c in classes if inspect.isclass(c))
        if not isinstance(owner, classes):
            return False
    return True


@dataclass
class InitPlan:
    """Which rule initialises which parameter (``None``: PyTorch's default)."""

    params: list[ParamInfo]
    winners: dict[int, LabeledRule | None]

    def covered(self) -> set[int]:
        """ids of the parameters some rule initialises."""
        return {key for key, rule in self.winners.items() if rule is not None}


def _nearest_modules(rule: InitRule, model: nn.Module) -> str:
    """Help for a rule that matched nothing: what its selectors could have meant."""
    paths = [name for name, _ in model.named_modules()]
    if rule.module is not None:
        hits = [p for p in paths if path_glob_match(rule.module, p)]
        if hits:
            owned = sorted(
                {
                    n.rpartition(".")[2]
                    for n, _ in model.named_parameters()
                    if n.rpartition(".")[0] in hits
                }
            )
            return (
                f" Module(s) {', '.join(repr(h) for h in hits[:5])} exist but own no matching parameter"
                f" directly (they own: {', '.join(owned) or 'nothing'}); to reach parameters of"
                f" submodules, use '{rule.module}.**'."
            )
        named = [p for p in paths if p]
        close = difflib.get_close_matches(rule.module, named, n=3, cutoff=0.5)
        hint = f" Nearest module paths: {', '.join(repr(c) for c in close)}." if close else ""
        listing = ", ".join(repr(p) for p in named[:12]) + (", ..." if len(named) > 12 else "")
        return (
            f" No module path matches {rule.module!r}.{hint} Module paths in this model: {listing}."
        )
    types = sorted({type(m).__name__ for m in model.modules()})
    return f" Layer types in this model: {', '.join(types)}."


def plan_init(
    model: nn.Module, rules: Iterable[LabeledRule], block_types: dict[str, type] | None = None
) -> InitPlan:
    """Match rules to parameters; a rule that matches nothing is an error naming it."""
    params = inventory(model)
    winners: dict[int, LabeledRule | None] = {id(p.tensor): None for p in params}
    problems = []
    for labeled in rules:
        matched = 0
        for info in params:
            if any(
                _rule_matches(labeled.rule, a, o, block_types or {})
                for a, o in zip(info.aliases, info.owners, strict=True)
            ):
                winners[id(info.tensor)] = labeled
                matched += 1
        if not matched:
            problems.append(
                ConfigProblem(
                    labeled.path,
                    f"init rule {labeled.rule.describe()} matched no parameter.{_nearest_modules(labeled.rule, model)}"
                    " Fix the selector or remove the rule.",
                )
            )
    if problems:
        raise InitError(f"{len(problems)} init rule(s) matched nothing", problems)
    return InitPlan(params=params, winners=winners)


@functools.cache
def _accepts_generator(fn: Any) -> bool:
    try:
        return "generator" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


Progress = Callable[[int, int], None]


def apply_init(
    plan: InitPlan, *, seed: int, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Apply each parameter's winning rule once; return the init report rows.

    ``progress(done, total)`` is called after each parameter, in elements.
    """
    report = []
    total = sum(info.tensor.numel() for info in plan.params)
    done = 0
    with torch.no_grad():
        for info in plan.params:
            done += info.tensor.numel()
            if progress is not None:
                progress(done, total)
            labeled = plan.winners[id(info.tensor)]
            row: dict[str, Any] = {
                "param": info.name,
                "aliases": info.aliases[1:],
                "shape": list(info.tensor.shape),
            }
            if labeled is None:
                owner = type(info.owners[0]).__name__
                fill = getattr(info.owners[0], "_mf_fills", {}).get(_split(info.aliases[0])[1])
                scheme = (
                    f"{owner} default (reset_parameters)"
                    if fill is None
                    else f"{owner} parameters: fill {fill}"
                )
                report.append(row | {"rule": "default", "scheme": scheme, "args": {}})
                continue
            rule = labeled.rule
            if info.tensor.device.type != "meta":
                apply_rule(labeled, info.name, info.tensor, seed=seed)
            report.append(
                row | {"rule": labeled.path, "scheme": rule.scheme, "args": dict(rule.args)}
            )
    return report


def apply_rule(labeled: LabeledRule, name: str, tensor: torch.Tensor, *, seed: int) -> None:
    """Fill ``tensor`` (the full parameter ``name``) by ``labeled``'s scheme from its own stream.

    The stream is the parameter's (``param:<name>``, on the tensor's device),
    so the values do not depend on which other tensors are initialised, nor
    on whether ``tensor`` is the parameter itself or a full-size scratch copy
    that a sharded build slices afterwards.
    """
    rule = labeled.rule
    fn = INITS.get(rule.scheme).target
    kwargs = dict(rule.args)
    if _accepts_generator(fn):
        kwargs["generator"] = make_generator(seed, param_stream(name), tensor.device)
    try:
        fn(tensor, **kwargs)
    except Exception as err:  # torch's own checks (e.g. xavier on a 1-D tensor)
        raise InitError(
            f"init rule {labeled.path} failed on parameter '{name}'",
            [
                ConfigProblem(
                    labeled.path,
                    f"{rule.describe()} cannot initialise '{name}' "
                    f"(shape {list(tensor.shape)}): {err}. Narrow the rule's selectors.",
                )
            ],
        ) from err


def reset_layer(module: nn.Module) -> None:
    """PyTorch's own init for one layer: reset every submodule, children first (as construction does)."""
    for child in module.children():
        reset_layer(child)
    reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
    if callable(reset):
        reset()


def replay_default_init(
    record: BuildRecord,
    *,
    seed: int,
    device: torch.device,
    skip: set[int],
    tied_away: set[tuple[int, str]] = frozenset(),
) -> None:
    """Run each layer's default init from its own seeded stream, as direct construction did.

    Layers in ``skip`` (every parameter covered by a rule, no buffers) are not
    touched: their values come from the rules alone, so nothing is initialised
    twice. A parameter tied away to another layer's tensor (``tied_away``:
    ``(id(module), attribute)``) gets a scratch tensor while its layer resets,
    so the reset neither overwrites the tie's owner nor shifts any stream.
    """
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork), torch.no_grad():
        for path, layer in record.layers:
            if id(layer) in skip:
                continue
            swapped = []
            for module in layer.modules():
                for attr, param in list(module._parameters.items()):
                    if (id(module), attr) in tied_away and param is not None:
                        module._parameters[attr] = nn.Parameter(torch.empty_like(param))
                        swapped.append((module, attr, param))
            seed_default_generator(device, derive_seed(seed, layer_stream(path)))
            reset_layer(layer)
            for module, attr, param in swapped:
                module._parameters[attr] = param


def fully_covered_layers(record: BuildRecord, covered: set[int]) -> set[int]:
    """ids of layers whose every parameter a rule initialises and that hold no buffers."""
    skip = set()
    for _, layer in record.layers:
        params = list(layer.parameters())
        if params and not list(layer.buffers()) and all(id(p) in covered for p in params):
            skip.add(id(layer))
    return skip
