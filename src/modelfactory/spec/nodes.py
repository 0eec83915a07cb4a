"""The architecture language's nodes: frozen pydantic models, one per kind of module.

A *node* describes one module and is one of:

- a bare string: a layer type that takes no arguments (``ReLU``) or a block name;
- a list: an ``nn.Sequential`` of nodes;
- ``{type: Linear, in_features: 20, out_features: 256}``: a registered layer;
- ``{block: name}``: a fresh instance of a named block;
- ``{shared: name}``: *the* module declared under ``shared:`` (same object everywhere);
- ``{repeat: 4, body: node, names: "block {i}"}``: a Sequential of fresh copies;
- ``{sequential: {name: node}}``: a Sequential with named children;
- ``{children: {...}, forward: [...]}``: a composite with an explicit forward.

Everything is validated here, before any module is built: unknown names get a
did-you-mean, layer arguments are checked against models derived from the
constructor signatures, forward steps are checked as a data-flow graph
(:mod:`.program`). Block and shared names in scope come through pydantic's
validation ``context`` (see :mod:`.validation`).
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
from ..registry.signatures import UnsupportedSignature
from .program import (
    IDENTIFIER,
    ChildName,
    Step,
    ValueName,
    check_dataflow,
    classify_step,
    resolved_outputs,
)
from .tensors import ConstantSpec
from .validation import (
    Frozen,
    Scope,
    custom_error,
    inner_scope,
    mapping_keys,
    placeholder_problems,
    problem,
    raise_problems,
    scope_of,
    split_flat,
    validate_arguments,
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

# Union tags appear in pydantic error locations; this prefix lets the error
# formatter drop them so paths read like the YAML (``network[2].in_features``).
TAG_PREFIX = "\u00b7"

_REPEAT_PLACEHOLDER = "{i}"
MAX_REPEAT = 100_000


def _layer_args_problems(
    type_name: str, args: dict[str, Any], scope: Scope
) -> tuple[dict[str, Any], list]:
    """Validate ``args`` against the layer's argument model; return (clean args, problems)."""
    entry = LAYERS.get(type_name)
    try:
        model = entry.args_model
    except UnsupportedSignature as err:
        return args, [problem("unsupported_layer", f"layer type '{type_name}' {err}", ("type",))]
    key = _cache_key(model, args)
    if key is not None and key in _VALID_ARGS:
        return dict(_VALID_ARGS[key]), []
    clean, problems = validate_arguments(
        model, args, type_name, scope=scope, inferable=frozenset(entry.shape_rule)
    )
    if key is not None and not problems:
        if len(_VALID_ARGS) >= _VALID_ARGS_MAX:
            _VALID_ARGS.clear()
        _VALID_ARGS[key] = clean
    return clean, problems


# Models repeat the same layer many times (a 1,000-layer MLP, ResNet stages);
# valid scalar arguments are validated once per argument model. Keyed by the
# model class, so re-registering a layer name never hits a stale entry.
_VALID_ARGS: dict[tuple[Any, ...], dict[str, Any]] = {}
_VALID_ARGS_MAX = 4096


def _cache_key(model: type, args: dict[str, Any]) -> tuple[Any, ...] | None:
    items = []
    for key, value in args.items():
        if type(value) not in (int, float, bool, str, type(None)):
            return None  # lists, tuples, placeholders: validate every time
        items.append((key, type(value), value))
    return (model, tuple(sorted(items)))


