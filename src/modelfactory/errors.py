"""Every user-facing error class, the located problem they carry, and did-you-mean.

Every problem says what failed, where (dotted config path, and ``file:line:col``
when the text came from a file), what was found and what to do. Problems are
collected and raised together as one :class:`ModelFactoryError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ConfigProblem", "ModelFactoryError", "did_you_mean", "format_path"]

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


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or ``""``."""
    pool = [c for c in candidates if isinstance(c, str)]
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in pool}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a config, with where it is."""

    path: str
    message: str
    source: str | None = None  # "file:line:col" when known

    def __str__(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"{self.path}: {self.message}{where}"


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
            return self.headline
        lines = [self.headline] + [f"  - {problem}" for problem in self.problems]
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


class InitDoesNotFit(InitError):
    """An init preset declares the models it is written for, and this model is not one of them."""


class LimitError(ModelFactoryError):
    """A model (or its data) is over a configured size limit."""


class PluginError(ModelFactoryError):
    """A plugin module named by the user could not be imported."""
