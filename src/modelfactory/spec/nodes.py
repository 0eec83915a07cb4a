"""The architecture language's nodes: frozen pydantic models, one per kind of module.

A *node* describes one module and is one of:

- a bare string: a layer type that takes no arguments (``ReLU``) or a block name;
- a list: an ``nn.Sequential`` of nodes;
- ``{type: Linear, in_features: 20, out_features: 256}``: a registered layer;
- ``{block: name}``: a fresh instance of a named block;
- ``{shared: name}``: *the* module declared under ``shared:`` (same object everywhere);
- ``{repeat: 4, body: node, names: "block {i}"}``: a Sequential of fresh copies
  (``flatten: true``: the copies join the list around it);
- ``{sequential: {name: node}}`` or ``{sequential: [...], name: Cls}``: a Sequential
  with named children, or numbered ones under a printed class name;
- ``{children: {...}, forward: [...]}``: a composite with an explicit forward
  (:mod:`.composite`).

Inside a block with ``params``, any node but a bare name may carry ``when:``
(it exists only where that condition on the parameters holds).

Everything is validated here, before any module is built: unknown names get a
did-you-mean, layer arguments are checked against models derived from the
constructor signatures, forward steps are checked as a data-flow graph
(:mod:`.program`, :mod:`.dataflow`). Block and shared names in scope come
through pydantic's validation ``context`` (see :mod:`.validation`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationInfo,
    model_serializer,
    model_validator,
)
from typing_extensions import TypeAliasType

from ..errors import did_you_mean
from ..registry import LAYERS
from .composite import CompositeNode
from .layer_args import layer_args_problems
from .parametric import ParametricBlock
from .program import IDENTIFIER, ChildName
from .validation import (
    TAG_PREFIX,
    Frozen,
    When,
    custom_error,
    placeholder_problems,
    problem,
    raise_problems,
    scope_of,
    split_flat,
    when_problems,
)

__all__ = [
    "LayerNode",
    "BlockRef",
    "SharedRef",
    "RepeatNode",
    "ParametricBlock",
    "NamedSequential",
    "CompositeNode",
    "Node",
    "TAG_PREFIX",
    "MAX_REPEAT",
    "dump_node",
]


_REPEAT_PLACEHOLDER = "{i}"


MAX_REPEAT = 100_000


class LayerNode(Frozen):
    """A registered layer and its arguments, written flat: ``{type: Linear, in_features: 20}``."""

    type: str
    when: When = None
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _flatten_and_check(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        if isinstance(data, LayerNode):
            return data
        if isinstance(data, dict):
            data = split_flat(data, ("type", "when"))
        node = handler(data)
        if node.type not in LAYERS:
            known = LAYERS.names() + sorted(scope_of(info).blocks)
            raise custom_error(
                "unknown_layer",
                f"unknown layer type '{node.type}'."
                + (did_you_mean(node.type, known) or f" {LAYERS.how_to_add}"),
            )
        clean, problems = layer_args_problems(node.type, node.args, scope_of(info))
        raise_problems("LayerNode", when_problems(node.when, info) + problems)
        object.__setattr__(node, "args", clean)
        return node

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        when = {"when": self.when} if self.when is not None else {}
        return {"type": self.type, **when, **self.args}

    def missing_inferable(self) -> list[str]:
        """Size arguments left out for shape inference to fill in."""
        return [name for name in LAYERS.get(self.type).shape_rule if name not in self.args]


class BlockRef(Frozen):
    """A fresh instance of a block defined under ``blocks:``, with its parameters in ``with``."""

    block: str
    params: dict[str, Any] = Field(default_factory=dict, alias="with")
    when: When = None

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"block": self.block}
        if self.params:
            out["with"] = dict(self.params)
        if self.when is not None:
            out["when"] = self.when
        return out

    @model_validator(mode="after")
    def _block_exists(self, info: ValidationInfo) -> BlockRef:
        scope = scope_of(info)
        blocks = scope.blocks
        raise_problems("BlockRef", when_problems(self.when, info))
        if self.block in blocks:
            declared, required = (scope.block_params or {}).get(
                self.block, (frozenset(), frozenset())
            )
            problems = placeholder_problems(self.params, scope)
            for key in self.params:
                if key not in declared:
                    problems.append(
                        problem(
                            "unknown_param",
                            f"block '{self.block}' has no parameter '{key}'.{did_you_mean(key, declared)} Its parameters: {', '.join(sorted(declared)) or 'none'}.",
                            ("with", key),
                            self.params[key],
                        )
                    )
            for key in sorted(required - set(self.params)):
                problems.append(
                    problem(
                        "missing_param",
                        f"block '{self.block}' needs parameter '{key}' (give it in 'with')",
                        ("with",),
                    )
                )
            raise_problems(
                "BlockRef",
                [
                    p
                    | {
                        "loc": ("with",) + tuple(p["loc"])
                        if p["loc"] and p["loc"][0] != "with"
                        else p["loc"]
                    }
                    for p in problems
                ],
            )
        if self.block not in blocks:
            defined = ", ".join(sorted(blocks)) or "none"
            raise custom_error(
                "undefined_block",
                f"undefined block '{self.block}'.{did_you_mean(self.block, blocks)}"
                f" Defined blocks: {defined}.",
            )
        return self


class SharedRef(Frozen):
    """The one module declared under ``shared:``; every reference is the same object."""

    shared: str
    when: When = None

    @model_validator(mode="after")
    def _shared_exists(self, info: ValidationInfo) -> SharedRef:
        raise_problems("SharedRef", when_problems(self.when, info))
        names = scope_of(info).shared
        if self.shared not in names:
            defined = ", ".join(sorted(names)) or "none"
            raise custom_error(
                "undefined_shared",
                f"undefined shared module '{self.shared}'."
                f"{did_you_mean(self.shared, names)} Declared shared modules: {defined}.",
            )
        return self


class RepeatNode(Frozen):
    """``repeat`` fresh copies of ``body`` in a Sequential; ``names`` names them (``{i}`` = index).

    ``flatten: true`` (directly inside a list) puts the copies into that list
    instead, numbered on from the items before them.
    """

    repeat: Annotated[int, Field(ge=1, le=MAX_REPEAT)]
    body: Node
    names: str = _REPEAT_PLACEHOLDER
    flatten: bool = Field(
        default=False,
        exclude_if=lambda value: value is False,
        description="put the copies into the enclosing list, numbered continuously",
    )
    when: When = None

    @model_validator(mode="after")
    def _names_pattern(self, info: ValidationInfo) -> RepeatNode:
        problems = when_problems(self.when, info)
        if self.flatten and self.names != _REPEAT_PLACEHOLDER:
            problems.append(
                problem(
                    "repeat_names",
                    "a flattened repeat is numbered by its enclosing list; remove 'names'",
                    ("names",),
                )
            )
        raise_problems("RepeatNode", problems)
        # Only the literal placeholder {i} is substituted (never str.format,
        # which could reach attributes of its arguments).
        rest = self.names.replace(_REPEAT_PLACEHOLDER, "")
        if _REPEAT_PLACEHOLDER not in self.names or "{" in rest or "}" in rest or "." in rest:
            raise custom_error(
                "repeat_names",
                f"'names' must contain the placeholder {{i}} once and no other braces "
                f"or dots, e.g. 'block {{i}}'; found {self.names!r}",
            )
        return self

    def child_name(self, index: int) -> str:
        """The name of the repeated child at ``index``."""
        return self.names.replace(_REPEAT_PLACEHOLDER, str(index))

    def child_names(self) -> list[str]:
        """The names of the repeated children, in order."""
        return [self.child_name(i) for i in range(self.repeat)]


def _sequential_tag(value: Any) -> str:
    return f"{TAG_PREFIX}list" if isinstance(value, (list, tuple)) else f"{TAG_PREFIX}mapping"


class NamedSequential(Frozen):
    """``{sequential: {name: node, ...}}`` or ``{sequential: [node, ...]}``: an ``nn.Sequential``.

    A mapping names the children; a list numbers them ``0``, ``1``, ... ``name``
    is the printed class name (``Conv2dNormActivation(...)``); the module is
    still an ``nn.Sequential`` (indexable, iterable, picklable).
    """

    sequential: Annotated[
        Annotated[dict[ChildName, Node], Tag(f"{TAG_PREFIX}mapping")]
        | Annotated[list[Node], Tag(f"{TAG_PREFIX}list")],
        Discriminator(_sequential_tag),
    ]
    name: Annotated[
        str | None, Field(pattern=IDENTIFIER.pattern, exclude_if=lambda v: v is None)
    ] = None
    when: When = None

    @model_validator(mode="after")
    def _check_when(self, info: ValidationInfo) -> NamedSequential:
        raise_problems("NamedSequential", when_problems(self.when, info))
        return self


class _InvalidNode(BaseModel):
    """Catch-all branch of the node union: always fails with a helpful message."""

    @model_validator(mode="before")
    @classmethod
    def _fail(cls, data: Any) -> Any:
        if isinstance(data, dict):
            keys = [str(k) for k in data]
            hint = ""
            for key in keys:
                hint = did_you_mean(key, _NODE_KEYS)
                if hint:
                    break
            found = f"a mapping with keys {keys}"
        else:
            hint, found = "", f"{type(data).__name__} {data!r}"
        raise custom_error(
            "invalid_node",
            "a module must be a layer or block name, a list (Sequential), or a "
            f"mapping with one of the keys {', '.join(_NODE_KEYS)}; found {found}.{hint}",
        )


_NODE_KEYS = ("type", "block", "shared", "repeat", "sequential", "children", "forward")
_TAG_BY_CLASS: dict[type, str] = {}


def _resolve_bare_name(name: str, info: ValidationInfo) -> LayerNode | BlockRef:
    """A bare string is a block if one has that name, else an argument-less layer."""
    if name in scope_of(info).blocks:
        return BlockRef.model_validate({"block": name}, context=info.context)
    return LayerNode.model_validate({"type": name}, context=info.context)


def _node_tag(value: Any) -> str:
    if isinstance(value, str):
        return f"{TAG_PREFIX}name"
    if isinstance(value, (list, tuple)):
        return f"{TAG_PREFIX}sequential"
    if isinstance(value, BaseModel):
        return _TAG_BY_CLASS.get(type(value), f"{TAG_PREFIX}invalid")
    if isinstance(value, dict):
        for key, tag in (
            ("type", "layer"),
            ("block", "block"),
            ("shared", "shared"),
            ("repeat", "repeat"),
            ("sequential", "named"),
            ("params", "params"),
        ):
            if key in value:
                return f"{TAG_PREFIX}{tag}"
        if "children" in value or "forward" in value:
            return f"{TAG_PREFIX}composite"
    return f"{TAG_PREFIX}invalid"


Node = TypeAliasType(
    "Node",
    Annotated[
        Annotated[str, AfterValidator(_resolve_bare_name), Tag(f"{TAG_PREFIX}name")]
        | Annotated[list["Node"], Tag(f"{TAG_PREFIX}sequential")]
        | Annotated[LayerNode, Tag(f"{TAG_PREFIX}layer")]
        | Annotated[BlockRef, Tag(f"{TAG_PREFIX}block")]
        | Annotated[SharedRef, Tag(f"{TAG_PREFIX}shared")]
        | Annotated[RepeatNode, Tag(f"{TAG_PREFIX}repeat")]
        | Annotated[CompositeNode, Tag(f"{TAG_PREFIX}composite")]
        | Annotated[NamedSequential, Tag(f"{TAG_PREFIX}named")]
        | Annotated[ParametricBlock, Tag(f"{TAG_PREFIX}params")]
        | Annotated[_InvalidNode, Tag(f"{TAG_PREFIX}invalid")],
        Discriminator(_node_tag),
        PlainSerializer(lambda node: dump_node(node)),
    ],
)


def dump_node(node: Any) -> Any:
    """Plain data for a validated node (bare names come back in their canonical mapping form)."""
    if isinstance(node, BaseModel):
        return node.model_dump(by_alias=True)
    if isinstance(node, (list, tuple)):
        return [dump_node(item) for item in node]
    return node


RepeatNode.model_rebuild()
CompositeNode.model_rebuild(_types_namespace={"Node": Node})
NamedSequential.model_rebuild()
ParametricBlock.model_rebuild(_types_namespace={"Node": Node})
_TAG_BY_CLASS.update(
    {
        LayerNode: f"{TAG_PREFIX}layer",
        BlockRef: f"{TAG_PREFIX}block",
        SharedRef: f"{TAG_PREFIX}shared",
        RepeatNode: f"{TAG_PREFIX}repeat",
        CompositeNode: f"{TAG_PREFIX}composite",
        NamedSequential: f"{TAG_PREFIX}named",
        ParametricBlock: f"{TAG_PREFIX}params",
    }
)
