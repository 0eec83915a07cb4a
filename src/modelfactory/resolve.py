"""Stage 2: validated :class:`ModelSpec` -> :class:`ResolvedSpec` (blocks, parameters and repeats expanded).

Expansion is needed when blocks take parameters (each use may differ) or when
sizes are inferred (each instance gets its own values). The expanded spec has
no ``blocks``: every block use is inlined (composites keep the block name as
``name``, so they print the same), every ``repeat`` becomes a named
``sequential``. Module paths, and hence random streams, are unchanged, so the
resolved spec builds the very same model.

``origins`` maps each expanded config path back to where it was written, so
errors found later (shape checks) still point into the user's file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .errors import ConfigProblem, SpecError, format_path
from .spec.expr import ExprError
from .spec.model import ModelSpec
from .spec.nodes import (
    BlockRef,
    CompositeNode,
    LayerNode,
    NamedSequential,
    ParametricBlock,
    RepeatNode,
    SharedRef,
)
from .spec.placeholders import check_condition, contains_placeholder, substitute
from .spec.validate import located_errors
from .spec.walk import children, iter_nodes
from .spec.yaml_reader import SourceMap

__all__ = ["ResolvedSpec", "resolve", "needs_expansion"]

Path = tuple[Any, ...]


@dataclass(frozen=True)
class ResolvedSpec:
    """A spec whose blocks, parameters and repeats are expanded, and where each path came from."""

    spec: ModelSpec
    origins: Mapping[Path, Path] = field(default_factory=dict)
    source: SourceMap | None = None
    root: str = ""

    def origin(self, path: Path) -> Path:
        """The user-written config path behind an expanded one (longest known prefix)."""
        for end in range(len(path), 0, -1):
            found = self.origins.get(tuple(path[:end]))
            if found is not None:
                return found + tuple(path[end:])
        return path

    def problem(self, path: Path, message: str) -> ConfigProblem:
        """A problem at expanded ``path``, reported where the user wrote it (``file:line:col``)."""
        origin = self.origin(path)
        note = f" (in the instance at {format_path(path, self.root)})" if origin != path else ""
        where = self.source.locate(origin) if self.source else None
        return ConfigProblem(format_path(origin, self.root), message + note, where)


def needs_expansion(spec: ModelSpec) -> bool:
    """True when blocks take parameters, when a repeat is flattened into a list, or when a
    layer that leaves a size to be inferred may be instantiated more than once (inside a
    block or a repeat: each instance gets its own values)."""
    if any(isinstance(b, ParametricBlock) for b in spec.blocks.values()):
        return True
    roots = [spec.network, *spec.shared.values(), *spec.blocks.values()]
    nodes = [n for r in roots for n in iter_nodes(r)]
    if any(_has_flattened(n) for n in nodes):
        return True
    inferred = any(isinstance(n, LayerNode) and n.missing_inferable() for n in nodes)
    return inferred and any(isinstance(n, (BlockRef, RepeatNode)) for n in nodes)


def _has_flattened(node: Any) -> bool:
    items = node.sequential if isinstance(node, NamedSequential) else node
    return isinstance(items, (list, tuple)) and any(
        isinstance(item, RepeatNode) and item.flatten for item in items
    )


class _Expander:
    """Plain data of a spec with every block use inlined, and the origin of each path.

    Placeholders are substituted and expressions evaluated with the
    parameters of each use; nodes and steps whose ``when:`` is false are
    left out (later list items and steps move up); flattened repeats become
    items of their list. Problems are collected with the path of the
    instance and where the user wrote the failing text.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.origins: dict[Path, Path] = {}
        self.problems: list[tuple[Path, Path, str]] = []  # (instance path, origin, message)

    def value(self, value: Any, env: dict[str, Any], path: Path, origin: Path) -> Any:
        """``value`` with its placeholders substituted (``None`` after a reported problem)."""
        if not env and not contains_placeholder(value):
            return value
        try:
            return substitute(value, env)
        except ExprError as err:
            self.problems.append((path, origin, str(err)))
            return None

    def keep(self, node: Any, env: dict[str, Any], path: Path, origin: Path) -> bool:
        """False when the node's (or step's) ``when:`` condition does not hold here."""
        when = getattr(node, "when", None)
        if when is None:
            return True
        try:
            return check_condition(when, env)
        except ExprError as err:
            self.problems.append((path, origin + ("when",), str(err)))
            return True

    def walk(
        self,
        node: Any,
        path: Path,
        origin: Path,
        env: dict[str, Any],
        class_name: str | None = None,
        kept: bool = False,
    ) -> Any:
        """Expand ``node``; ``kept``: its ``when:`` was already found true by the caller."""
        self.origins[path] = origin
        if not kept and not self.keep(node, env, path, origin):
            self.problems.append(
                (
                    path,
                    origin + ("when",),
                    "'when' is false here, but nothing can take this module's place (it is "
                    "the whole network, a block's body or a repeat's body); put the condition "
                    "on the block's use or on an item of a list instead",
                )
            )
        if isinstance(node, LayerNode):
            return {"type": node.type, **self.args(node.args, env, path, origin)}
        if isinstance(node, BlockRef):
            definition = self.spec.blocks[node.block]
            if isinstance(definition, ParametricBlock):
                inner = self.block_env(node, definition, env, path, origin)
                body = ("blocks", node.block, "body")
                return self.walk(definition.body, path, body, inner, node.block)
            return self.walk(definition, path, ("blocks", node.block), {}, node.block)
        if isinstance(node, SharedRef):
            return {"shared": node.shared}
        if isinstance(node, (list, tuple)):
            return self.items(node, path, (), origin, env)
        if isinstance(node, CompositeNode):
            return self._composite(node, path, origin, env, class_name)
        if isinstance(node, NamedSequential) and isinstance(node.sequential, (list, tuple)):
            items = self.items(node.sequential, path, ("sequential",), origin, env)
            return {"sequential": items, **({"name": node.name} if node.name else {})}
        # repeats and named sequentials: a sequential of named children
        sequential = {}
        for child in children(node):
            for name in child.names or ():
                where = path + ("sequential", name)
                if isinstance(node, NamedSequential) and not self.keep(
                    child.node, env, where, origin + child.key
                ):
                    continue
                sequential[name] = self.walk(
                    child.node,
                    where,
                    origin + child.key,
                    env,
                    kept=isinstance(node, NamedSequential),
                )
        name = getattr(node, "name", None) if isinstance(node, NamedSequential) else None
        return {"sequential": sequential, **({"name": name} if name else {})}

    def items(
        self, items: Any, path: Path, prefix: Path, origin: Path, env: dict[str, Any]
    ) -> list[Any]:
        """A list's items, numbered after leaving out false ``when:`` and flattening repeats."""
        out: list[Any] = []
        for index, item in enumerate(items):
            written = origin + prefix + (index,)
            if not self.keep(item, env, path + prefix + (len(out),), written):
                continue
            copies, body, written_body = [(item, written)], item, written
            if isinstance(item, RepeatNode) and item.flatten:
                body, written_body = item.body, written + ("body",)
                copies = [(body, written_body)] * item.repeat
            for node, where in copies:
                at = path + prefix + (len(out),)
                if node is body and body is not item and not self.keep(node, env, at, where):
                    continue
                out.append(self.walk(node, at, where, env, kept=True))
        return out

    def args(
        self, args: dict[str, Any], env: dict[str, Any], path: Path, origin: Path
    ) -> dict[str, Any]:
        """Arguments with placeholders (also inside lists) substituted."""
        return {k: self.value(v, env, path + (k,), origin + (k,)) for k, v in args.items()}

    def block_env(
        self,
        node: BlockRef,
        definition: ParametricBlock,
        env: dict[str, Any],
        path: Path,
        origin: Path,
    ) -> dict[str, Any]:
        """A parametric block's parameter values at one use: given (computed in the user's
        scope), else the defaults, computed in order from the parameters before them."""
        given = {
            k: self.value(v, env, path + ("with", k), origin + ("with", k))
            for k, v in node.params.items()
        }
        inner: dict[str, Any] = {}
        for name, default in definition.params.items():
            if name in given:
                inner[name] = given[name]
            else:
                where = ("blocks", node.block, "params", name)
                inner[name] = self.value(default, inner, path, where)
        return inner

    def _composite(
        self, node: CompositeNode, path: Path, origin: Path, env: dict[str, Any], name: str | None
    ) -> dict[str, Any]:
        forward = []
        for index, step in enumerate(node.forward or ()):
            at, written = path + ("forward", len(forward)), origin + ("forward", index)
            if not self.keep(step, env, at, written):
                continue
            self.origins[at] = written
            data = step.model_dump(by_alias=True)
            data.pop("when", None)
            if step.op is not None:
                data.update(self.args(step.args, env, at, written))
            if step.kwargs:
                data["kwargs"] = self.args(
                    step.kwargs, env, at + ("kwargs",), written + ("kwargs",)
                )
            forward.append(data)
        kept_children = {}
        for c in children(node):
            where, written = path + c.key, origin + c.key
            if self.keep(c.node, env, where, written):
                kept_children[c.key[-1]] = self.walk(c.node, where, written, env, kept=True)
        if "forward" not in node.model_fields_set:
            forward = []  # the default program: the kept children in order
        tensors = {}
        for section in ("constants", "parameters"):
            tensors[section] = {
                k: self.args(
                    t.model_dump(mode="json"), env, path + (section, k), origin + (section, k)
                )
                for k, t in getattr(node, section).items()
            }
        return {
            "name": node.name or name or "Block",
            "inputs": list(node.inputs),
            "children": kept_children,
            "constants": tensors["constants"],
            **({"parameters": tensors["parameters"]} if node.parameters else {}),
            **({"forward": forward} if forward or "forward" in node.model_fields_set else {}),
            **({"outputs": list(node.outputs)} if node.outputs is not None else {}),
        }


