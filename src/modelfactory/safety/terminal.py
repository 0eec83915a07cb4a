"""Make untrusted text safe to show on a terminal or to put in a spreadsheet cell.

A file name, a YAML key or a tensor name can carry escape sequences that clear
the screen, move the cursor, hide text or retitle the window
(``"\\x1b[2J\\x1b[Hok: this file is valid\\x1b[8m"``), or bidirectional
overrides that display text in another order than it is stored (the
"Trojan Source" trick). :func:`printable` escapes every such character:

* C0 controls, DEL and C1 controls (``ESC``, ``CSI`` ``\\x9b``, NUL, ...),
* the bidi embeddings, overrides, isolates and marks (U+202A–U+202E,
  U+2066–U+2069, U+200E, U+200F, U+061C),
* and every other character :meth:`str.isprintable` rejects: format
  characters (zero-width space, BOM, tag characters), line and paragraph
  separators, non-ASCII spaces, surrogates, private-use and unassigned code
  points.

Escapes are ``\\xNN`` (up to U+00FF), ``\\uNNNN`` or ``\\UNNNNNNNN``, and a
backslash becomes ``\\\\``, so the output is unambiguous: it decodes back to the
input with Python's ``unicode_escape`` codec, and a name that *contains* the
text ``\\x1b`` cannot pass for one that contains an escape character.

:func:`csv_cell` also neutralises spreadsheet formulas (CSV injection, per
OWASP): a cell that would start with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return (or a full-width ``=``, ``+``, ``-``, ``@``) gets a leading
single quote, so spreadsheets show it as text instead of evaluating it.
"""

from __future__ import annotations

__all__ = ["BIDI_CONTROLS", "ELLIPSIS", "csv_cell", "printable"]

ELLIPSIS = "\u2026"

BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e"  # LRE RLE PDF LRO RLO
    "\u2066\u2067\u2068\u2069"  # LRI RLI FSI PDI
    "\u200e\u200f\u061c"  # LRM RLM ALM
)

# Formula triggers (OWASP CSV injection), with their full-width forms.
_FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def _escape(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _is_safe(char: str) -> bool:
    return char.isprintable() and char != "\\" and char not in BIDI_CONTROLS


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with every control, bidi and non-printable character escaped.

    With ``limit``, the result is at most ``limit`` characters: when the
    escaped text is longer it is cut (never inside an escape) and ends with
    ``"…"``. Only about ``limit`` input characters are examined then, so a
    huge string costs no more than a short one.
    """
    if limit is not None and limit < 1:
        raise ValueError("printable: limit must be at least 1")
    if limit is not None:
        text = text[: limit + 1]  # more can only be cut off
    if text.isprintable() and "\\" not in text:  # fast path (isprintable covers bidi)
        return text if limit is None or len(text) <= limit else text[: limit - 1] + ELLIPSIS
    pieces: list[str] = []
    size = 0
    for char in text:
        piece = char if _is_safe(char) else _escape(char)
        if limit is not None and size + len(piece) > limit:
            while pieces and size > limit - 1:  # make room for the ellipsis
                size -= len(pieces.pop())
            return "".join(pieces) + ELLIPSIS
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)


def csv_cell(text: str, limit: int | None = None) -> str:
    """:func:`printable` text that a spreadsheet will not evaluate as a formula.

    A value starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return
    (or their full-width forms) is prefixed with ``'``; with ``limit`` the
    result, quote included, is at most ``limit`` characters.
    Quoting the cell for the CSV format itself (commas, quotes) is the job of
    :mod:`csv`.
    """
    if not text or text[0] not in _FORMULA_START:
        return printable(text, limit)
    if limit is not None and limit < 2:
        raise ValueError("csv_cell: limit must be at least 2")
    return "'" + printable(text, None if limit is None else limit - 1)


def terminal_text(text: str, *, line_limit: int = 2000, max_lines: int = 200) -> str:
    """Multi-line text (an error with its problems) made safe and bounded for a terminal.

    Each line is escaped by :func:`printable` and cut at ``line_limit``
    characters; past ``max_lines`` lines, the rest is counted, not shown.
    """
    lines = text.split("\n", max_lines)
    shown = [printable(line, line_limit) for line in lines[:max_lines]]
    if len(lines) > max_lines:
        rest = lines[max_lines].count("\n") + 1
        shown.append(f"... and {rest} more line(s)")
    return "\n".join(shown)
