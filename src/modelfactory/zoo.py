"""The configs shipped inside the package: the model zoo, init presets and library blocks, by name.

They live in ``modelfactory/conf/`` (package data), so ``modelfactory.build("resnet18")``,
``init="xavier"`` and ``modelfactory run`` work from any directory after ``pip install``.
In a clone of the repository, ``conf/`` at the top is a link to the same directory.

A name is looked up in a listing of the directory, never joined into a path, so
``../x`` is not a name.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ModelFactoryError, did_you_mean
from .safety.terminal import printable

__all__ = [
    "CONF_DIR",
    "ZooError",
    "list_models",
    "list_inits",
    "model_path",
    "init_path",
    "is_name",
    "first_comment",
]

CONF_DIR = Path(__file__).resolve().parent / "conf"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SUFFIXES = (".yaml", ".yml", ".json", ".safetensors", ".pt", ".pth")


class ZooError(ModelFactoryError):
    """A name is neither a file nor a config shipped with modelfactory."""


def _listing(group: str) -> dict[str, Path]:
    directory = CONF_DIR / group
    return {
        p.stem: p for p in sorted(directory.glob("*.yaml")) if _NAME.match(p.stem) and p.is_file()
    }


def list_models() -> list[str]:
    """The names of the zoo models (``conf/model/*.yaml``), sorted."""
    return sorted(_listing("model"))


def list_inits() -> list[str]:
    """The names of the init presets (``conf/init/*.yaml``), sorted."""
    return sorted(_listing("init"))


def is_name(text: str) -> bool:
    """True if ``text`` reads as a config name (``resnet18``), not a path (``a/b.yaml``)."""
    return bool(_NAME.match(text)) and not text.lower().endswith(_SUFFIXES)


def _lookup(group: str, name: str, what: str) -> Path:
    found = _listing(group)
    path = found.get(name)
    if path is None:
        shown = printable(name, 80)
        raise ZooError(
            f"'{shown}' is neither a file nor a {what} shipped with modelfactory."
            f"{did_you_mean(name, found)} Known {what}s: {', '.join(found) or 'none'}. "
            "Pass a path to a YAML file (e.g. ./my_net.yaml), or one of these names."
        )
    return path


def model_path(name: str) -> Path:
    """The file of zoo model ``name``; a :class:`ZooError` with a did-you-mean otherwise."""
    return _lookup("model", name, "zoo model")


def init_path(name: str) -> Path:
    """The file of init preset ``name``; a :class:`ZooError` with a did-you-mean otherwise."""
    return _lookup("init", name, "init preset")


def first_comment(path: Path, limit: int = 240) -> str:
    """The leading comment lines of a config file, joined: its description (or ``""``)."""
    lines: list[str] = []
    try:
        with open(path, encoding="utf-8") as handle:
            for _, line in zip(range(20), handle, strict=False):
                text = line.strip()
                if not text.startswith("#"):
                    break
                if not text.startswith("# @"):
                    lines.append(text.lstrip("#").strip())
    except (OSError, UnicodeDecodeError):
        return ""
    joined = " ".join(lines)
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."
