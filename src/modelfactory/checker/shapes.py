"""Stage 3: :class:`ResolvedSpec` -> :class:`CheckedSpec`: shapes worked out, sizes filled in, budget held.

The spec is evaluated symbolically (:mod:`.evaluate`): the declared input's
shape flows through every layer and op by the rule beside its registration;
nothing is allocated and no layer runs, except, on the meta device, those
without a rule. Omitted sizes are filled into the spec; the parameter and
module counts are held to the limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ShapeError, format_path
from ..registry.symbolic import TensorMeta
from ..resolve import ResolvedSpec
from ..spec.model import ModelSpec
from ..spec.nodes import LayerNode
from .evaluate import Evaluator, shapes_of
from .limits import current_limits

__all__ = ["CheckedSpec", "check"]

Path = tuple[Any, ...]


@dataclass(frozen=True)
class CheckedSpec:
    """A spec ready to build: sizes inferred and filled in, shapes known, budget enforced.

    A function that receives one never validates, resolves or checks again.
    """

    spec: ModelSpec  # the resolved spec with inferred sizes filled in
    resolved: ResolvedSpec  # where each path came from, for errors found later
    output_shapes: list[list[int]]
    inferred: dict[str, dict[str, int]] = field(default_factory=dict)  # config path -> values
    elements: int = 0  # parameter and buffer elements (each tensor once), within the budget


def _with_node(node: Any, key: Path, new: LayerNode) -> Any:
    """``node`` with the node at relative config path ``key`` replaced by ``new`` (no re-validation)."""
    if not key:
        return new
    head, rest = key[0], key[1:]
    if isinstance(node, (list, tuple)):
        items = list(node)
        items[head] = _with_node(items[head], rest, new)
        return items
    value = getattr(node, head)  # a mapping field of a composite or named sequential
    name, deeper = rest[0], rest[1:]
    return node.model_copy(update={head: {**value, name: _with_node(value[name], deeper, new)}})


def _filled(spec: ModelSpec, completed: dict[Path, LayerNode]) -> ModelSpec:
    """``spec`` with each inferred layer replaced by its completed (already validated) node."""
    network, shared = spec.network, dict(spec.shared)
    for path, node in completed.items():
        if path[0] == "network":
            network = _with_node(network, path[1:], node)
        else:  # ("shared", name, ...)
            shared[path[1]] = _with_node(shared[path[1]], path[2:], node)
    filled = spec.model_copy(update={"network": network, "shared": shared})
    filled._source, filled._root = spec.source, spec.root
    return filled


def check(resolved: ResolvedSpec) -> CheckedSpec:
    """Work out every shape, infer omitted sizes and hold the budget; raise :class:`ShapeError`.

    Problems are located in the user's file through ``resolved`` (``model.network[0]``,
    ``conf/model/mlp.yaml:5:5``).
    """
    spec = resolved.spec
    evaluator = Evaluator(resolved, current_limits())
    x = TensorMeta(spec.input.shape, spec.input.resolved_dtype)
    evaluator.bound(x, ("input", "shape"), "the declared input")
    output = evaluator.node(spec.network, ("network",), "", (x,))
    evaluator.untie()
    never = evaluator.never_ran()
    if never:
        raise ShapeError("shape check failed", never)
    final = _filled(spec, evaluator.completed) if evaluator.completed else spec
    inferred = {format_path(p, resolved.root): v for p, v in evaluator.inferred.items()}
    return CheckedSpec(final, resolved, shapes_of(output), inferred, evaluator.elements)
