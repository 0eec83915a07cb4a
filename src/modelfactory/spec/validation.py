"""Validation plumbing of the spec models: immutability, collected problems, the name scope.

Validators collect every problem and raise them together through
:func:`raise_problems`; pydantic merges them (with their locations) into the
outer ``ValidationError``, so one validation reports everything.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..errors import did_you_mean
from .placeholders import (
    condition_issues,
    contains_placeholder,
    is_placeholder,
    placeholder_issues,
)

__all__ = [
    "TAG_PREFIX",
    "Frozen",
    "problem",
    "relocated",
    "raise_problems",
    "carried",
    "raise_with",
    "Scope",
    "scope_of",
    "inner_scope",
    "scope_context",
    "mapping_keys",
    "custom_error",
    "split_flat",
    "is_placeholder",
    "placeholder_problems",
    "validate_arguments",
    "When",
    "when_problems",
]


# Union tags appear in pydantic error locations; this prefix lets the error
# formatter drop them so paths read like the YAML (``network[2].in_features``).
TAG_PREFIX = "\u00b7"


def split_flat(data: dict[str, Any], fixed: tuple[str, ...]) -> dict[str, Any]:
    """``{type: Linear, in_features: 20}`` -> ``{type: Linear, args: {in_features: 20}}``.

    Nodes, steps and init rules are written flat: their own keys beside the
    arguments of the layer, op or scheme they name.
    """
    own = {k: v for k, v in data.items() if k in fixed}
    return own | {"args": {k: v for k, v in data.items() if k not in fixed}}


def custom_error(kind: str, message: str) -> PydanticCustomError:
    """A pydantic error whose message is ``message`` verbatim (braces included)."""
    return PydanticCustomError(kind, "{message}", {"message": message})


# --------------------------------------------------------------------------
# error plumbing shared by the validators
# --------------------------------------------------------------------------
def problem(
    kind: str, message: str, loc: tuple[Any, ...] = (), found: Any = None
) -> dict[str, Any]:
    """One line error for :func:`raise_problems` (``message`` is literal text)."""
    return {
        "type": custom_error(kind, message),
        "loc": loc,
        "input": found,
    }


def relocated(err: ValidationError, prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Re-express another validation's errors as line errors under ``prefix``."""
    return [
        problem(d["type"], d["msg"], prefix + tuple(d["loc"]), d.get("input")) for d in err.errors()
    ]


def carried(err: ValidationError) -> list[dict[str, Any]]:
    """``err``'s errors as line errors, unchanged, to raise again together with more problems."""
    out = []
    for d in err.errors(include_url=False):
        ctx = d.get("ctx") or {}
        if "message" in ctx:  # our own problem: its kind and text verbatim
            out.append(problem(d["type"], d["msg"], tuple(d["loc"]), d.get("input")))
            continue
        item = {"type": d["type"], "loc": tuple(d["loc"]), "input": d.get("input")}
        if ctx:
            item["ctx"] = ctx
        try:  # a pydantic error type that can be raised again as it was
            ValidationError.from_exception_data("check", [item])  # type: ignore[list-item]
        except Exception:  # noqa: BLE001 - keep its text under its own kind
            item = problem(d["type"], d["msg"], tuple(d["loc"]), d.get("input"))
        out.append(item)
    return out


def raise_with(title: str, err: ValidationError, more: list[dict[str, Any]]) -> None:
    """Raise ``err`` again together with the problems of ``more`` it does not already hold.

    Validators that look at partial data when another part failed use it; the
    same problem found twice (pydantic may run a validator at two levels of a
    recursive model) is reported once.
    """
    seen = {(tuple(d["loc"]), d["msg"]) for d in err.errors(include_url=False)}
    fresh = [p for p in more if (tuple(p["loc"]), p["type"].message()) not in seen]
    if not fresh:
        raise err
    raise_problems(title, carried(err) + fresh)


