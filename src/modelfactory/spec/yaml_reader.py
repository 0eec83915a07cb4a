"""Reading model files as plain data, safely, with positions for error messages.

Only PyYAML's safe loader (the C one when available) is used: no Python tags,
no object construction. Aliases are allowed but the *expanded* size and depth
are bounded, so an alias bomb is refused before anything walks it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigProblem, SpecError, format_path
from ..safety.read import read_bounded

__all__ = [
    "SourceMap",
    "LoadedYaml",
    "load_yaml_text",
    "load_yaml_file",
    "problem_at",
    "MAX_NODES",
    "MAX_DEPTH",
    "MAX_BYTES",
]

try:  # the C loader is ~7x faster than the pure-Python one (27 ms vs 182 ms measured)
    _SafeLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _SafeLoader = yaml.SafeLoader

MAX_NODES = 1_000_000  # expanded YAML nodes (scalars, lists, mappings) in one file
# Nesting of lists and mappings. Real models nest < 30 deep; pydantic's own
# recursion guard trips near 130 nested repeats, and Python's stack sooner for
# composites, so the limit sits well below both (plain data is held to it too,
# see limits.check_data_shape).
MAX_DEPTH = 100
MAX_BYTES = 16 * 1024 * 1024
MAX_REPORTED = 20  # refused constructs listed per file; the rest are counted

# Tags the safe loader constructs itself (plain data), plus the merge key '<<'.
_ALLOWED_TAGS = frozenset(t for t in yaml.SafeLoader.yaml_constructors if t) | {
    "tag:yaml.org,2002:merge"
}
_INTERPOLATION = "${"
# Hydra reads '# @package <name>' from a config file's leading comment lines.
_PACKAGE_HEADER = re.compile(r"^\s*#\s*@package\b")


@dataclass
class SourceMap:
    """Maps config paths (tuples of keys and indexes) to ``file:line:col``."""

    filename: str
    positions: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)
    mounts: dict[tuple[Any, ...], SourceMap] = field(default_factory=dict)

    def mount(self, prefix: tuple[Any, ...], other: SourceMap) -> None:
        """Locate paths under ``prefix`` in ``other`` (a library block's own file)."""
        self.mounts[tuple(prefix)] = other

    def locate(self, path: tuple[Any, ...]) -> str | None:
        """``file:line:col`` of the longest known prefix of ``path``."""
        for prefix, other in self.mounts.items():
            if tuple(path[: len(prefix)]) == prefix:
                return other.locate(tuple(path[len(prefix) :]))
        for end in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:end]))
            if pos is not None:
                return f"{self.filename}:{pos[0]}:{pos[1]}"
        return None


@dataclass
class LoadedYaml:
    """Plain data and where each piece of it came from."""

    data: Any
    source: SourceMap


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org") else tag


