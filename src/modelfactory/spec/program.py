"""A composite's forward program: its steps, what each one names, calls and passes.

A step calls a child (with keyword arguments if it likes) or applies a
registered op; its ``out`` names, unpacks or drops (``_``) the result. The
checks across steps (the data-flow graph) are in :mod:`.dataflow`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, model_serializer, model_validator
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from ..errors import did_you_mean
from ..registry import LAYERS, OPS
from .placeholders import condition_issues
from .validation import (
    Frozen,
    Scope,
    custom_error,
    placeholder_problems,
    problem,
    raise_problems,
    split_flat,
    validate_arguments,
)

__all__ = [
    "IDENTIFIER",
    "Step",
    "ValueName",
    "ParamPath",
    "ChildName",
    "OutPattern",
    "DISCARD",
    "classify_step",
    "forward_signature",
    "leaves",
    "kept",
    "is_value_ref",
]

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


DISCARD = "_"  # an output name that drops the value (any number of times)
MAX_UNPACK_DEPTH = 8  # nesting of an ``out:`` pattern such as ``[y, [h, c]]``

# ``out:`` is a name, or a list of patterns that unpacks a tuple (nested: ``[y, [h, c]]``).
OutPattern = TypeAliasType("OutPattern", "str | tuple[OutPattern, ...]")


def is_value_ref(value: Any) -> bool:
    """``{value: name}`` in a call's ``kwargs``: pass the named value, not a literal."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("value"), str)


