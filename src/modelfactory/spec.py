"""The architecture language: frozen pydantic models of a model file.

A *node* describes one module and is one of:

- a bare string: a layer type that takes no arguments (``ReLU``) or a block name;
- a list: an ``nn.Sequential`` of nodes;
- ``{type: Linear, in_features: 20, out_features: 256}``: a registered layer;
- ``{block: name}``: a fresh instance of a named block;
- ``{shared: name}``: *the* module declared under ``shared:`` (same object everywhere);
- ``{repeat: 4, body: node, names: "block {i}"}``: a Sequential of fresh copies;
- ``{children: {...}, forward: [...]}``: a composite with an explicit forward.

Everything is validated here, before any module is built: unknown names get a
did-you-mean, layer arguments are checked against models derived from the
constructor signatures, forward steps are checked as a data-flow graph.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    PlainSerializer,
    PositiveInt,
    Tag,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from .errors import did_you_mean
from .initspec import InitRule
from .registry import LAYERS, OPS
from .signatures import UnsupportedSignature
from .specbase import (
    SCOPE,
    Frozen,
    Scope,
    custom_error,
    mapping_keys,
    placeholder_problems,
    problem,
    raise_problems,
    split_flat,
    validate_arguments,
)

__all__ = [
    "InputSpec",
    "ConstantSpec",
    "LayerNode",
    "BlockRef",
    "SharedRef",
    "RepeatNode",
    "Step",
    "CompositeNode",
    "ModelSpec",
    "Node",
    "TAG_PREFIX",
    "iter_nodes",
]

# Union tags appear in pydantic error locations; this prefix lets the error
# formatter drop them so paths read like the YAML (``network[2].in_features``).
TAG_PREFIX = "\u00b7"

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REPEAT_PLACEHOLDER = "{i}"
MAX_REPEAT = 100_000


# --------------------------------------------------------------------------
# data: input and constants
# --------------------------------------------------------------------------
Dtype = Literal["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]


class InputSpec(Frozen):
    """The random input of the forward pass (``torch.rand(2, 20)`` is the default)."""

    shape: tuple[PositiveInt, ...] = Field(min_length=1)
    dist: Literal["rand", "randn", "zeros", "ones", "randint"] = "rand"
    high: PositiveInt | None = Field(
        default=None, description="randint only: exclusive upper bound (token ids)"
    )
    dtype: Dtype | None = Field(default=None, description="default float32, or int64 for randint")

    @model_validator(mode="after")
    def _randint_needs_high(self) -> InputSpec:
        if self.dist == "randint" and self.high is None:
            raise PydanticCustomError(
                "randint_high", "dist 'randint' needs 'high', the exclusive upper bound"
            )
        if self.dist != "randint" and self.high is not None:
            raise PydanticCustomError("unused_high", "'high' is only used with dist 'randint'")
        return self

    @property
    def resolved_dtype(self) -> str:
        """The dtype the input tensor is drawn in."""
        return self.dtype or ("int64" if self.dist == "randint" else "float32")


class ConstantSpec(Frozen):
    """A non-trainable tensor (a persistent buffer), filled from the model's seed."""

    shape: tuple[Annotated[int, Field(ge=0)], ...]
    fill: Literal["rand", "randn", "zeros", "ones", "full", "arange"] = "rand"
    value: float | None = Field(default=None, description="fill 'full' only: the value")
    dtype: Dtype = "float32"

    @model_validator(mode="after")
    def _full_needs_value(self) -> ConstantSpec:
        if (self.fill == "full") != (self.value is not None):
            raise PydanticCustomError(
                "constant_value", "'value' is required with fill 'full' and used only there"
            )
        return self


# --------------------------------------------------------------------------
# nodes
# --------------------------------------------------------------------------
def _layer_args_problems(type_name: str, args: dict[str, Any]) -> tuple[dict[str, Any], list]:
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
        model, args, type_name, inferable=frozenset(entry.shape_rule)
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
    def _flatten_and_check(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, LayerNode):
            return data
        if isinstance(data, dict):
            data = split_flat(data, ("type",))
        node = handler(data)
        if node.type not in LAYERS:
            known = LAYERS.names() + sorted(SCOPE.get().blocks)
            raise custom_error(
                "unknown_layer",
                f"unknown layer type '{node.type}'.{did_you_mean(node.type, known)}",
            )
        clean, problems = _layer_args_problems(node.type, node.args)
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
    def _block_exists(self) -> BlockRef:
        scope = SCOPE.get()
        blocks = scope.blocks
        if self.block in blocks:
            declared, required = (scope.block_params or {}).get(
                self.block, (frozenset(), frozenset())
            )
            problems = placeholder_problems(self.params)
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
    def _shared_exists(self) -> SharedRef:
        names = SCOPE.get().shared
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

    def child_names(self) -> list[str]:
        """The names of the repeated children, in order."""
        return [self.names.replace(_REPEAT_PLACEHOLDER, str(i)) for i in range(self.repeat)]


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
    def _params_scope(cls, data: Any, handler: Any) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        outer = SCOPE.get()
        token = SCOPE.set(replace(outer, params=mapping_keys(data.get("params"))))
        try:
            return handler(data)
        finally:
            SCOPE.reset(token)

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


