"""A whole model file: its input, blocks, shared modules, network, init rules and ties."""

from __future__ import annotations

from collections.abc import Mapping
from graphlib import CycleError, TopologicalSorter
from typing import Annotated, Any

from pydantic import (
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from ..registry import LAYERS
from .init_rules import InitRule
from .nodes import BlockRef, Node, ParametricBlock, RepeatNode, SharedRef
from .program import IDENTIFIER, ParamPath
from .tensors import InputSpec
from .validation import (
    Frozen,
    Scope,
    mapping_keys,
    problem,
    raise_problems,
    raise_with,
    scope_context,
)
from .walk import iter_located, iter_nodes
from .yaml_reader import SourceMap

__all__ = ["ModelSpec"]


class ModelSpec(Frozen):
    """A whole model file."""

    name: str | None = Field(default=None, description="a label for logs and checkpoints")
    description: str | None = None
    input: InputSpec
    blocks: dict[Annotated[str, Field(pattern=IDENTIFIER.pattern)], Node] = Field(
        default_factory=dict
    )
    shared: dict[Annotated[str, Field(pattern=IDENTIFIER.pattern)], Node] = Field(
        default_factory=dict
    )
    network: Node
    init: tuple[InitRule, ...] = Field(
        default=(), description="init rules applied before those passed to build (init=...)"
    )
    ties: dict[ParamPath, ParamPath] = Field(
        default_factory=dict,
        description="tied parameters: target path -> source path (the target becomes the source)",
    )

    # Where the spec was written (set by validation; not part of the data): later
    # stages locate their problems in the user's file through it.
    _source: SourceMap | None = PrivateAttr(default=None)
    _root: str = PrivateAttr(default="")

    def __eq__(self, other: object) -> bool:
        # Equal data is an equal spec, wherever it was read from.
        return isinstance(other, ModelSpec) and self.__dict__ == other.__dict__

    @property
    def source(self) -> SourceMap | None:
        """Positions in the file the spec came from (``None`` for a mapping)."""
        return self._source

    @property
    def root(self) -> str:
        """The config path prefix of the spec (``model`` under Hydra, else empty)."""
        return self._root

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> ModelSpec:  # type: ignore[override]
        """Validate ``obj``, with the file's block and shared names in scope for every node."""
        if isinstance(obj, dict):
            scope = Scope(
                mapping_keys(obj.get("blocks")),
                mapping_keys(obj.get("shared")),
                block_params=_declared_params(obj.get("blocks")),
            )
            kwargs["context"] = scope_context(scope, kwargs.get("context"))
        return super().model_validate(obj, **kwargs)

    @model_validator(mode="wrap")
    @classmethod
    def _check_references(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        if isinstance(data, ModelSpec):
            return data
        try:
            spec = handler(data)
        except ValidationError as err:
            # The checks across sections run on every part that did validate,
            # so a broken node elsewhere hides none of their problems.
            partial = _partial_reference_problems(data, info)
            raise_with("ModelSpec", err, partial)
        raise_problems(
            "ModelSpec",
            reference_problems(spec.blocks, spec.shared, [(("network",), spec.network)], spec.ties),
        )
        return spec


def reference_problems(
    blocks: Mapping[str, Any],
    shared: Mapping[str, Any],
    network: list[tuple[tuple[Any, ...], Any]],
    ties: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Problems across sections: block names, misplaced params, flattened repeats, cycles.

    ``network`` is ``[(("network",), node)]``, or the parts of it that
    validated (``(("network", 2), item)``) when it did not; ``blocks`` and
    ``shared`` hold the entries that did.
    """
    problems: list[dict[str, Any]] = []
    for name in blocks:
        if name in LAYERS:
            problems.append(
                problem(
                    "block_shadows_layer",
                    f"block name '{name}' is also a layer type; rename the block",
                    ("blocks", name),
                )
            )
    roots = list(network)
    roots += [(("shared", k), v) for k, v in shared.items()]
    roots += [
        (("blocks", k, "body"), v.body) if isinstance(v, ParametricBlock) else (("blocks", k), v)
        for k, v in blocks.items()
    ]
    for where, root in roots:
        section = where[:1] if where[0] == "network" else where[:2]
        place = ".".join(str(p) for p in section)
        problems += [
            problem(
                "misplaced_params",
                f"a block with 'params' is only allowed directly under blocks: (found inside {place})",
                section,
            )
            for node in iter_nodes(root)
            if isinstance(node, ParametricBlock)
        ]
        problems += _misplaced_flatten(where, root)
    for section, table in (("blocks", blocks), ("shared", shared)):
        kind = BlockRef if section == "blocks" else SharedRef
        attr = "block" if section == "blocks" else "shared"
        graph = {
            name: {getattr(n, attr) for n in iter_nodes(node) if isinstance(n, kind)}
            for name, node in table.items()
        }
        cycle = _find_cycle(graph)
        if cycle:
            problems.append(
                problem(
                    "reference_cycle",
                    f"{section} refer to each other in a cycle: {' -> '.join(cycle)}",
                    (section, cycle[0]),
                )
            )
    tie_cycle = _find_cycle({target: {source} for target, source in ties.items()})
    if tie_cycle:
        problems.append(
            problem(
                "tie_cycle",
                f"ties form a cycle: {' -> '.join(tie_cycle)}; every chain of ties must end at a "
                "parameter that is not itself tied",
                ("ties", tie_cycle[0]),
            )
        )
    return problems


def _misplaced_flatten(where: tuple[Any, ...], root: Any) -> list[dict[str, Any]]:
    """A flattened repeat must sit directly in a list (its copies join that list).

    The walker puts the copies of one that does straight into the list, so
    any flattened repeat it still meets as a node of its own is misplaced.
    """
    return [
        problem(
            "misplaced_flatten",
            "'flatten: true' puts a repeat's copies into the list around it, so the repeat must "
            "be an item of a list; remove 'flatten' here",
            path + ("flatten",),
        )
        for path, node in iter_located(where, root)
        if isinstance(node, RepeatNode) and node.flatten
    ]


_NODE = TypeAdapter(Node)
_TIES = TypeAdapter(dict[ParamPath, ParamPath])


def _partial_reference_problems(data: Any, info: ValidationInfo) -> list[dict[str, Any]]:
    """:func:`reference_problems` over the parts of raw ``data`` that validate on their own."""
    if not isinstance(data, dict):
        return []

    def valid(value: Any, adapter: TypeAdapter[Any] = _NODE) -> Any:
        try:
            return adapter.validate_python(value, context=info.context)
        except ValidationError:
            return None

    tables = {}
    for section in ("blocks", "shared"):
        raw = data.get(section)
        entries = raw.items() if isinstance(raw, dict) else ()
        tables[section] = {
            k: node for k, v in entries if isinstance(k, str) and (node := valid(v)) is not None
        }
    ties = valid(data.get("ties", {}), _TIES) or {}
    raw = data.get("network")
    network = valid(raw) if "network" in data else None
    if network is not None:
        roots = [(("network",), network)]
    elif isinstance(raw, list):  # a list that failed: its items that validate on their own
        items = [(i, n) for i, item in enumerate(raw) if (n := valid(item)) is not None]
        roots = [
            (("network", i, "body"), n.body)  # a flattened repeat is in its list: its body
            if isinstance(n, RepeatNode) and n.flatten
            else (("network", i), n)
            for i, n in items
        ]
    else:
        roots = []
    return reference_problems(tables["blocks"], tables["shared"], roots, ties)


def _declared_params(blocks: Any) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Raw block definitions -> (declared params, required params), before validation."""
    out = {}
    for name, definition in (blocks or {}).items() if isinstance(blocks, dict) else ():
        if isinstance(definition, dict) and isinstance(definition.get("params"), dict):
            params = definition["params"]
            out[name] = (mapping_keys(params), frozenset(k for k, v in params.items() if v is None))
    return out


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (name -> names it refers to) as ``[a, b, a]``, or ``None``.

    ``graphlib`` finds it; the cycle is turned to read in reference order and
    to start at its smallest name, so the message is the same on every run.
    """
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as err:
        ring = list(reversed(err.args[1]))[:-1]  # graphlib lists predecessors first
        start = ring.index(min(ring))
        ring = ring[start:] + ring[:start]
        return ring + ring[:1]
    return None