def expand(spec: ModelSpec) -> tuple[dict[str, Any], dict[Path, Path]]:
    """Plain data of the expanded spec, and the origin of each expanded path.

    Raises :class:`SpecError` listing every parameter expression or condition
    that could not be evaluated, each at the line that wrote it.
    """
    expander = _Expander(spec)
    data = spec.model_dump(mode="json", by_alias=True, exclude={"blocks", "shared", "network"})
    data["shared"] = {
        name: expander.walk(node, ("shared", name), ("shared", name), {}, name)
        for name, node in spec.shared.items()
    }
    data["network"] = expander.walk(spec.network, ("network",), ("network",), {})
    if expander.problems:
        problems = []
        for path, origin, message in expander.problems:
            note = f" (in the instance at {format_path(path, spec.root)})" if origin != path else ""
            where = spec.source.locate(origin) if spec.source else None
            problems.append(ConfigProblem(format_path(origin, spec.root), message + note, where))
        raise SpecError(
            f"invalid model after expanding blocks: {len(problems)} problem(s)", problems
        )
    return data, expander.origins


def resolve(spec: ModelSpec) -> ResolvedSpec:
    """Expand blocks when needed and validate the result; the spec itself otherwise.

    A value that is only invalid once block parameters are substituted (say a
    negative size) is reported at the line that wrote it, naming the instance.
    """
    if not needs_expansion(spec):
        return ResolvedSpec(spec, {}, spec.source, spec.root)
    data, origins = expand(spec)
    partial = ResolvedSpec(spec, origins, spec.source, spec.root)
    try:
        expanded = ModelSpec.model_validate(data)
    except ValidationError as err:
        problems = []
        for loc, where, message in located_errors(err):
            origin = partial.origin(loc)
            located = spec.source.locate(partial.origin(where)) if spec.source else None
            note = f" (in the instance at {format_path(loc, spec.root)})" if origin != loc else ""
            problems.append(ConfigProblem(format_path(origin, spec.root), message + note, located))
        raise SpecError(
            f"invalid model after expanding blocks: {len(problems)} problem(s)", problems
        ) from None
    return ResolvedSpec(expanded, origins, spec.source, spec.root)
