"""Reading model files as plain data, safely, with positions for error messages.

Only PyYAML's safe loader (the C one when available) is used: no Python tags,
no object construction. Aliases are allowed but the *expanded* size and depth
are bounded, so an alias bomb is refused before anything walks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigProblem, SpecError, format_path

__all__ = ["SourceMap", "LoadedYaml", "load_yaml_text", "load_yaml_file", "MAX_NODES", "MAX_DEPTH"]

try:  # the C loader is ~7x faster than the pure-Python one (see PITFALLS.md)
    _SafeLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _SafeLoader = yaml.SafeLoader

MAX_NODES = 1_000_000  # expanded YAML nodes (scalars, lists, mappings) in one file
MAX_DEPTH = 200  # nesting of lists and mappings
MAX_BYTES = 16 * 1024 * 1024


@dataclass
class SourceMap:
    """Maps config paths (tuples of keys and indexes) to ``file:line:col``."""

    filename: str
    positions: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: tuple[Any, ...]) -> str | None:
        """``file:line:col`` of the longest known prefix of ``path``."""
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


def _walk(node: yaml.Node, path: tuple[Any, ...], source: SourceMap, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig(f"more than {MAX_NODES:,} nodes once aliases are expanded (an alias bomb?)")
    if len(path) > MAX_DEPTH:
        raise _TooBig(f"nested deeper than {MAX_DEPTH} levels")
    # Keys point at the key's line (what an editor highlights), values at their own.
    source.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            child = path + (key,)
            source.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, child, source, budget)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), source, budget)


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
    source = SourceMap(filename)
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(
                f"{filename}: the file is empty; a model file needs at least 'input' and 'network'"
            )
        _walk(node, (), source, [MAX_NODES])
        data = loader.construct_document(node)
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
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SpecError(f"cannot read model file '{path}': {err.strerror or err}") from None
    return load_yaml_text(raw, str(path))


def problem_at(
    source: SourceMap | None, path: tuple[Any, ...], message: str, root: str = ""
) -> ConfigProblem:
    """A :class:`ConfigProblem` for ``path``, located through ``source`` when there is one."""
    return ConfigProblem(format_path(path, root), message, source.locate(path) if source else None)
