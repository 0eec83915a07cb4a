"""Shared plumbing of the spec models: immutability, unknown-key errors, name scope.

Validators collect every problem and raise them together through
:func:`raise_problems`; pydantic merges them (with their locations) into the
outer ``ValidationError``, so one validation reports everything.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .errors import did_you_mean

__all__ = [
    "Frozen",
    "problem",
    "relocated",
    "raise_problems",
    "Scope",
    "SCOPE",
    "mapping_keys",
    "custom_error",
]


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
        "type": PydanticCustomError(kind, "{message}", {"message": message}),
        "loc": loc,
        "input": found,
    }


def relocated(err: ValidationError, prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Re-express another validation's errors as line errors under ``prefix``."""
    return [
        problem(d["type"], d["msg"], prefix + tuple(d["loc"]), d.get("input")) for d in err.errors()
    ]


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


SCOPE: contextvars.ContextVar[Scope] = contextvars.ContextVar(
    "modelfactory_scope",
    default=Scope(),  # noqa: B039 - frozen dataclass of frozensets
)


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
