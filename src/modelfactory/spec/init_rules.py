"""Initialisation rules as data: which parameters, which scheme, which arguments.

A rule is written flat, selectors beside the scheme and its arguments::

    - {module: "0", param: weight, scheme: xavier_uniform, gain: 1.0}
    - {type: Linear, param: bias, scheme: zeros}

Selectors (all optional, combined with AND):

- ``module``: a glob over the dotted path of the module that owns the
  parameter. ``*`` matches one path segment, ``**`` any number (also zero),
  so ``0`` is module 0 only, ``net.*`` its direct children, ``0.**`` module 0
  and everything below it, ``**.linear`` any module named ``linear``.
- ``type``: a layer type name (or a list); subclasses match too.
- ``param``: a glob over the parameter's own name (``weight``, ``bias``, ``*``).

Rules apply in order; for each parameter the last matching rule wins.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, model_serializer, model_validator

from ..errors import did_you_mean
from ..registry import INITS, LAYERS
from ..safety.globs import path_glob_match as glob_match
from .validation import Frozen, problem, raise_problems, scope_of, split_flat, validate_arguments

__all__ = ["InitRule", "InitSpec", "path_glob_match"]

_SELECTORS = ("module", "type", "param")


@functools.lru_cache(maxsize=65536)
def path_glob_match(pattern: str, path: str) -> bool:
    """Match a dotted path against a glob: ``*`` within one segment, ``**`` = any segments.

    Matched without recursion (an init glob of 3,000 ``**`` segments once
    overflowed the stack); see :mod:`modelfactory.safety.globs`.
    """
    return glob_match(pattern, path)


class InitRule(Frozen):
    """One rule: selectors, a registered scheme, and the scheme's arguments."""

    module: str | None = None
    type: str | tuple[str, ...] | None = None
    param: str | None = None
    scheme: str
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _flatten_and_check(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        if isinstance(data, InitRule):
            return data
        if isinstance(data, dict):
            data = split_flat(data, (*_SELECTORS, "scheme"))
        if isinstance(data, dict) and isinstance(data.get("type"), list):
            data = {**data, "type": tuple(data["type"])}
        rule = handler(data)
        problems: list[dict[str, Any]] = []
        if rule.scheme not in INITS:
            problems.append(
                problem(
                    "unknown_scheme",
                    f"unknown init scheme '{rule.scheme}'.{did_you_mean(rule.scheme, INITS.names())}",
                    ("scheme",),
                    rule.scheme,
                )
            )
        else:
            model = INITS.get(rule.scheme).args_model
            clean, found = validate_arguments(
                model, rule.args, f"init scheme {rule.scheme}", scope=scope_of(info)
            )
            problems.extend(found)
            object.__setattr__(rule, "args", clean)
        known_types = set(LAYERS.names()) | set(scope_of(info).blocks)
        for name in rule.type_names():
            if name not in known_types:
                problems.append(
                    problem(
                        "unknown_layer",
                        f"unknown layer type '{name}' in init rule.{did_you_mean(name, known_types)}",
                        ("type",),
                        name,
                    )
                )
        for key in ("module", "param"):
            value = getattr(rule, key)
            if value is not None and (
                "***" in value or value.startswith(".") or value.endswith(".")
            ):
                problems.append(
                    problem(
                        "bad_glob",
                        f"malformed glob {value!r}: use '*' for one path segment and '**' for any number",
                        (key,),
                        value,
                    )
                )
        raise_problems("InitRule", problems)
        return rule

    def type_names(self) -> tuple[str, ...]:
        """The ``type`` selector as a tuple (empty when absent)."""
        if self.type is None:
            return ()
        return (self.type,) if isinstance(self.type, str) else tuple(self.type)

    def describe(self) -> str:
        """``xavier_uniform(gain=1.0) on module=0 param=weight`` for reports and errors."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        selectors = " ".join(
            f"{k}={getattr(self, k)!r}" for k in _SELECTORS if getattr(self, k) is not None
        )
        return f"{self.scheme}({args})" + (
            f" on {selectors}" if selectors else " on every parameter"
        )

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: getattr(self, k) for k in _SELECTORS if getattr(self, k) is not None
        }
        if isinstance(out.get("type"), tuple):
            out["type"] = list(out["type"])
        return {**out, "scheme": self.scheme, **self.args}


class InitSpec(Frozen):
    """An init config (a ``conf/init/*.yaml`` file): a name and its ordered rules."""

    name: str | None = None
    description: str | None = None
    rules: tuple[InitRule, ...] = ()
    cpu_generator: Annotated[
        bool, Field(description="draw on CPU so every device gets identical values")
    ] = False
    models: Annotated[
        tuple[str, ...] | None,
        Field(
            description="the models this preset is written for (model names); used with "
            "another named model it is refused before anything is built (a sweep records the "
            "job as skipped)"
        ),
    ] = None