class LayerNode(Frozen):
    """A registered layer and its arguments, written flat: ``{type: Linear, in_features: 20}``."""

    type: str
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _flatten_and_check(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        if isinstance(data, LayerNode):
            return data
        if isinstance(data, dict):
            data = split_flat(data, ("type",))
        node = handler(data)
        if node.type not in LAYERS:
            known = LAYERS.names() + sorted(scope_of(info).blocks)
            raise custom_error(
                "unknown_layer",
                f"unknown layer type '{node.type}'."
                + (did_you_mean(node.type, known) or f" {LAYERS.how_to_add}"),
            )
        clean, problems = _layer_args_problems(node.type, node.args, scope_of(info))
        raise_problems("LayerNode", problems)
        object.__setattr__(node, "args", clean)
        return node

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        return {"type": self.type, **self.args}

    def missing_inferable(self) -> list[str]:
        """Size arguments left out for shape inference to fill in."""
        return [name for name in LAYERS.get(self.type).shape_rule if name not in self.args]


class BlockRef(Frozen):
    """A fresh instance of a block defined under ``blocks:``, with its parameters in ``with``."""

    block: str
    params: dict[str, Any] = Field(default_factory=dict, alias="with")

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        return (
            {"block": self.block, "with": dict(self.params)}
            if self.params
            else {"block": self.block}
        )

    @model_validator(mode="after")
    def _block_exists(self, info: ValidationInfo) -> BlockRef:
        scope = scope_of(info)
        blocks = scope.blocks
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

    @model_validator(mode="after")
    def _shared_exists(self, info: ValidationInfo) -> SharedRef:
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
    """``repeat`` fresh copies of ``body`` in a Sequential; ``names`` names them (``{i}`` = index)."""

    repeat: Annotated[int, Field(ge=1, le=MAX_REPEAT)]
    body: Node
    names: str = _REPEAT_PLACEHOLDER

    @model_validator(mode="after")
    def _names_pattern(self) -> RepeatNode:
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


class ParametricBlock(Frozen):
    """A block definition with parameters: ``{params: {planes: 64}, body: node}``.

    Inside ``body``, ``{param: planes}`` stands for the value given at each use
    (``{block: Name, with: {planes: 128}}``); a param without a default
    (``null``) must be given. Only allowed directly under ``blocks:``.
    """

    params: dict[Annotated[str, Field(pattern=IDENTIFIER.pattern)], Any] = Field(
        default_factory=dict
    )
    body: Node

    @model_validator(mode="wrap")
    @classmethod
    def _params_scope(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        with inner_scope(info, params=mapping_keys(data.get("params"))):
            return handler(data)

    def required(self) -> frozenset[str]:
        """Parameters without a default (written ``name: null``)."""
        return frozenset(k for k, v in self.params.items() if v is None)


class NamedSequential(Frozen):
    """``{sequential: {name: node, ...}}``: an ``nn.Sequential`` with named children."""

    sequential: dict[ChildName, Node]


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


class CompositeNode(Frozen):
    """A module with named children, constants and an explicit forward program.

    Printed with ``name`` (or its block's name) as the class name, e.g. ``NestMLP(...)``.
    Without ``forward``, the children are called in order, like a Sequential.
    """

    name: Annotated[str, Field(pattern=IDENTIFIER.pattern)] | None = None
    inputs: tuple[ValueName, ...] = Field(default=("x",), min_length=1)
    children: dict[ChildName, Node] = Field(default_factory=dict)
    constants: dict[ValueName, ConstantSpec] = Field(default_factory=dict)
    forward: tuple[Step, ...] | None = None
    outputs: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _check_program(self, info: ValidationInfo) -> CompositeNode:
        problems: list[dict[str, Any]] = []
        clash = set(self.children) & set(self.constants)
        for name in sorted(clash):
            problems.append(
                problem(
                    "name_clash", f"'{name}' is both a child and a constant", ("constants", name)
                )
            )
        for name in sorted(set(self.inputs) & (set(self.children) | set(self.constants))):
            problems.append(
                problem(
                    "name_clash",
                    f"input '{name}' clashes with a child or constant name",
                    ("inputs",),
                )
            )
        if self.forward is None and not self.children:
            problems.append(
                problem("empty_composite", "a composite needs 'children', 'forward' or both")
            )
        raise_problems("CompositeNode", problems)
        steps = (
            self.forward if self.forward is not None else tuple(Step(call=c) for c in self.children)
        )
        scope = scope_of(info)
        steps = tuple(
            classify_step(self.children, i, s, problems, scope) for i, s in enumerate(steps)
        )
        raise_problems("CompositeNode", problems)
        check_dataflow(self.inputs, self.constants, self.outputs, steps, problems)
        raise_problems("CompositeNode", problems)
        object.__setattr__(self, "forward", steps)
        return self

    def resolved_outputs(self) -> tuple[str, ...]:
        """Output value names, with the default (the last step's result) filled in."""
        assert self.forward is not None  # filled in by validation
        return resolved_outputs(self.inputs, self.forward, self.outputs)


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
CompositeNode.model_rebuild()
NamedSequential.model_rebuild()
ParametricBlock.model_rebuild()
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
