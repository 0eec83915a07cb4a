"""Which modules become FSDP units: glob rules on module paths, checked before anything is sharded.

``fully_shard`` is applied to each unit, inner units first, and to the root
last. A parameter must belong to exactly one unit: FSDP2 (torch 2.13) shards
a parameter reached from two units twice, silently breaks the tie, and only
fails at the first forward. So a plan that would split a tied parameter or a
shared module's parameters across units is refused here, on the meta model,
with the unit layout that fixes it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter

from torch import nn

from ..errors import ConfigProblem, ModelFactoryError
from ..safety.globs import path_glob_match
from ..sharing import group_by_identity
from ..spec.parallel import ShardRule

__all__ = ["ShardError", "ShardUnit", "ShardPlan", "plan_shards", "ROOT_UNIT"]

ROOT_UNIT = "<root>"


class ShardError(ModelFactoryError):
    """A shard plan cannot be applied to this model."""


@dataclass(frozen=True)
class ShardUnit:
    """One FSDP unit: the modules ``fully_shard`` is called on together."""

    label: str  # "layers.0", or "embedding+head" for a group
    paths: tuple[str, ...]  # each module's first path
    rule: str  # the config path of the rule that made it, e.g. "parallel.shard[0]"


@dataclass(frozen=True)
class ShardPlan:
    """The units in the order ``fully_shard`` must see them (inner first); the root comes last."""

    units: tuple[ShardUnit, ...]
    # module path (every path, shared modules' too) -> the label of the unit that holds it
    unit_of: dict[str, str]

    @property
    def labels(self) -> list[str]:
        """Every unit's label, the root's last."""
        return [unit.label for unit in self.units] + [ROOT_UNIT]


def _holds_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _no_match_hint(globs: Sequence[str], paths: list[str]) -> str:
    close: list[str] = []
    for glob in globs:
        close += difflib.get_close_matches(glob, paths, n=3, cutoff=0.5)
    hint = f" Nearest module paths: {', '.join(repr(c) for c in close[:3])}." if close else ""
    top = [p for p in paths if "." not in p]
    listing = ", ".join(repr(p) for p in top[:12]) + (", ..." if len(top) > 12 else "")
    return f"{hint} Top-level modules: {listing or 'none'}."


def _select(
    model: nn.Module, rules: Sequence[ShardRule], root: str
) -> tuple[list[ShardUnit], list[list[nn.Module]], list[ConfigProblem]]:
    named = [(p, m) for p, m in model.named_modules(remove_duplicate=False) if p]
    first_path: dict[int, str] = {}
    for path, module in named:
        first_path.setdefault(id(module), path)
    paths = list(dict.fromkeys(p for p, _ in named))
    units: list[ShardUnit] = []
    members: list[list[nn.Module]] = []
    claimed: dict[int, str] = {}  # id(module) -> the rule that claimed it
    problems: list[ConfigProblem] = []
    for index, rule in enumerate(rules):
        where = f"{root}[{index}]"
        globs = (rule,) if isinstance(rule, str) else tuple(rule)
        hits: dict[int, nn.Module] = {}
        for path, module in named:
            if any(path_glob_match(g, path) for g in globs):
                hits.setdefault(id(module), module)
        if not hits:
            problems.append(
                ConfigProblem(
                    where,
                    f"{list(globs) if len(globs) > 1 else globs[0]!r} matched no module."
                    f"{_no_match_hint(globs, paths)} Fix the glob or remove the rule.",
                )
            )
            continue
        chosen = [m for m in hits.values() if _holds_parameters(m)]
        if not chosen:
            kinds = sorted({type(m).__name__ for m in hits.values()})
            problems.append(
                ConfigProblem(
                    where,
                    f"{rule!r} matched only modules without parameters ({', '.join(kinds)}); "
                    "an FSDP unit shards parameters. Select the modules that hold them.",
                )
            )
            continue
        taken = [m for m in chosen if id(m) in claimed]
        for module in taken:
            problems.append(
                ConfigProblem(
                    where,
                    f"module '{first_path[id(module)]}' is already in a unit from "
                    f"{claimed[id(module)]}; a module can be in one FSDP unit only. "
                    "Narrow one of the globs.",
                )
            )
        if taken:
            continue
        groups = [chosen] if not isinstance(rule, str) else [[m] for m in chosen]
        for group in groups:
            group_paths = tuple(first_path[id(m)] for m in group)
            nested = [
                (a, b) for a in group_paths for b in group_paths if a != b and b.startswith(a + ".")
            ]
            if nested:
                outer, inner = nested[0]
                problems.append(
                    ConfigProblem(
                        where,
                        f"the group lists '{inner}', which is inside '{outer}'; a group's "
                        f"modules must be disjoint. Drop '{inner}' from it.",
                    )
                )
                continue
            for module in group:
                claimed[id(module)] = where
            units.append(ShardUnit("+".join(group_paths), group_paths, where))
            members.append(group)
    return units, members, problems


def _unit_of_paths(
    model: nn.Module, units: list[ShardUnit], members: list[list[nn.Module]]
) -> dict[str, str]:
    """Every module path -> the label of the innermost unit holding it (by module identity)."""
    label_of = {
        id(m): unit.label for unit, group in zip(units, members, strict=True) for m in group
    }
    modules = dict(model.named_modules(remove_duplicate=False))
    out: dict[str, str] = {}
    for path in modules:
        parts = path.split(".") if path else []
        found = ROOT_UNIT
        for cut in range(len(parts), 0, -1):
            label = label_of.get(id(modules[".".join(parts[:cut])]))
            if label is not None:
                found = label
                break
        out[path] = found
    return out


def _order(
    model: nn.Module, units: list[ShardUnit], members: list[list[nn.Module]], root: str
) -> list[ShardUnit]:
    """Inner units before the units that enclose them (``fully_shard`` goes bottom up)."""
    label_of = {
        id(m): unit.label for unit, group in zip(units, members, strict=True) for m in group
    }
    modules = dict(model.named_modules(remove_duplicate=False))
    by_label = {unit.label: unit for unit in units}
    after: dict[str, set[str]] = {unit.label: set() for unit in units}
    for path, module in modules.items():
        inner = label_of.get(id(module))
        if inner is None or not path:
            continue
        parts = path.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            outer = label_of.get(id(modules[".".join(parts[:cut])]))
            if outer is not None and outer != inner:
                after[outer].add(inner)
                break
    sorter = TopologicalSorter(after)
    try:
        sorter.prepare()
    except CycleError as err:
        cycle = " -> ".join(f"'{label}'" for label in err.args[1])
        raise ShardError(
            "invalid shard plan",
            [
                ConfigProblem(
                    root,
                    f"units enclose each other in a cycle ({cycle}): one group holds a module "
                    "inside another unit that holds a module inside the group. Split the groups.",
                )
            ],
        ) from None
    rank = {unit.label: i for i, unit in enumerate(units)}
    order: list[ShardUnit] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=rank.__getitem__)
        order += [by_label[label] for label in ready]
        sorter.done(*ready)
    return order


def _split_parameters(
    model: nn.Module, unit_of: dict[str, str], units: list[ShardUnit]
) -> list[ConfigProblem]:
    rule_of = {unit.label: unit.rule for unit in units}
    modules = dict(model.named_modules(remove_duplicate=False))
    problems = []
    for group in group_by_identity(model.named_parameters(remove_duplicate=False)):
        names = [name for name, _ in group]
        where = {name: unit_of[name.rpartition(".")[0]] for name in names}
        if len(set(where.values())) < 2:
            continue
        placed = ", ".join(f"'{n}' in unit '{u}'" for n, u in where.items())
        rule = next(rule_of[u] for u in where.values() if u != ROOT_UNIT)
        owners = {id(modules[n.rpartition(".")[0]]) for n in names}
        if len(owners) == 1:
            owner = names[0].rpartition(".")[0]
            fix = (
                f"Make the shared module its own unit (a rule '{owner}'), or leave all its uses "
                "to one enclosing unit (e.g. the root)."
            )
            what = f"shared module '{owner}' is used in several FSDP units"
        else:
            mods = sorted({n.rpartition(".")[0] for n in names})
            fix = (
                f"Shard its owners together with a group rule ({mods!r}, one list item of "
                "parallel.shard), or leave them all to one enclosing unit (e.g. the root)."
            )
            what = f"tied parameter {' = '.join(repr(n) for n in names)} would be split"
        problems.append(
            ConfigProblem(
                rule,
                f"{what} ({placed}). FSDP2 shards a parameter in one unit only, and torch "
                f"would fail at the first forward. {fix}",
            )
        )
    return problems


def plan_shards(
    model: nn.Module, rules: Sequence[ShardRule], *, root: str = "parallel.shard"
) -> ShardPlan:
    """Choose and check the FSDP units of ``model`` (on any device, ``meta`` included).

    Each rule is a glob (every module it matches becomes its own unit) or a
    list of globs (the modules they match form one unit). Modules without
    parameters are passed over. Every problem is reported at once, each at
    its rule's config path: a rule matching nothing, a module in two units,
    and a tied parameter or shared module split across units.
    """
    units, members, problems = _select(model, rules, root)
    if problems:
        raise ShardError(f"invalid shard plan: {len(problems)} problem(s)", problems)
    unit_of = _unit_of_paths(model, units, members)
    problems = _split_parameters(model, unit_of, units)
    if problems:
        raise ShardError(f"invalid shard plan: {len(problems)} problem(s)", problems)
    return ShardPlan(units=tuple(_order(model, units, members, root)), unit_of=unit_of)
