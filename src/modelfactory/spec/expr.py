"""Parameter expressions: a tiny arithmetic and comparison grammar, parsed as data and never evaluated as code.

Block parameters may be combined in ``{expr: "dim * 4"}`` (a value) and tested
in ``when: "stride == 1 and inp == oup"`` (a condition). The text is split by a
hand-written tokenizer and parsed by a recursive-descent parser into a tree of
tuples; evaluation walks that tree over the block's parameter values. There is
no attribute access, no indexing, no call other than ``min``/``max``, and every
size is bounded: the text's length, its tokens, its nesting, and the magnitude
of every intermediate value.

Grammar (lowest precedence first)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)?
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/" | "//") unary)*
    unary      := "-" unary | atom
    atom       := INT | FLOAT | 'text' | "true" | "false" | NAME
                | "(" expr ")" | ("min" | "max") "(" expr ("," expr)* ")"
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import did_you_mean

__all__ = [
    "ExprError",
    "MAX_EXPR_LENGTH",
    "MAX_EXPR_TOKENS",
    "MAX_EXPR_DEPTH",
    "MAX_MAGNITUDE",
    "parse",
    "names",
    "evaluate",
]

MAX_EXPR_LENGTH = 256  # characters of one expression
MAX_EXPR_TOKENS = 96
MAX_EXPR_DEPTH = 16  # nesting of parentheses, calls and unary operators
MAX_MAGNITUDE = 2**53  # every number, intermediate or final (exact in a float64)

Tree = tuple[Any, ...]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<str>'[^'\\\n]{0,64}')"
    r"|(?P<op>//|==|!=|<=|>=|[-+*/<>(),]))"
)
_KEYWORDS = {"and", "or", "not", "true", "false", "min", "max"}
_COMPARE = {"==", "!=", "<", "<=", ">", ">="}


class ExprError(ValueError):
    """An expression that does not parse or cannot be evaluated; the message says why."""


def _tokens(text: str) -> list[tuple[str, str]]:
    if not isinstance(text, str):
        raise ExprError(f"an expression must be a string, found {type(text).__name__}")
    if len(text) > MAX_EXPR_LENGTH:
        raise ExprError(
            f"the expression is {len(text)} characters long, over the limit of {MAX_EXPR_LENGTH}"
        )
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            rest = text[pos:].lstrip()
            raise ExprError(
                f"unexpected character {rest[:1]!r} at column {len(text) - len(rest) + 1} "
                "(allowed: numbers, parameter names, 'text', + - * / // ( ) , == != < <= > >=, "
                "and, or, not, min, max)"
            )
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        if len(out) > MAX_EXPR_TOKENS:
            raise ExprError(f"the expression has more than {MAX_EXPR_TOKENS} tokens")
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExprError(
                f"the expression ends too early{f' (expected {value!r})' if value else ''}"
            )
        if value is not None and token[1] != value:
            raise ExprError(f"expected {value!r}, found {token[1]!r}")
        self.pos += 1
        return token

    def at(self, *values: str) -> bool:
        token = self.peek()
        return token is not None and token[0] in ("op", "name") and token[1] in values

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_EXPR_DEPTH:
            raise ExprError(f"the expression is nested deeper than {MAX_EXPR_DEPTH} levels")

    def parse(self) -> Tree:
        if not self.tokens:
            raise ExprError("the expression is empty")
        tree = self.or_expr()
        if self.peek() is not None:
            raise ExprError(f"unexpected {self.peek()[1]!r} after a complete expression")  # type: ignore[index]
        return tree

    def or_expr(self) -> Tree:
        tree = self.and_expr()
        while self.at("or"):
            self.take()
            tree = ("or", tree, self.and_expr())
        return tree

    def and_expr(self) -> Tree:
        tree = self.not_expr()
        while self.at("and"):
            self.take()
            tree = ("and", tree, self.not_expr())
        return tree

    def not_expr(self) -> Tree:
        if self.at("not"):
            self.take()
            self.nested()
            tree = ("not", self.not_expr())
            self.depth -= 1
            return tree
        return self.comparison()

    def comparison(self) -> Tree:
        tree = self.sum()
        if self.at(*_COMPARE):
            op = self.take()[1]
            tree = ("cmp", op, tree, self.sum())
            if self.at(*_COMPARE):
                raise ExprError("comparisons cannot be chained; join them with 'and'")
        return tree

    def sum(self) -> Tree:
        tree = self.product()
        while self.at("+", "-"):
            op = self.take()[1]
            tree = ("bin", op, tree, self.product())
        return tree

    def product(self) -> Tree:
        tree = self.unary()
        while self.at("*", "/", "//"):
            op = self.take()[1]
            tree = ("bin", op, tree, self.unary())
        return tree

    def unary(self) -> Tree:
        if self.at("-"):
            self.take()
            self.nested()
            tree = ("neg", self.unary())
            self.depth -= 1
            return tree
        return self.atom()

    def atom(self) -> Tree:
        kind, value = self.take()
        if kind == "num":
            number: int | float = float(value) if any(c in value for c in ".eE") else int(value)
            return ("const", _bounded(number))
        if kind == "str":
            return ("const", value[1:-1])
        if kind == "name":
            if value in ("true", "false"):
                return ("const", value == "true")
            if value in ("min", "max"):
                self.take("(")
                self.nested()
                args = [self.or_expr()]
                while self.at(","):
                    self.take()
                    args.append(self.or_expr())
                self.take(")")
                self.depth -= 1
                return ("call", value, tuple(args))
            if value in _KEYWORDS:
                raise ExprError(f"'{value}' cannot start a value")
            return ("name", value)
        if value == "(":
            self.nested()
            tree = self.or_expr()
            self.take(")")
            self.depth -= 1
            return tree
        raise ExprError(f"unexpected {value!r}")


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Tree:
    """The expression's tree; :class:`ExprError` says what is wrong with the text."""
    return _Parser(text).parse()


