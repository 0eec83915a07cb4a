"""Parse untrusted JSON within explicit bounds on size, nesting depth and number size.

:func:`json.loads` recurses once per nesting level (deep input raises
``RecursionError``, or worse in code that walks the result), converts a
5,000-digit integer in quadratic time, and accepts ``NaN`` and ``Infinity``.
:func:`loads_bounded` refuses all of these with a clean
:class:`modelfactory.errors.ModelFactoryError` (or a subclass the caller names):

* the input is at most ``max_bytes`` bytes (UTF-8), checked before anything else;
* nesting is measured by a linear pre-scan that skips JSON strings (escapes
  included) and counts brackets with C-level ``itertools.accumulate``, so no
  recursion happens before the depth is known to be within ``max_depth``;
* integers have at most ``max_int_digits`` digits (``parse_int`` hook);
  number literals over 100 characters, floats that overflow to infinity and the
  non-JSON constants ``NaN`` / ``Infinity`` / ``-Infinity`` are refused;
* an object with a repeated key is refused (parsers disagree on which copy
  wins, so a repeated key can show one value to a checker and another to a
  loader); pass ``allow_duplicate_keys=True`` to keep the last, like ``json``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any, NoReturn

from ..errors import ModelFactoryError

__all__ = ["json_depth", "loads_bounded"]

MAX_NUMBER_CHARS = 100

# A JSON string: quote, runs of plain characters or backslash escapes, then
# the closing quote -- or the end of the text, for an unterminated string
# (which extends to the end). Every attempt at a quote therefore succeeds on
# its first try: no backtracking, and the substitution is linear.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DELTA = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class _Refused(Exception):
    def __init__(self, finding: str, remedy: str) -> None:
        super().__init__(finding)
        self.finding = finding
        self.remedy = remedy


def _clip(text: str, limit: int = 120) -> str:
    """A caller's description, made printable and cut to ``limit`` characters."""
    head = text[: limit + 1]
    if not head.isprintable():
        head = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in head)
    return head if len(head) <= limit else head[: limit - 3] + "..."


def _short(value: str, limit: int = 80) -> str:
    return repr(value[:limit]) + ("..." if len(value) > limit else "")


def json_depth(text: str) -> int:
    """The bracket nesting depth of JSON ``text``, ignoring brackets inside strings.

    Linear time, no recursion. ``[]`` has depth 1, a scalar 0. An unterminated
    string runs to the end of the text, as it does for the JSON parser.
    """
    stripped = _STRING.sub("", text)
    brackets = _NOT_BRACKET.sub("", stripped)
    if not brackets:
        return 0
    return max(0, max(accumulate(map(_DELTA.__getitem__, brackets.encode("ascii")))))


def _parse_int_hook(max_digits: int) -> Callable[[str], int]:
    def parse_int(token: str) -> int:
        digits = len(token) - (token[0] == "-")
        if digits > max_digits:
            raise _Refused(
                f"an integer has {digits} digits (limit {max_digits}): {_short(token, 24)}",
                "Store big numbers as strings, or raise max_int_digits if the value is expected.",
            )
        return int(token)

    return parse_int


def _parse_float(token: str) -> float:
    if len(token) > MAX_NUMBER_CHARS:
        raise _Refused(
            f"a number literal is {len(token)} characters long (limit {MAX_NUMBER_CHARS}): "
            f"{_short(token, 24)}",
            "Write the number with fewer digits.",
        )
    value = float(token)
    if not math.isfinite(value):
        raise _Refused(
            f"the number {_short(token, 24)} overflows to infinity",
            "Use a finite number within the range of a 64-bit float.",
        )
    return value


def _parse_constant(token: str) -> NoReturn:
    raise _Refused(
        f"{token} is not valid JSON (JavaScript's NaN / Infinity are not numbers in JSON)",
        "Use null or a finite number.",
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(
                    f"the key {_short(key, 40)} appears twice in one object",
                    "Keep one copy of each key.",
                )
            seen.add(key)
    return result


def loads_bounded(
    text: str | bytes,
    *,
    max_bytes: int,
    max_depth: int = 64,
    max_int_digits: int = 40,
    what: str,
    allow_duplicate_keys: bool = False,
    error: type[ModelFactoryError] = ModelFactoryError,
) -> Any:
    """Parse JSON ``text`` (``str``, or UTF-8 ``bytes``) within bounds; refuse with ``error``.

    ``what`` names the source in messages (for example ``"metadata key
    'modelfactory.spec' of 'model.safetensors'"``); it is shown clipped to 120
    printable characters. ``max_bytes`` bounds the UTF-8 size, ``max_depth``
    the nesting of arrays and objects, ``max_int_digits`` the digits of an
    integer. Returns what :func:`json.loads` returns.
    """
    try:
        if isinstance(text, (bytes, bytearray, memoryview)):
            size = len(text)
            if size > max_bytes:
                _too_long(size, max_bytes)
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as err:
                raise _Refused(
                    f"the text is not UTF-8 (at byte {err.start})",
                    "Save the JSON as UTF-8.",
                ) from None
        elif isinstance(text, str):
            if len(text) > max_bytes:  # every character is at least one byte
                _too_long(len(text), max_bytes, chars=True)
            size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
            if size > max_bytes:
                _too_long(size, max_bytes)
        else:
            raise TypeError(f"loads_bounded: expected str or bytes, got {type(text).__name__}")
        if text.startswith("\ufeff"):
            raise _Refused(
                "the text starts with a byte-order mark", "Save it as UTF-8 without a BOM."
            )
        depth = json_depth(text)
        if depth > max_depth:
            raise _Refused(
                f"the JSON nests arrays/objects {depth} deep (limit {max_depth})",
                "Flatten the data; real specs and metadata are a few levels deep.",
            )
        try:
            return json.loads(
                text,
                parse_int=_parse_int_hook(max_int_digits),
                parse_float=_parse_float,
                parse_constant=_parse_constant,
                object_pairs_hook=None if allow_duplicate_keys else _no_duplicates,
            )
        except json.JSONDecodeError as err:
            raise _Refused(
                f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}",
                "Fix the JSON text.",
            ) from None
        except RecursionError:  # pragma: no cover - the depth pre-scan bounds recursion
            raise _Refused("the JSON nests too deeply to parse", "Flatten the data.") from None
    except _Refused as err:
        raise error(f"{_clip(what)}: {err.finding}. {err.remedy}") from None


def _too_long(size: int, limit: int, *, chars: bool = False) -> NoReturn:
    unit = "characters" if chars else "bytes"
    raise _Refused(
        f"the JSON text is {size} {unit} (limit {limit} bytes)",
        "Shorten it, or raise max_bytes if this size is expected.",
    )