def _resolve_bare_name(name: str) -> LayerNode | BlockRef:
    """A bare string is a block if one has that name, else an argument-less layer."""
    if name in SCOPE.get().blocks:
        return BlockRef(block=name)
    return LayerNode.model_validate({"type": name})


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


class Step(Frozen):
    """One forward step: call a child, or apply a registered op.

    ``in`` names the step's inputs (default: the previous step's output) and
    ``out`` names its result (default: anonymous, consumed by the next step).
    Op arguments are written flat beside ``op``.
    """

    call: str | None = None
    op: str | None = None
    inputs: tuple[str, ...] | None = Field(default=None, alias="in")
    out: str | tuple[str, ...] | None = None  # a list unpacks a tuple-valued result
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _flatten(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, str):
            # A bare name: the composite decides whether it is a child or an op.
            data = {"call": data}
        elif isinstance(data, dict) and "op" in data:
            data = split_flat(data, ("op", "in", "out", "inputs"))
        if isinstance(data, dict) and isinstance(data.get("in"), str):
            data = {**data, "in": [data["in"]]}
        if isinstance(data, dict) and isinstance(data.get("out"), list):
            data = {**data, "out": tuple(data["out"])}
        step = handler(data)
        if (step.call is None) == (step.op is None):
            raise PydanticCustomError(
                "step_kind",
                "a step needs exactly one of 'call' (a child) or 'op' (a registered op)",
            )
        return step

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        out: dict[str, Any] = (
            {"call": self.call} if self.call is not None else {"op": self.op, **self.args}
        )
        if self.inputs is not None:
            out["in"] = list(self.inputs)
        if self.out is not None:
            out["out"] = list(self.out) if isinstance(self.out, tuple) else self.out
        return out