def raise_problems(title: str, problems: list[dict[str, Any]]) -> None:
    """Raise every collected problem at once; pydantic merges them into the outer error."""
    if problems:
        raise ValidationError.from_exception_data(title, problems)


# --------------------------------------------------------------------------
# name scope: block and shared names are defined at the top of a model file
# and referred to anywhere below it
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    blocks: frozenset[str] = frozenset()
    shared: frozenset[str] = frozenset()
    # block name -> (declared params, required params), for checking {block: X, with: ...}
    block_params: dict[str, tuple[frozenset[str], frozenset[str]]] | None = None
    # the params of the block definition being validated (None: not inside one)
    params: frozenset[str] | None = None


_SCOPE_KEY = "modelfactory.scope"
_NO_SCOPE = Scope()


def scope_of(info: ValidationInfo | None) -> Scope:
    """The names in scope, carried in pydantic's validation ``context``."""
    context = info.context if info is not None else None
    if isinstance(context, dict):
        return context.get(_SCOPE_KEY, _NO_SCOPE)
    return _NO_SCOPE


def scope_context(scope: Scope, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """A validation ``context`` carrying ``scope`` (for ``model_validate(..., context=...)``)."""
    return {**(context or {}), _SCOPE_KEY: scope}


@contextmanager
def inner_scope(info: ValidationInfo, **changes: Any) -> Iterator[None]:
    """Change the scope while validating a nested part (a block definition's params)."""
    context = info.context
    if not isinstance(context, dict):  # validated standalone: nothing is in scope anyway
        yield
        return
    outer = context.get(_SCOPE_KEY, _NO_SCOPE)
    context[_SCOPE_KEY] = replace(outer, **changes)
    try:
        yield
    finally:
        context[_SCOPE_KEY] = outer


def mapping_keys(value: Any) -> frozenset[str]:
    return (
        frozenset(k for k in value if isinstance(k, str))
        if isinstance(value, dict)
        else frozenset()
    )


class Frozen(BaseModel):
    """Base of every spec model: immutable, and unknown keys are errors with a did-you-mean."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @classmethod
    def _allowed_keys(cls) -> set[str]:
        keys: set[str] = set()
        for name, info in cls.model_fields.items():
            keys.add(name)
            if info.alias:
                keys.add(info.alias)
        return keys

    @model_validator(mode="wrap")
    @classmethod
    def _reject_unknown_keys(cls, data: Any, handler: Any) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        allowed = cls._allowed_keys()
        unknown = [k for k in data if k not in allowed]
        if not unknown:
            return handler(data)
        problems = [
            problem(
                "unknown_key",
                f"unknown key '{k}'.{did_you_mean(str(k), allowed)} "
                f"Allowed keys: {', '.join(sorted(allowed))}.",
                (k,),
                data[k],
            )
            for k in unknown
        ]
        try:
            handler({k: v for k, v in data.items() if k in allowed})
        except ValidationError as err:
            problems += relocated(err)
        raise_problems(cls.__name__, problems)


def placeholder_problems(values: dict[str, Any], scope: Scope) -> list[dict[str, Any]]:
    """Placeholders (``{param}``, ``{expr}``, also inside lists) must read parameters of the enclosing block."""
    return [problem(*issue) for issue in placeholder_issues(values, scope.params)]


def _found(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut short: a value may be a megabyte-long string."""
    text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit])
    if len(text) > limit:
        size = f", {len(value):,} characters" if isinstance(value, str) else ""
        return f"{text[:limit]}... (cut{size})"
    return text


def _union_fields(model: type[BaseModel]) -> frozenset[str]:
    """Arguments whose type is a union of two or more kinds (``int | list[int]``)."""
    out = set()
    for name, info in model.model_fields.items():
        if typing.get_origin(info.annotation) in (typing.Union, types.UnionType):
            kinds = [a for a in typing.get_args(info.annotation) if a is not type(None)]
            if len(kinds) > 1:
                out.add(name)
    return frozenset(out)


