"""Block parameters inside a block's body: ``{param: name}``, ``{expr: "a * b"}`` and ``when:`` conditions.

A placeholder stands for a value known only when the block is used (``{block:
Name, with: {...}}``). It may be an argument's whole value or an item of a list
argument (``unflattened_size: [{param: c}, 1, 1]``). Validation checks the
names it reads (:func:`placeholder_issues`); expansion substitutes the values
(:func:`substitute`), evaluating expressions with :mod:`.expr` (never ``eval``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import did_you_mean
from .expr import ExprError, evaluate, names, parse

__all__ = [
    "is_placeholder",
    "contains_placeholder",
    "iter_placeholders",
    "placeholder_issues",
    "condition_issues",
    "default_issues",
    "substitute",
    "check_condition",
    "Issue",
]

# (kind, message, location relative to the checked mapping, the value found)
Issue = tuple[str, str, tuple[Any, ...], Any]


def is_placeholder(value: Any) -> bool:
    """``{param: name}`` or ``{expr: "..."}``: a value substituted when the block is used."""
    return (
        isinstance(value, dict)
        and len(value) == 1
        and (isinstance(value.get("param"), str) or isinstance(value.get("expr"), str))
    )


def iter_placeholders(
    value: Any, loc: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], dict[str, str]]]:
    """Every placeholder in ``value`` (the value itself, or inside nested lists and nested
    layer nodes such as TransformerEncoder's ``encoder_layer``), with its location."""
    stack = [(loc, value)]
    while stack:
        where, current = stack.pop()
        if is_placeholder(current):
            yield where, current
        elif isinstance(current, (list, tuple)):
            stack.extend((where + (i,), item) for i, item in reversed(list(enumerate(current))))
        elif isinstance(current, dict):
            stack.extend((where + (k,), item) for k, item in reversed(list(current.items())))


def contains_placeholder(value: Any) -> bool:
    """True if ``value`` is a placeholder or a list holding one (at any depth)."""
    return next(iter_placeholders(value), None) is not None


def _outside(text: str) -> str:
    return f"{text} is only allowed inside a block definition that declares params"


def _declared_text(declared: frozenset[str]) -> str:
    return ", ".join(sorted(declared)) or "none"


def _expression_issues(
    text: str, declared: frozenset[str], loc: tuple[Any, ...], found: Any, what: str
) -> list[Issue]:
    try:
        tree = parse(text)
    except ExprError as err:
        return [("bad_expression", f"{what} {text!r} does not parse: {err}", loc, found)]
    issues: list[Issue] = []
    for name in dict.fromkeys(names(tree)):
        if name not in declared:
            issues.append(
                (
                    "undeclared_param",
                    f"{what} {text!r} reads '{name}', which is no parameter of this block."
                    f"{did_you_mean(name, declared)} Declared: {_declared_text(declared)}.",
                    loc,
                    found,
                )
            )
    return issues


def placeholder_issues(values: Mapping[str, Any], declared: frozenset[str] | None) -> list[Issue]:
    """Placeholders in ``values`` must name (or read only) parameters of the enclosing block."""
    issues: list[Issue] = []
    for key, value in values.items():
        for loc, holder in iter_placeholders(value, (key,)):
            if "param" in holder:
                name = holder["param"]
                if declared is None:
                    issues.append(
                        ("placeholder_outside_block", _outside(f"{{param: {name}}}"), loc, holder)
                    )
                elif name not in declared:
                    issues.append(
                        (
                            "undeclared_param",
                            f"{{param: {name}}} names no parameter of this block."
                            f"{did_you_mean(name, declared)} Declared: {_declared_text(declared)}.",
                            loc,
                            holder,
                        )
                    )
            elif declared is None:
                issues.append(("placeholder_outside_block", _outside("{expr: ...}"), loc, holder))
            else:
                issues.extend(
                    _expression_issues(holder["expr"], declared, loc, holder, "the expression")
                )
    return issues


def default_issues(params: Any) -> list[Issue]:
    """A default may compute from the parameters declared before it: ``hidden: {expr: "dim * 4"}``."""
    issues: list[Issue] = []
    earlier: frozenset[str] = frozenset()
    for name, default in params.items() if isinstance(params, dict) else ():
        for kind, message, loc, found in placeholder_issues({name: default}, earlier):
            note = " (a default reads only the parameters declared before it)"
            issues.append((kind, message + note, ("params",) + loc, found))
        earlier = earlier | {name}
    return issues


def condition_issues(condition: Any, declared: frozenset[str] | None) -> list[Issue]:
    """A ``when:`` condition: an expression over the block's parameters (``"stride == 1"``)."""
    loc = ("when",)
    if declared is None:
        return [("placeholder_outside_block", _outside("'when:'"), loc, condition)]
    if isinstance(condition, bool):
        return []
    return _expression_issues(condition, declared, loc, condition, "the condition")


def substitute(value: Any, env: Mapping[str, Any]) -> Any:
    """``value`` with each placeholder replaced by its value in ``env``; :class:`ExprError` if one fails."""
    if is_placeholder(value):
        if "param" in value:
            return env[value["param"]]
        return evaluate(value["expr"], env)
    if isinstance(value, (list, tuple)):
        return [substitute(item, env) for item in value]
    if isinstance(value, dict):  # a nested layer node's arguments
        return {key: substitute(item, env) for key, item in value.items()}
    return value


def check_condition(condition: Any, env: Mapping[str, Any]) -> bool:
    """The value of a ``when:`` condition; :class:`ExprError` if it is not true/false."""
    if isinstance(condition, bool):
        return condition
    result = evaluate(condition, env)
    if not isinstance(result, bool):
        raise ExprError(
            f"the condition {condition!r} must be true or false, found {result!r}; "
            "compare it, e.g. 'stride == 1'"
        )
    return result
