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
from ..safety.terminal import printable
from ..zoo import is_name, model_path
from .compose import compose_model_file
from .library import apply_library
from .model import ModelSpec
from .nodes import TAG_PREFIX
from .yaml_reader import MAX_DEPTH, MAX_NODES, SourceMap

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

    Its ``defaults`` list is composed as Hydra would (:mod:`modelfactory.spec.compose`):
    other models of its ``model/`` directory, and library blocks from
    ``block_dir``, by default the ``block/`` directory beside that
    ``model/`` directory (see :mod:`modelfactory.spec.library`).
    """
    refuse_non_model_file(path)
    data, source = compose_model_file(path, block_dir=block_dir, root=root)
    return validate_data(data, source=source, root=root), source


_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def refuse_non_model_file(path: str | Path) -> None:
    """Refuse a checkpoint given where a model file (YAML) is expected, saying what to do."""
    path = Path(path)
    looks_like = path.suffix.lower() in _CHECKPOINT_SUFFIXES
    if not looks_like and path.is_file():
        try:
            with open(path, "rb") as handle:
                head = handle.read(16)
        except OSError:
            return  # the reader reports it
        # safetensors: 8-byte length then '{'; zip (.pt) and pickle magic numbers
        looks_like = head[8:9] == b"{" or head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"
    if looks_like:
        raise SpecError(
            f"'{printable(str(path), 200)}' is a checkpoint, not a model file: a model file is "
            "YAML text describing the architecture. Load a checkpoint with "
            "modelfactory.load(path), look inside it with `modelfactory inspect FILE`, or "
            "pass the model's YAML file instead."
        )


def to_spec(spec: Any, *, root: str = "", block_dir: str | Path | None = None) -> ModelSpec:
    """Accept a YAML path, a zoo model's name, a mapping (a Hydra ``DictConfig`` too) or a spec.

    A string without a path separator or suffix that is not an existing file
    names a zoo model (``"resnet18"``). A path is read by :func:`load_spec_file`; a mapping with a ``defaults`` list
    takes its library blocks from ``block_dir``.
    """
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, str) and is_name(spec) and not Path(spec).is_file():
        spec = model_path(spec)  # a zoo model by name: "resnet18"
    if isinstance(spec, (str, Path)):
        return load_spec_file(spec, block_dir=block_dir, root=root)[0]
    data = plain_data(spec)
    if isinstance(data, Mapping) and "defaults" in data:
        data = apply_library(data, None, block_dir=block_dir, root=root)
    return validate_data(data, root=root)