class _Walk:
    """One pass over the composed node tree: positions, limits and refused constructs."""

    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.budget = MAX_NODES
        self.refused: list[ConfigProblem] = []
        self.seen: set[int] = set()  # refusals are reported once per node, not once per alias

    def refuse(self, node: yaml.Node, path: tuple[Any, ...], message: str) -> None:
        if id(node) in self.seen:
            return
        self.seen.add(id(node))
        mark = node.start_mark
        where = f"{self.source.filename}:{mark.line + 1}:{mark.column + 1}"
        self.refused.append(ConfigProblem(format_path(path), message, where))

    def walk(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise _TooBig(
                f"more than {MAX_NODES:,} nodes once aliases are expanded (an alias bomb?)"
            )
        if len(path) > MAX_DEPTH:
            raise _TooBig(f"nested deeper than {MAX_DEPTH} levels")
        # Keys point at the key's line (what an editor highlights), values at their own.
        self.source.positions.setdefault(
            path, (node.start_mark.line + 1, node.start_mark.column + 1)
        )
        if node.tag not in _ALLOWED_TAGS:
            self.refuse(
                node,
                path,
                f"YAML tag '{_tag_name(node.tag)}' is not allowed: a model file is plain data "
                "(mappings, lists, strings, numbers); remove the tag",
            )
        if isinstance(node, yaml.ScalarNode):
            self._scalar(node, path)
        elif isinstance(node, yaml.MappingNode):
            keys: set[Any] = set()
            for key_node, value_node in node.value:
                key = (
                    key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
                )
                child = path + (key,)
                if isinstance(key_node, yaml.ScalarNode):
                    self._scalar(key_node, child)
                if key == "<<" or key_node.tag == "tag:yaml.org,2002:merge":
                    # a merge key copies another mapping's keys in, silently, around the
                    # duplicate-key refusal below
                    self.refuse(
                        key_node,
                        child,
                        "a YAML merge key ('<<') is not allowed: it copies keys in silently and "
                        "hides duplicates; write the keys out (or use a block)",
                    )
                elif key in keys:
                    self.refuse(
                        key_node,
                        child,
                        f"key '{key}' is given twice in this mapping (YAML would silently keep "
                        "the last one); remove one",
                    )
                keys.add(key)
                self.source.positions[child] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                self.walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, path + (index,))

    def _scalar(self, node: yaml.ScalarNode, path: tuple[Any, ...]) -> None:
        if _INTERPOLATION in node.value:
            self.refuse(
                node,
                path,
                f"interpolation {_short(node.value)} is not allowed: a model file is read as "
                "plain data and '${...}' (references, resolvers such as oc.env) is never "
                "resolved; write the value itself",
            )


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _package_header(text: str, filename: str) -> None:
    """Refuse a Hydra ``# @package`` header (it would move the file's keys elsewhere)."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return  # Hydra only reads the header before the first content line
        if _PACKAGE_HEADER.match(line):
            raise SpecError(
                f"{filename}:{number}:1: a '# @package' header is not allowed: a model file is "
                "read as plain data, outside Hydra, so the header could not take effect; "
                "remove the line"
            )


class _TooBig(Exception):
    pass


def load_yaml_text(text: str | bytes, filename: str = "<string>") -> LoadedYaml:
    """Parse YAML text safely; errors become :class:`SpecError` with ``file:line:col``."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise SpecError(
                f"{filename}: file is {len(text):,} bytes, over the {MAX_BYTES:,}-byte limit"
            )
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SpecError(
                f"{filename}: not UTF-8 text (byte {err.start}: {text[err.start : err.start + 1]!r}). "
                "Save the file as UTF-8."
            ) from None
    _package_header(text, filename)
    source = SourceMap(filename)
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(
                f"{filename}: the file is empty; a model file needs at least 'input' and 'network'"
            )
        walk = _Walk(source)
        walk.walk(node, ())
        if walk.refused:
            count = len(walk.refused)
            more = f" (the first {MAX_REPORTED} are listed)" if count > MAX_REPORTED else ""
            raise SpecError(
                f"refused {filename}: {count} construct{'s' if count != 1 else ''} a model file "
                f"cannot contain{more}",
                walk.refused[:MAX_REPORTED],
            )
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError:
            raise
        except Exception as err:  # noqa: BLE001 - the safe constructors' own ValueError etc.
            # e.g. 'date: 2024-99-99' (a timestamp) or '!!int abc': bad scalar text.
            raise SpecError(
                f"{filename}: invalid YAML value: {err} ({type(err).__name__}); quote the "
                "value to make it a string, or fix it"
            ) from err
    except _TooBig as err:
        raise SpecError(f"{filename}: refused: {err}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise SpecError(f"{where}: invalid YAML: {err.problem or err}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{filename}: invalid YAML: {err}") from None
    finally:
        loader.dispose()
    return LoadedYaml(data, source)


def load_yaml_file(path: str | Path) -> LoadedYaml:
    """Read and parse a YAML file as plain data (never through Hydra or OmegaConf)."""
    path = Path(path)
    # never more than the limit plus one byte, and never a FIFO or a device
    raw = read_bounded(path, limit=MAX_BYTES, what="model file", error=SpecError)
    return load_yaml_text(raw, str(path))


def problem_at(
    source: SourceMap | None, path: tuple[Any, ...], message: str, root: str = ""
) -> ConfigProblem:
    """A :class:`ConfigProblem` for ``path``, located through ``source`` when there is one."""
    return ConfigProblem(format_path(path, root), message, source.locate(path) if source else None)
