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
from .spec.model import ModelSpec
from .spec.nodes import (
    BlockRef,
    CompositeNode,
    LayerNode,
    ParametricBlock,
    RepeatNode,
    SharedRef,
)
from .spec.validate import located_errors
from .spec.validation import is_placeholder
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
    """True when blocks take parameters, or when a layer that leaves a size to be inferred
    may be instantiated more than once (inside a block or a repeat: each instance gets
    its own values)."""
    if any(isinstance(b, ParametricBlock) for b in spec.blocks.values()):
        return True
    roots = [spec.network, *spec.shared.values(), *spec.blocks.values()]
    nodes = [n for r in roots for n in iter_nodes(r)]
    inferred = any(isinstance(n, LayerNode) and n.missing_inferable() for n in nodes)
    return inferred and any(isinstance(n, (BlockRef, RepeatNode)) for n in nodes)


def _substitute(values: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """Placeholders replaced by their values, also inside a nested layer node's arguments."""
    return {
        k: env[v["param"]]
        if is_placeholder(v)
        else _substitute(v, env)
        if isinstance(v, dict)
        else v
        for k, v in values.items()
    }


class _Expander:
    """Plain data of a spec with every block use inlined, and the origin of each path."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.origins: dict[Path, Path] = {}

    def walk(
        self,
        node: Any,
        path: Path,
        origin: Path,
        env: dict[str, Any],
        class_name: str | None = None,
    ) -> Any:
        self.origins[path] = origin
        if isinstance(node, LayerNode):
            return {"type": node.type, **_substitute(node.args, env)}
        if isinstance(node, BlockRef):
            definition = self.spec.blocks[node.block]
            if isinstance(definition, ParametricBlock):
                inner = {**definition.params, **_substitute(node.params, env)}
                body = ("blocks", node.block, "body")
                return self.walk(definition.body, path, body, inner, node.block)
            return self.walk(definition, path, ("blocks", node.block), {}, node.block)
        if isinstance(node, SharedRef):
            return {"shared": node.shared}
        if isinstance(node, (list, tuple)):
            return [self.walk(c.node, path + c.key, origin + c.key, env) for c in children(node)]
        if isinstance(node, CompositeNode):
            return self._composite(node, path, origin, env, class_name)
        # repeats and named sequentials: a sequential of named children
        sequential = {}
        for child in children(node):
            for name in child.names or ():
                where = path + ("sequential", name)
                sequential[name] = self.walk(child.node, where, origin + child.key, env)
        return {"sequential": sequential}

    def _composite(
        self, node: CompositeNode, path: Path, origin: Path, env: dict[str, Any], name: str | None
    ) -> dict[str, Any]:
        forward = []
        for step in node.forward or ():
            data = step.model_dump(by_alias=True)
            if step.op is not None:
                data.update(_substitute(step.args, env))
            forward.append(data)
        return {
            "name": node.name or name or "Block",
            "inputs": list(node.inputs),
            "children": {
                c.key[-1]: self.walk(c.node, path + c.key, origin + c.key, env)
                for c in children(node)
            },
            "constants": {k: c.model_dump(mode="json") for k, c in node.constants.items()},
            "forward": forward,
            **({"outputs": list(node.outputs)} if node.outputs is not None else {}),
        }


def expand(spec: ModelSpec) -> tuple[dict[str, Any], dict[Path, Path]]:
    """Plain data of the expanded spec, and the origin of each expanded path."""
    expander = _Expander(spec)
    data = spec.model_dump(mode="json", by_alias=True, exclude={"blocks", "shared", "network"})
    data["shared"] = {
        name: expander.walk(node, ("shared", name), ("shared", name), {}, name)
        for name, node in spec.shared.items()
    }
    data["network"] = expander.walk(spec.network, ("network",), ("network",), {})
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
