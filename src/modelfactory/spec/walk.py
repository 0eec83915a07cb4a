"""The one walker over node kinds: what each node contains, where, and how many times.

Every stage that looks inside a spec (expanding, counting, estimating,
constructing, finding constants) goes through :func:`children` and
:func:`reference`, or the folds built on them, so a new node kind is added in
one place here plus its builder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .nodes import (
    BlockRef,
    CompositeNode,
    NamedSequential,
    ParametricBlock,
    RepeatNode,
    SharedRef,
)

if TYPE_CHECKING:
    from .model import ModelSpec

__all__ = ["Child", "children", "reference", "is_module", "iter_nodes", "iter_located", "fold"]

PathPart = str | int


class _RepeatNames(Sequence[str]):
    """The child names of a repeat, made on demand (a count never needs them)."""

    def __init__(self, node: RepeatNode) -> None:
        self._node = node

    def __len__(self) -> int:
        return self._node.repeat

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._node.child_name(index % len(self))


@dataclass(frozen=True)
class Child:
    """One node inside another: where it is written and the module names of its instances.

    ``names`` is ``None`` for a node that is not itself a module of its
    parent (a block definition's body); a repeat's body has one name per copy.
    """

    key: tuple[PathPart, ...]
    node: Any
    names: Sequence[str] | None

    @property
    def copies(self) -> int:
        """How many instances the parent makes of this child."""
        return 1 if self.names is None else len(self.names)


def children(node: Any) -> tuple[Child, ...]:
    """The nodes written inside ``node`` (references are not followed: see :func:`reference`)."""
    if isinstance(node, (list, tuple)):
        return _list_children((), node)
    if isinstance(node, NamedSequential):
        if isinstance(node.sequential, (list, tuple)):
            return _list_children(("sequential",), node.sequential)
        return tuple(
            Child(("sequential", name), child, (name,)) for name, child in node.sequential.items()
        )
    if isinstance(node, RepeatNode):
        return (Child(("body",), node.body, _RepeatNames(node)),)
    if isinstance(node, CompositeNode):
        return tuple(
            Child(("children", name), child, (name,)) for name, child in node.children.items()
        )
    if isinstance(node, ParametricBlock):
        return (Child(("body",), node.body, None),)
    return ()  # layers and references


def _list_children(prefix: tuple[PathPart, ...], items: Sequence[Any]) -> tuple[Child, ...]:
    """A list's items, numbered ``0``, ``1``, ...; a flattened repeat's copies join the count."""
    out = []
    number = 0
    for i, item in enumerate(items):
        if isinstance(item, RepeatNode) and item.flatten:
            names = [str(number + k) for k in range(item.repeat)]
            out.append(Child(prefix + (i, "body"), item.body, names))
            number += item.repeat
        else:
            out.append(Child(prefix + (i,), item, (str(number),)))
            number += 1
    return tuple(out)


def reference(spec: ModelSpec, node: Any) -> tuple[tuple[str, str], Any] | None:
    """``(("blocks"|"shared", name), definition)`` for a reference node, else ``None``."""
    if isinstance(node, BlockRef):
        return ("blocks", node.block), spec.blocks[node.block]
    if isinstance(node, SharedRef):
        return ("shared", node.shared), spec.shared[node.shared]
    return None


def is_module(node: Any) -> bool:
    """True for nodes that are a module of their own (references and block bodies are not)."""
    return not isinstance(node, (BlockRef, SharedRef, ParametricBlock))


def iter_nodes(node: Any) -> Iterator[Any]:
    """``node`` and every node written inside it, depth first (references not followed)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(child.node for child in reversed(children(current)))


def iter_located(path: tuple[PathPart, ...], node: Any) -> Iterator[tuple[tuple, Any]]:
    """Like :func:`iter_nodes`, with each node's config path (starting at ``path``)."""
    stack = [(path, node)]
    while stack:
        where, current = stack.pop()
        yield where, current
        stack.extend((where + c.key, c.node) for c in reversed(children(current)))


T = TypeVar("T")


def fold(
    spec: ModelSpec,
    node: Any,
    visit: Callable[[Any, list[tuple[int, T]]], T],
) -> T:
    """Fold ``visit(node, [(copies, child result), ...])`` over the module tree of ``node``.

    References are followed: a block's definition is folded at every use (each
    is a fresh instance; its result is reused), a shared module's only at its
    first use (later uses are the same module, so they contribute nothing).
    Validated specs have no reference cycles.
    """
    blocks: dict[str, T] = {}
    shared_seen: set[str] = set()

    def go(current: Any) -> T:
        found = reference(spec, current)
        if found is not None:
            (section, name), definition = found
            if section == "blocks":
                if name not in blocks:
                    blocks[name] = go(definition)
                return visit(current, [(1, blocks[name])])
            if name in shared_seen:
                return visit(current, [])
            shared_seen.add(name)
            return visit(current, [(1, go(definition))])
        return visit(current, [(child.copies, go(child.node)) for child in children(current)])

    return go(node)
