"""Stage 1: text / mapping / Hydra config -> validated :class:`ModelSpec`, and error rendering.

Every problem is reported at once, each with its dotted config path and, for
files, ``file:line:col``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigProblem, LimitError, SpecError, format_path
from .library import apply_library, default_block_dir
from .model import ModelSpec
from .nodes import TAG_PREFIX
from .yaml_reader import MAX_DEPTH, MAX_NODES, SourceMap, load_yaml_file

__all__ = [
    "to_spec",
    "validate_data",
    "plain_data",
    "load_spec_file",
    "check_data_shape",
    "located_errors",
    "problems_from",
]

_MAX_FOUND = 80


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's internal location parts (union tags, validator names)."""
    return tuple(
        part
        for part in loc
        if not (
            isinstance(part, str) and (part.startswith(TAG_PREFIX) or part.startswith("function-"))
        )
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_FOUND else text[: _MAX_FOUND - 3] + "..."


def located_errors(err: ValidationError) -> list[tuple[tuple[Any, ...], tuple[Any, ...], str]]:
    """``(path, path to locate in the source, message)`` for each of pydantic's errors."""
    out = []
    for d in err.errors():
        loc = _clean_loc(tuple(d["loc"]))
        kind = d["type"]
        if (d.get("ctx") or {}).get("message") is not None:
            message = d["msg"]  # our own message, already complete
            where = loc[:-1] if kind == "missing" else loc
        elif kind == "missing":
            message = f"required key '{loc[-1]}' is missing" if loc else "required key missing"
            where = loc[:-1]
        else:
            message = f"{d['msg'].removeprefix('Value error, ')} (found {_short(d.get('input'))})"
            where = loc
        out.append((loc, where, message))
    return out


def problems_from(err: ValidationError, source: SourceMap | None, root: str) -> list[ConfigProblem]:
    """Translate pydantic's errors into located, readable :class:`ConfigProblem` s."""
    return [
        ConfigProblem(format_path(loc, root), message, source.locate(where) if source else None)
        for loc, where, message in located_errors(err)
    ]


def plain_data(obj: Any) -> Any:
    """Convert an OmegaConf container to plain Python data, resolving interpolations.

    Imported lazily: the library itself does not depend on Hydra or OmegaConf.
    """
    if type(obj).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(obj, resolve=True)
    return obj


def check_data_shape(data: Any, *, root: str = "") -> None:
    """Refuse plain data nested deeper than ``MAX_DEPTH`` or holding more than ``MAX_NODES`` values.

    Walks with an explicit stack (never recursion), so a self-containing list or
    a 10,000-deep mapping is refused instead of overflowing Python's stack.
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    visited = 0
    while stack:
        value, path = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            raise LimitError(
                f"refused: the model data holds more than {MAX_NODES:,} values "
                "(shared sub-structures are counted at every place they appear)"
            )
        if len(path) > MAX_DEPTH:
            raise LimitError(
                f"refused: the model data is nested deeper than {MAX_DEPTH} levels",
                [ConfigProblem(format_path(path[:MAX_DEPTH], root), "nested too deep here")],
            )
        if isinstance(value, dict):
            stack.extend(
                (v, path + (k if isinstance(k, (str, int)) else str(k),)) for k, v in value.items()
            )
        elif isinstance(value, (list, tuple)):
            stack.extend((v, path + (i,)) for i, v in enumerate(value))


def refuse_interpolation(data: Any, *, root: str = "") -> None:
    """Refuse ``${...}`` anywhere in plain data, as the YAML reader does for model files.

    For specs that arrive as data rather than text (a checkpoint's metadata):
    such a string would be resolved if the spec were ever handed to OmegaConf.
    """
    problems = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack and len(problems) < 20:
        value, path = stack.pop()
        if isinstance(value, str) and "${" in value:
            problems.append(
                ConfigProblem(
                    format_path(path, root),
                    f"interpolation {_short(value)} is not allowed: a spec is plain data; "
                    "write the value itself",
                )
            )
        elif isinstance(value, dict):
            stack.extend((v, path + (k,)) for k, v in value.items())
            stack.extend((k, path + (k,)) for k in value if isinstance(k, str))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, path + (i,)) for i, v in enumerate(value))
    if problems:
        raise SpecError("refused: the spec contains interpolations", problems)


def validate_data(data: Any, *, source: SourceMap | None = None, root: str = "") -> ModelSpec:
    """Validate plain data as a model spec, raising one :class:`SpecError` listing every problem."""
    if not isinstance(data, Mapping):
        where = f" ({source.filename})" if source else ""
        raise SpecError(
            f"a model spec must be a mapping with 'input' and 'network', found {type(data).__name__}{where}"
        )
    check_data_shape(data, root=root)  # before pydantic recurses into it
    try:
        spec = ModelSpec.model_validate(dict(data))
    except ValidationError as err:
        problems = problems_from(err, source, root)
        origin = f" in {source.filename}" if source else ""
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        raise SpecError(f"invalid model spec{origin}: {count}", problems) from None
    spec._source, spec._root = source, root  # for located errors in later stages
    return spec


def load_spec_file(
    path: str | Path, *, block_dir: str | Path | None = None, root: str = ""
) -> tuple[ModelSpec, SourceMap]:
    """Read a model file as plain data and validate it; return the spec and its source positions.

    Library blocks named in its ``defaults`` list come from ``block_dir``, by
    default the ``block/`` directory beside the file's ``model/`` directory
    (see :mod:`modelfactory.library`).
    """
    loaded = load_yaml_file(path)
    data = loaded.data
    if isinstance(data, Mapping) and "defaults" in data:
        if block_dir is None:
            block_dir = default_block_dir(path)
        data = apply_library(data, loaded.source, block_dir=block_dir, root=root)
    return validate_data(data, source=loaded.source, root=root), loaded.source


def to_spec(spec: Any, *, root: str = "", block_dir: str | Path | None = None) -> ModelSpec:
    """Accept a YAML path, a mapping (including a Hydra ``DictConfig``) or a validated spec.

    A path is read by :func:`load_spec_file`; a mapping with a ``defaults`` list
    takes its library blocks from ``block_dir``.
    """
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, (str, Path)):
        return load_spec_file(spec, block_dir=block_dir, root=root)[0]
    data = plain_data(spec)
    if isinstance(data, Mapping) and "defaults" in data:
        data = apply_library(data, None, block_dir=block_dir, root=root)
    return validate_data(data, root=root)
