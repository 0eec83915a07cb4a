"""Argument models derived from Python signatures: the constructor's signature is the schema.

This is what makes every ``torch.nn`` layer configurable without a hand-written
schema: the constructor's signature *is* the schema. Parameters whose type
cannot come from a config file (tensors, modules, callables) are left out when
they have a default; a layer that *requires* one is marked unconfigurable.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, create_model

__all__ = ["SignatureModel", "args_model_from_signature", "UnsupportedSignature"]

# Constructor arguments that are never config data: where tensors live is the
# builder's decision (``device=``), dtype is fixed per build, and random
# streams (``generator``) are derived from the seed.
_SKIPPED_PARAMS = {"self", "device", "dtype", "generator"}

_SCALARS = (int, float, bool, str, type(None))


class UnsupportedSignature(TypeError):
    """A required parameter has a type a config file cannot express."""


class SignatureModel(BaseModel):
    """Base of every derived argument model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=False)


def _ints_in(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _ints_in(item)]
    return []


def _positive(value: Any) -> Any:
    bad = [v for v in _ints_in(value) if v <= 0]
    if bad:
        raise ValueError("must be a positive size")
    return value


def _non_negative(value: Any) -> Any:
    bad = [v for v in _ints_in(value) if v < 0]
    if bad:
        raise ValueError("must not be negative")
    return value


_CHECKS = {"positive": _positive, "non_negative": _non_negative}


def _is_config_type(annotation: Any) -> bool:
    """True when every leaf of ``annotation`` is plain config data."""
    if annotation in _SCALARS or annotation is Any:
        return annotation is not Any
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return True
    if origin is Annotated:  # a bounded type (Annotated[int, Field(ge=0)]) inside a list
        return _is_config_type(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return all(_is_config_type(a) for a in typing.get_args(annotation))
    if origin in (tuple, list, collections.abc.Sequence):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return all(_is_config_type(a) for a in args) if args else True
    if origin is dict:
        return all(_is_config_type(a) for a in typing.get_args(annotation))
    return False


def _strip_unsupported(annotation: Any) -> Any | None:
    """Drop union members a config cannot express (``Optional[Tensor]`` -> None only)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:  # keep constraints such as Field(ge=0) on a supported type
        inner = typing.get_args(annotation)[0]
        return annotation if _is_config_type(inner) else None
    if origin in (Union, types.UnionType):
        kept = [a for a in typing.get_args(annotation) if _is_config_type(a)]
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else Union[tuple(kept)]  # noqa: UP007
    return annotation if _is_config_type(annotation) else None


def _annotation_for(param: inspect.Parameter, hint: Any) -> Any | None:
    if hint is inspect.Parameter.empty:
        default = param.default
        if default is inspect.Parameter.empty or default is None:
            # No type information: accept plain config scalars and lists of them.
            return Union[int, float, bool, str, list, tuple, None]  # noqa: UP007
        if isinstance(default, bool):
            return bool
        if isinstance(default, (int, float)):
            return Union[int, float] if isinstance(default, float) else int  # noqa: UP007
        if isinstance(default, (str, tuple, list)):
            return type(default)
        return None
    return _strip_unsupported(hint)


def args_model_from_signature(
    func: Callable[..., Any],
    *,
    model_name: str,
    keyword_only: bool = False,
    skip_leading: int = 0,
    constraints: Mapping[str, str] | None = None,
) -> type[SignatureModel]:
    """Build a pydantic model of ``func``'s configurable parameters.

    ``keyword_only=True`` takes only keyword-only parameters (ops: their
    positional parameters are tensor inputs, not config). ``skip_leading``
    drops that many leading parameters (``torch.nn.init``'s ``tensor``).
    ``constraints`` maps a parameter name to ``positive`` or ``non_negative``
    (declared beside the registration); every integer in the value is checked.
    """
    constraints = constraints or {}
    target = func.__init__ if inspect.isclass(func) else func
    signature = inspect.signature(func)
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable forward refs: fall back to defaults
        hints = {}
    fields: dict[str, Any] = {}
    for position, (name, param) in enumerate(signature.parameters.items()):
        if position < skip_leading:
            continue
        if name in _SKIPPED_PARAMS or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if keyword_only and param.kind is not param.KEYWORD_ONLY:
            continue
        annotation = _annotation_for(param, hints.get(name, inspect.Parameter.empty))
        required = param.default is inspect.Parameter.empty
        if annotation is None:
            if required:
                raise UnsupportedSignature(
                    f"{model_name}: required parameter '{name}' has a type a config cannot express"
                )
            continue
        check = _CHECKS.get(constraints.get(name, ""))
        if check is not None:
            annotation = Annotated[annotation, AfterValidator(check)]
        default = ... if required else param.default
        fields[name] = (annotation, default)
    return create_model(model_name, __base__=SignatureModel, **fields)