def _one_per_union(model: type[BaseModel], errors: list[Any]) -> list[Any]:
    """One error per union-typed argument, located at the argument itself.

    pydantic reports a union's failure once per member, under a tag
    (``size.constrained-int``, ``size.list[constrained-int]``). Keep the
    member that fits what was written: not a wrong-type error if another
    remains, then the most specific location (``kernel_size[1]``).
    """
    unions = _union_fields(model)
    kept: list[Any] = []
    grouped: dict[Any, list[Any]] = {}
    for d in errors:
        loc = tuple(d["loc"])
        if len(loc) >= 2 and loc[0] in unions and isinstance(loc[1], str):
            grouped.setdefault(loc[0], []).append({**d, "loc": (loc[0],) + loc[2:]})
        else:
            kept.append(d)
    for group in grouped.values():
        fitting = [d for d in group if not str(d["type"]).endswith("_type")] or group
        kept.append(max(fitting, key=lambda d: len(d["loc"])))
    return kept


def validate_arguments(
    model: type[BaseModel],
    args: dict[str, Any],
    owner: str,
    *,
    scope: Scope,
    inferable: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validate config arguments against ``model``; return (clean args, problems).

    Placeholders (also inside list arguments) are checked for their names only
    (their values come later, and are validated once substituted),
    and arguments in ``inferable`` may be omitted (shape inference fills them).
    """
    fields = list(model.model_fields)
    placeholders = {k: v for k, v in args.items() if contains_placeholder(v)}
    concrete = {k: v for k, v in args.items() if k not in placeholders}
    problems = placeholder_problems(placeholders, scope)
    for key in placeholders:
        if key not in model.model_fields:
            problems.append(
                problem(
                    "extra_forbidden",
                    f"unknown argument '{key}' for {owner}.{did_you_mean(key, fields)} {owner} takes: {', '.join(fields) or 'no arguments'}.",
                    (key,),
                    placeholders[key],
                )
            )
    try:
        # the scope reaches layer nodes nested in an argument (TransformerEncoder's encoder_layer)
        validated = model.model_validate(concrete, context=scope_context(scope))
    except ValidationError as err:
        for d in _one_per_union(model, err.errors()):
            loc = tuple(d["loc"])
            key = loc[0] if loc else "?"
            if len(loc) > 1 and "message" in (d.get("ctx") or {}):
                # a nested layer node's own problem (TransformerEncoder's encoder_layer), worded there
                msg = d["msg"]
            elif d["type"] == "missing":
                if key in placeholders or key in inferable:
                    continue
                msg = f"missing required argument '{key}' for {owner}"
            elif d["type"] == "extra_forbidden":
                msg = f"unknown argument '{key}' for {owner}.{did_you_mean(str(key), fields)} {owner} takes: {', '.join(fields) or 'no arguments'}."
            else:
                text = d["msg"].removeprefix("Value error, ")
                msg = f"invalid value for {owner} argument '{key}': {text} (found {_found(d.get('input'))})"
            problems.append(problem(d["type"], msg, loc, d.get("input")))
        return args, problems
    clean = validated.model_dump(exclude_unset=True)
    clean.update(placeholders)
    return clean, problems


def _absent(value: Any) -> bool:
    return value is None


# ``when: "stride == 1"``: the node (or step) exists only where the condition holds.
When = Annotated[
    str | None,
    Field(
        exclude_if=_absent,
        description="keep this only where a block-parameter condition holds, e.g. 'stride == 1'",
    ),
]


def when_problems(when: str | None, info: ValidationInfo) -> list[dict[str, Any]]:
    """A ``when:`` condition must parse and read only the enclosing block's parameters."""
    if when is None:
        return []
    return [problem(*issue) for issue in condition_issues(when, scope_of(info).params)]