class Step(Frozen):
    """One forward step: call a child, or apply a registered op.

    ``in`` names the step's inputs (default: the previous step's output) and
    ``out`` names its result (default: anonymous, consumed by the next step);
    a list unpacks a tuple, nested lists unpack nested tuples, ``_`` drops a
    value. Op arguments are written flat beside ``op``; a child call's keyword
    arguments go under ``kwargs`` (``{value: name}`` passes a named value).
    ``when`` keeps the step only where a block-parameter condition holds.
    """

    call: str | None = None
    op: str | None = None
    inputs: tuple[str, ...] | None = Field(default=None, alias="in")
    out: OutPattern | None = None
    kwargs: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Any] = Field(
        default_factory=dict
    )
    when: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _flatten(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, str):
            # A bare name: the composite decides whether it is a child or an op.
            data = {"call": data}
        elif isinstance(data, dict) and "op" in data:
            data = split_flat(data, ("op", "in", "out", "inputs", "when", "kwargs"))
        elif isinstance(data, dict) and "call" in data:
            _reject_flat_keywords(data)
        if isinstance(data, dict) and isinstance(data.get("in"), str):
            data = {**data, "in": [data["in"]]}
        if isinstance(data, dict) and isinstance(data.get("out"), list):
            data = {**data, "out": _pattern(data["out"])}
        step = handler(data)
        if (step.call is None) == (step.op is None):
            raise PydanticCustomError(
                "step_kind",
                "a step needs exactly one of 'call' (a child) or 'op' (a registered op)",
            )
        if step.kwargs and step.call is None:
            raise custom_error(
                "op_kwargs",
                "'kwargs' is for child calls; an op's arguments are written beside 'op'",
            )
        if isinstance(step.out, tuple) and _depth(step.out) > MAX_UNPACK_DEPTH:
            raise custom_error(
                "unpack_depth",
                f"'out' unpacks more than {MAX_UNPACK_DEPTH} levels of nested tuples",
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
            out["out"] = _unpattern(self.out)
        if self.kwargs:
            out["kwargs"] = dict(self.kwargs)
        if self.when is not None:
            out["when"] = self.when
        return out

    def leaves(self) -> tuple[str, ...]:
        """Every name in ``out`` in order (``_`` included); empty when ``out`` is absent."""
        return leaves(self.out) if self.out is not None else ()

    def value_refs(self) -> tuple[str, ...]:
        """The values a call passes as keyword arguments (``kwargs: {mask: {value: m}}``)."""
        return tuple(v["value"] for v in self.kwargs.values() if is_value_ref(v))


_CALL_KEYS = ("call", "in", "inputs", "out", "kwargs", "when")


def _reject_flat_keywords(data: dict[Any, Any]) -> None:
    """A child call's keyword arguments go under ``kwargs``, never beside the step's own keys."""
    unknown = [k for k in data if k not in _CALL_KEYS]
    if unknown:
        raise_problems(
            "Step",
            [
                problem(
                    "unknown_key",
                    f"unknown key '{k}' in a child call.{did_you_mean(str(k), _CALL_KEYS)} Keyword "
                    f"arguments of the call go under 'kwargs': {{call: {data.get('call')}, "
                    f"kwargs: {{{k}: ...}}}}. Allowed keys: {', '.join(_CALL_KEYS)}.",
                    (k,),
                    data[k],
                )
                for k in unknown
            ],
        )


def _pattern(value: Any) -> Any:
    """Lists (from YAML) -> tuples at every level of an ``out`` pattern (data depth is bounded)."""
    return tuple(_pattern(v) for v in value) if isinstance(value, list) else value


def _unpattern(value: Any) -> Any:
    return [_unpattern(v) for v in value] if isinstance(value, tuple) else value


def _depth(pattern: Any) -> int:
    return 1 + max((_depth(p) for p in pattern), default=0) if isinstance(pattern, tuple) else 0


def leaves(pattern: Any) -> tuple[str, ...]:
    """The names of an ``out`` pattern, in order."""
    if isinstance(pattern, tuple):
        return tuple(name for part in pattern for name in leaves(part))
    return (pattern,)


def kept(step: Step, index: int) -> tuple[str, ...]:
    """The values a step keeps: its named outputs (``_`` dropped), or its anonymous result."""
    if step.out is None:
        return (f"%{index}",)
    return tuple(name for name in step.leaves() if name != DISCARD)


ValueName = Annotated[str, Field(pattern=IDENTIFIER.pattern)]
# A parameter's state_dict name, e.g. "head.weight" or "0.block 1.2.bias".
ParamPath = Annotated[str, Field(pattern=r"^[^.]+(\.[^.]+)*$")]
ChildName = Annotated[str, Field(min_length=1, pattern=r"^[^.]+$")]


def classify_step(
    children: Mapping[str, Any],
    index: int,
    step: Step,
    problems: list[dict[str, Any]],
    scope: Scope,
) -> Step:
    """Resolve a bare step name to a child call or an argument-less op; check its arguments."""
    loc = ("forward", index)
    if step.when is not None:
        problems.extend(
            problem(kind, message, loc + where, found)
            for kind, message, where, found in condition_issues(step.when, scope.params)
        )
    if step.call is not None:
        if step.call in children:
            problems.extend(_kwargs_problems(children[step.call], step, loc, scope))
            return step
        if step.call in OPS and not step.kwargs:
            return step.model_copy(update={"call": None, "op": step.call})
        known = list(children) + OPS.names()
        problems.append(
            problem(
                "unknown_step",
                f"unknown child or op '{step.call}' in forward step.{did_you_mean(step.call, known)}"
                f" Children: {', '.join(children) or 'none'}.",
                loc,
                step.call,
            )
        )
        return step
    assert step.op is not None  # guaranteed by Step._flatten
    if step.op not in OPS:
        problems.append(problem("unknown_op", OPS.unknown_message(step.op), loc + ("op",), step.op))
        return step
    clean, found = validate_arguments(
        OPS.get(step.op).args_model, step.args, f"op {step.op}", scope=scope
    )
    problems.extend(p | {"loc": loc + tuple(p["loc"])} for p in found)
    return step.model_copy(update={"args": clean})


def _kwargs_problems(
    child: Any, step: Step, loc: tuple[Any, ...], scope: Scope
) -> list[dict[str, Any]]:
    """A call's keyword arguments: placeholders in scope, and names the child's forward takes."""
    literal = {k: v for k, v in step.kwargs.items() if not is_value_ref(v)}
    found = [
        p | {"loc": loc + ("kwargs",) + tuple(p["loc"])}
        for p in placeholder_problems(literal, scope)
    ]
    if not step.kwargs:
        return found
    from .composite import CompositeNode  # both import this module
    from .nodes import LayerNode

    if isinstance(child, CompositeNode):
        found.append(
            problem(
                "call_kwargs",
                f"child '{step.call}' is a composite: it takes its inputs through 'in', "
                "not keyword arguments",
                loc + ("kwargs",),
            )
        )
    elif isinstance(child, LayerNode):
        signature = forward_signature(LAYERS.get(child.type).target)
        if signature is not None:
            positional, keywords, open_ended = signature
            given = len(step.inputs) if step.inputs is not None else 1
            for name in step.kwargs:
                if name in positional[:given]:
                    found.append(
                        problem(
                            "call_kwargs",
                            f"'{name}' is already passed by 'in' (input {positional.index(name)} of "
                            f"{child.type}.forward); give it once",
                            loc + ("kwargs", name),
                        )
                    )
                elif name not in keywords and not open_ended:
                    found.append(
                        problem(
                            "call_kwargs",
                            f"{child.type}.forward takes no argument '{name}'."
                            f"{did_you_mean(name, keywords)} It takes: {', '.join(keywords) or 'nothing'}.",
                            loc + ("kwargs", name),
                        )
                    )
    return found


def forward_signature(target: Any) -> tuple[list[str], list[str], bool] | None:
    """``(positional names, keyword names, takes **kwargs)`` of a layer class's ``forward``."""
    forward = getattr(target, "forward", None) if inspect.isclass(target) else None
    if forward is None:
        return None
    try:
        parameters = list(inspect.signature(forward).parameters.values())[1:]  # drop self
    except (TypeError, ValueError):
        return None
    kinds = inspect.Parameter
    positional = [
        p.name for p in parameters if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    keywords = [
        p.name for p in parameters if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
    ]
    return positional, keywords, any(p.kind == kinds.VAR_KEYWORD for p in parameters)
