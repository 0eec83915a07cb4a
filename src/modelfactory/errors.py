"""Every user-facing error class, the located problem they carry, and did-you-mean.

Every problem says what failed, where (dotted config path, and ``file:line:col``
when the text came from a file), what was found and what to do. Problems are
collected and raised together as one :class:`ModelFactoryError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ConfigProblem", "ModelFactoryError", "did_you_mean", "format_path", "listing"]

PathPart = str | int


def format_path(parts: Sequence[PathPart], root: str = "") -> str:
    """Render ``('network', 2, 'in_features')`` as ``network[2].in_features``."""
    text = root
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "<root>"


# Bounds on error work and text: did-you-mean compares at most this many
# candidates of at most this length (difflib is quadratic in the length), a
# listing of names shows the first few, and one problem's message is capped.
MAX_SUGGESTION_POOL = 500
MAX_SUGGESTION_LENGTH = 100
MAX_LISTED = 20
MAX_MESSAGE = 2000
MAX_RENDERED_PROBLEMS = 200
MAX_RENDERED_TEXT = 50_000  # characters of one rendered error, problems included
MAX_SUGGESTIONS = 50  # did-you-mean is worked out for this many problems of one kind


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or ``""`` (bounded work)."""
    if len(name) > MAX_SUGGESTION_LENGTH:
        return ""
    pool = []
    for candidate in candidates:
        if isinstance(candidate, str) and len(candidate) <= MAX_SUGGESTION_LENGTH:
            pool.append(candidate)
            if len(pool) >= MAX_SUGGESTION_POOL:
                break
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in pool}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f" Did you mean '{close[0]}'?" if close else ""


def listing(names: Sequence[str], limit: int = MAX_LISTED) -> str:
    """``a, b, c`` for at most ``limit`` names, then how many more (``none`` if empty)."""
    if not names:
        return "none"
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")


def _capped(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a config, with where it is."""

    path: str
    message: str
    source: str | None = None  # "file:line:col" when known

    def __str__(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return _capped(f"{_capped(self.path, 200)}: {_capped(self.message)}{where}")


class ModelFactoryError(Exception):
    """Base class of every error modelfactory raises for bad input.

    ``problems`` lists every problem found, so a caller (or a test) can inspect
    them one by one; ``str(error)`` renders them all.
    """

    def __init__(self, message: str, problems: Sequence[ConfigProblem] = ()) -> None:
        self.headline = message
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.problems:
            return _capped(self.headline)
        lines = [_capped(self.headline)]
        size = len(lines[0])
        for problem in self.problems[:MAX_RENDERED_PROBLEMS]:
            line = f"  - {problem}"
            if size + len(line) > MAX_RENDERED_TEXT:
                break
            lines.append(line)
            size += len(line) + 1
        hidden = len(self.problems) - (len(lines) - 1)
        if hidden:
            lines.append(f"  ... and {hidden} more problem(s)")
        return "\n".join(lines)


class SpecError(ModelFactoryError):
    """The architecture text or data is invalid."""


class ShapeError(ModelFactoryError):
    """The dry run found a shape mismatch."""


class RegistryError(ModelFactoryError):
    """A registration was invalid (for example a duplicate name)."""


class CheckpointError(ModelFactoryError):
    """A checkpoint could not be written or read."""


class DeviceError(ModelFactoryError):
    """A requested device is not available."""


class InitError(ModelFactoryError):
    """An initialisation rule is invalid or matched nothing."""


class LimitError(ModelFactoryError):
    """A model (or its data) is over a configured size limit."""


class PluginError(ModelFactoryError):
    """A plugin module named by the user could not be imported."""