ValueName = Annotated[str, Field(pattern=IDENTIFIER.pattern)]
# A parameter's state_dict name, e.g. "head.weight" or "0.block 1.2.bias".
ParamPath = Annotated[str, Field(pattern=r"^[^.]+(\.[^.]+)*$")]
ChildName = Annotated[str, Field(min_length=1, pattern=r"^[^.]+$")]


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
    def _check_program(self) -> CompositeNode:
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
        steps = tuple(self._classify(i, s, problems) for i, s in enumerate(steps))
        raise_problems("CompositeNode", problems)
        self._check_dataflow(steps, problems)
        raise_problems("CompositeNode", problems)
        object.__setattr__(self, "forward", steps)
        return self

    def _classify(self, index: int, step: Step, problems: list[dict[str, Any]]) -> Step:
        """Resolve a bare step name to a child call or an argument-less op."""
        loc = ("forward", index)
        if step.call is not None:
            if step.call in self.children:
                return step
            if step.call in OPS:
                return step.model_copy(update={"call": None, "op": step.call})
            known = list(self.children) + OPS.names()
            problems.append(
                problem(
                    "unknown_step",
                    f"unknown child or op '{step.call}' in forward step.{did_you_mean(step.call, known)}"
                    f" Children: {', '.join(self.children) or 'none'}.",
                    loc,
                    step.call,
                )
            )
            return step
        assert step.op is not None  # guaranteed by Step._flatten
        if step.op not in OPS:
            problems.append(
                problem("unknown_op", OPS.unknown_message(step.op), loc + ("op",), step.op)
            )
            return step
        clean, found = validate_arguments(OPS.get(step.op).args_model, step.args, f"op {step.op}")
        problems.extend(p | {"loc": loc + tuple(p["loc"])} for p in found)
        return step.model_copy(update={"args": clean})

    def _check_dataflow(self, steps: tuple[Step, ...], problems: list[dict[str, Any]]) -> None:
        """Names used before defined, produced twice, arity, and unused values."""
        defined: dict[str, str] = {name: "input" for name in self.inputs}
        defined.update({name: "constant" for name in self.constants})
        used: set[str] = set()
        current = self.inputs[0]
        for index, step in enumerate(steps):
            loc = ("forward", index)
            ins = step.inputs if step.inputs is not None else (current,)
            for name in ins:
                if name not in defined:
                    problems.append(
                        problem(
                            "undefined_value",
                            f"input '{name}' is not defined before this step.{did_you_mean(name, defined)}"
                            f" Defined so far: {', '.join(n for n in defined if not n.startswith('%')) or 'none'}.",
                            loc + ("in",),
                            name,
                        )
                    )
                used.add(name)
            if step.op is not None:
                arity = OPS.get(step.op).arity
                if arity is not None and len(ins) != arity:
                    problems.append(
                        problem(
                            "arity",
                            f"op '{step.op}' takes {arity} input(s), found {len(ins)}: {list(ins)}",
                            loc + ("in",),
                        )
                    )
            if step.out is None:
                produced: tuple[str, ...] = (f"%{index}",)
            else:
                produced = step.out if isinstance(step.out, tuple) else (step.out,)
            for name in produced:
                if name in defined:
                    problems.append(
                        problem(
                            "produced_twice",
                            f"value '{name}' is already defined (as {defined[name]}); names are single-assignment",
                            loc + ("out",),
                            name,
                        )
                    )
                elif step.out is not None and not IDENTIFIER.match(name):
                    problems.append(
                        problem(
                            "bad_name",
                            f"value name {name!r} must be an identifier",
                            loc + ("out",),
                            name,
                        )
                    )
                defined[name] = f"output of step {index}"
            current = produced[0] if len(produced) == 1 else f"%{index}"
            if len(produced) > 1:
                # an unpacked result has no single "current" value for the next step
                defined.setdefault(current, f"output of step {index}")
                used.add(current)
        outputs = self.outputs if self.outputs is not None else (current,)
        for name in outputs:
            if name not in defined:
                problems.append(
                    problem(
                        "undefined_value",
                        f"output '{name}' is never produced.{did_you_mean(name, defined)}",
                        ("outputs",),
                        name,
                    )
                )
            used.add(name)
        for name, origin in defined.items():
            if name not in used and origin != "constant":
                label = name if not name.startswith("%") else f"the result of step {name[1:]}"
                problems.append(
                    problem(
                        "unused_value",
                        f"{label} ({origin}) is never used; use it or remove it",
                        ("forward",),
                    )
                )

    def resolved_outputs(self) -> tuple[str, ...]:
        """Output value names, with the default (the last step's result) filled in."""
        if self.outputs is not None:
            return self.outputs
        assert self.forward is not None
        if not self.forward:
            return (self.inputs[0],)
        last = self.forward[-1]
        if last.out is None:
            return (f"%{len(self.forward) - 1}",)
        return last.out if isinstance(last.out, tuple) else (last.out,)


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

    @model_validator(mode="wrap")
    @classmethod
    def _with_scope(cls, data: Any, handler: Any) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        token = SCOPE.set(
            Scope(
                mapping_keys(data.get("blocks")),
                mapping_keys(data.get("shared")),
                block_params=_declared_params(data.get("blocks")),
            )
        )
        try:
            return handler(data)
        finally:
            SCOPE.reset(token)

    @model_validator(mode="after")
    def _check_references(self) -> ModelSpec:
        problems: list[dict[str, Any]] = []
        for name in self.blocks:
            if name in LAYERS:
                problems.append(
                    problem(
                        "block_shadows_layer",
                        f"block name '{name}' is also a layer type; rename the block",
                        ("blocks", name),
                    )
                )
        misplaced = [
            (where, n)
            for where, root in [("network", self.network)]
            + [(f"shared.{k}", v) for k, v in self.shared.items()]
            + [
                (f"blocks.{k}", v.body if isinstance(v, ParametricBlock) else v)
                for k, v in self.blocks.items()
            ]
            for n in iter_nodes(root)
            if isinstance(n, ParametricBlock)
        ]
        for where, _ in misplaced:
            problems.append(
                problem(
                    "misplaced_params",
                    f"a block with 'params' is only allowed directly under blocks: (found inside {where})",
                    tuple(where.split(".", 1)),
                )
            )
        for section in ("blocks", "shared"):
            table: dict[str, Any] = getattr(self, section)
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
        tie_cycle = _find_cycle({target: {source} for target, source in self.ties.items()})
        if tie_cycle:
            problems.append(
                problem(
                    "tie_cycle",
                    f"ties form a cycle: {' -> '.join(tie_cycle)}; every chain of ties must end at a "
                    "parameter that is not itself tied",
                    ("ties", tie_cycle[0]),
                )
            )
        raise_problems("ModelSpec", problems)
        return self


def _declared_params(blocks: Any) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Raw block definitions -> (declared params, required params), before validation."""
    out = {}
    for name, definition in (blocks or {}).items() if isinstance(blocks, dict) else ():
        if isinstance(definition, dict) and isinstance(definition.get("params"), dict):
            params = definition["params"]
            out[name] = (mapping_keys(params), frozenset(k for k, v in params.items() if v is None))
    return out


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one cycle in ``graph`` as a path ``[a, b, a]``, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for nxt in sorted(graph.get(name, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def iter_nodes(node: Any) -> Iterator[Any]:
    """Yield ``node`` and every node nested in it (without following references)."""
    yield node
    if isinstance(node, (list, tuple)):
        for item in node:
            yield from iter_nodes(item)
    elif isinstance(node, (RepeatNode, ParametricBlock)):
        yield from iter_nodes(node.body)
    elif isinstance(node, NamedSequential):
        for child in node.sequential.values():
            yield from iter_nodes(child)
    elif isinstance(node, CompositeNode):
        for child in node.children.values():
            yield from iter_nodes(child)
