"""Stage: validated spec -> resolved spec (blocks expanded, parameters substituted).

Expansion is needed when blocks take parameters (each use may differ) or when
sizes are inferred (each instance gets its own values). The result is a plain
:class:`ModelSpec` without ``blocks``: every block use is inlined (composites
keep the block name as ``name``, so they print the same), every ``repeat``
becomes a named ``sequential``. Module paths, and hence random streams, are
unchanged, so the resolved spec builds the very same model.

``origins`` maps each expanded config path back to where it was written, so
errors found later (shape checks) still point into the user's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .errors import ConfigProblem, SpecError, format_path
from .parse import located_errors
from .source import SourceMap
from .spec import (
    BlockRef,
    CompositeNode,
    LayerNode,
    ModelSpec,
    NamedSequential,
    ParametricBlock,
    RepeatNode,
    SharedRef,
    iter_nodes,
)
from .specbase import is_placeholder

__all__ = ["Resolved", "resolve", "needs_expansion"]

Path = tuple[Any, ...]


@dataclass
class Resolved:
    """A resolved spec and where each of its config paths came from."""

    spec: ModelSpec
    origins: dict[Path, Path] = field(default_factory=dict)

    def origin(self, path: Path) -> Path:
        """The user-written config path behind an expanded one (longest known prefix)."""
        for end in range(len(path), 0, -1):
            found = self.origins.get(tuple(path[:end]))
            if found is not None:
                return found + tuple(path[end:])
        return path


def needs_expansion(spec: ModelSpec) -> bool:
    """True when blocks take parameters or some layer leaves a size to be inferred."""
    if any(isinstance(b, ParametricBlock) for b in spec.blocks.values()):
        return True
    roots = [spec.network, *spec.shared.values(), *spec.blocks.values()]
    return any(
        isinstance(n, LayerNode) and n.missing_inferable() for r in roots for n in iter_nodes(r)
    )


def _substitute(values: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    return {k: env[v["param"]] if is_placeholder(v) else v for k, v in values.items()}


class _Expander:
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
        if isinstance(node, (list, tuple)):
            return [self.walk(item, path + (i,), origin + (i,), env) for i, item in enumerate(node)]
        if isinstance(node, BlockRef):
            definition = self.spec.blocks[node.block]
            if isinstance(definition, ParametricBlock):
                inner = {**definition.params, **_substitute(node.params, env)}
                return self.walk(
                    definition.body, path, ("blocks", node.block, "body"), inner, node.block
                )
            return self.walk(definition, path, ("blocks", node.block), {}, node.block)
        if isinstance(node, SharedRef):
            return {"shared": node.shared}
        if isinstance(node, RepeatNode):
            return {
                "sequential": {
                    name: self.walk(node.body, path + ("sequential", name), origin + ("body",), env)
                    for name in node.child_names()
                }
            }
        if isinstance(node, NamedSequential):
            return {
                "sequential": {
                    name: self.walk(
                        child, path + ("sequential", name), origin + ("sequential", name), env
                    )
                    for name, child in node.sequential.items()
                }
            }
        if isinstance(node, CompositeNode):
            forward = []
            for step in node.forward or ():
                data = step.model_dump(by_alias=True)
                if step.op is not None:
                    data.update(_substitute(step.args, env))
                forward.append(data)
            return {
                "name": node.name or class_name or "Block",
                "inputs": list(node.inputs),
                "children": {
                    name: self.walk(
                        child, path + ("children", name), origin + ("children", name), env
                    )
                    for name, child in node.children.items()
                },
                "constants": {k: c.model_dump(mode="json") for k, c in node.constants.items()},
                "forward": forward,
                **({"outputs": list(node.outputs)} if node.outputs is not None else {}),
            }
        raise TypeError(
            f"cannot expand {node!r}"
        )  # pragma: no cover - validation guarantees node kinds


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


def resolve(spec: ModelSpec, *, source: SourceMap | None = None, root: str = "") -> Resolved:
    """Expand blocks when needed and validate the result; the spec itself otherwise.

    A value that is only invalid once block parameters are substituted (say a
    negative size) is reported at the line that wrote it, naming the instance.
    """
    if not needs_expansion(spec):
        return Resolved(spec)
    data, origins = expand(spec)
    resolved = Resolved(spec, origins)
    try:
        resolved.spec = ModelSpec.model_validate(data)
    except ValidationError as err:
        problems = []
        for loc, where, message in located_errors(err):
            origin = resolved.origin(loc)
            located = source.locate(resolved.origin(where)) if source else None
            note = f" (in the instance at {format_path(loc, root)})" if origin != loc else ""
            problems.append(ConfigProblem(format_path(origin, root), message + note, located))
        raise SpecError(
            f"invalid model after expanding blocks: {len(problems)} problem(s)", problems
        ) from None
    return resolved