def names(tree: Tree) -> list[str]:
    """The parameter names an expression reads, in order of appearance."""
    found: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if node[0] == "name":
            found.append(node[1])
        elif node[0] in ("neg", "not"):
            stack.append(node[1])
        elif node[0] in ("and", "or"):
            stack.extend((node[2], node[1]))
        elif node[0] in ("bin", "cmp"):
            stack.extend((node[3], node[2]))
        elif node[0] == "call":
            stack.extend(reversed(node[2]))
    return found


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def _number(value: Any, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExprError(f"{what} needs numbers, found {_kind(value)} {value!r}")
    return value


def _truth(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ExprError(f"{what} needs true/false, found {_kind(value)} {value!r}")
    return value


def _bounded(value: int | float) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError(f"the value {value} is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise ExprError(f"overflow: {value:.4g} is beyond the limit of ±2**53")
    return value


def _arith(op: str, a: int | float, b: int | float) -> int | float:
    if op == "+":
        return _bounded(a + b)
    if op == "-":
        return _bounded(a - b)
    if op == "*":
        return _bounded(a * b)
    if b == 0:
        raise ExprError(f"division by zero ({a} {op} 0)")
    if op == "//":
        return _bounded(a // b)
    return _bounded(a / b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op in ("==", "!="):
        if _kind(a) != _kind(b):
            raise ExprError(f"cannot compare {_kind(a)} {a!r} with {_kind(b)} {b!r}")
        return (a == b) == (op == "==")
    x, y = _number(a, f"'{op}'"), _number(b, f"'{op}'")
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def _eval(tree: Tree, env: Mapping[str, Any]) -> Any:
    kind = tree[0]
    if kind == "const":
        return tree[1]
    if kind == "name":
        if tree[1] not in env:
            raise ExprError(f"unknown parameter '{tree[1]}'.{did_you_mean(tree[1], env)}")
        value = env[tree[1]]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _bounded(value)
        if isinstance(value, (bool, str)):
            return value
        raise ExprError(
            f"parameter '{tree[1]}' is a {type(value).__name__}; only numbers, text and true/false can be used in an expression"
        )
    if kind == "neg":
        return _bounded(-_number(_eval(tree[1], env), "'-'"))
    if kind == "not":
        return not _truth(_eval(tree[1], env), "'not'")
    if kind == "and":
        return _truth(_eval(tree[1], env), "'and'") and _truth(_eval(tree[2], env), "'and'")
    if kind == "or":
        return _truth(_eval(tree[1], env), "'or'") or _truth(_eval(tree[2], env), "'or'")
    if kind == "bin":
        what = f"'{tree[1]}'"
        return _arith(
            tree[1], _number(_eval(tree[2], env), what), _number(_eval(tree[3], env), what)
        )
    if kind == "cmp":
        return _compare(tree[1], _eval(tree[2], env), _eval(tree[3], env))
    values = [_number(_eval(arg, env), f"{tree[1]}()") for arg in tree[2]]
    return min(values) if tree[1] == "min" else max(values)


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    """The value of expression ``text`` over parameter values ``env`` (number, text or true/false)."""
    return _eval(parse(text), env)
