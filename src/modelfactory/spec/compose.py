"""Hydra-style composition of model files read as plain data: ``defaults: [mlp, _self_]``.

A model file in a config group directory (``conf/model/``) may start from
another model of the same group, exactly as Hydra composes it for
``run.py model=...``::

    # conf/model/mlp_b64.yaml
    defaults:
      - mlp          # conf/model/mlp.yaml first
      - _self_       # then this file's own keys
    name: mlp_b64
    input: {shape: [64, 20]}

Read standalone (``modelfactory.build(path)``, ``modelfactory validate``)
the file is composed the same way: the named files are merged in the order
of the list, ``_self_`` (implicitly last) stands for the file's own keys, and
merging follows OmegaConf: mappings merge key by key, anything else (lists,
scalars) replaces, and a mapping against a list is an error. Library blocks
(``- /block@blocks.NAME: FILE``) are handled by :mod:`modelfactory.spec.library`.

Safety is that of library blocks: an entry is a *name*, looked up in a listing
of the file's own directory, and only when that directory is a ``model/``
group directory (the ``conf/`` layout) or the caller names it (``model_dir=``).
A file downloaded elsewhere cannot make the reader open its neighbours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigProblem, SpecError, did_you_mean
from .library import apply_library, default_block_dir
from .yaml_reader import SourceMap, load_yaml_file, problem_at

__all__ = ["compose_model_file", "ComposedSource", "merge_configs", "MODEL_GROUP", "MAX_CHAIN"]

MODEL_GROUP = "model"
MAX_CHAIN = 16  # files composed on top of each other; real configs use one or two
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class ComposedSource(SourceMap):
    """Positions in a composed config: each path is located in the file that set it last.

    ``layers`` are ``(source, data)`` in merge order (later wins). A mapping
    merges key by key, so a key is found in the last layer that has it; a
    list or scalar replaces, so everything under it belongs to that layer.
    """

    layers: list[tuple[SourceMap, Any]] = field(default_factory=list)

    def locate(self, path: tuple[Any, ...]) -> str | None:
        """``file:line:col`` of ``path`` in the file whose value is the one in force."""
        live = list(range(len(self.layers)))
        values = [data for _, data in self.layers]
        owner = live[-1] if live else None
        for key in path:
            holding = [i for i in live if isinstance(values[i], Mapping) and key in values[i]]
            if not holding:
                break
            top = holding[-1]
            owner = top
            if not isinstance(values[top][key], Mapping):
                return self.layers[top][0].locate(tuple(path))  # replaced as a whole
            replaced = [i for i in holding if not isinstance(values[i][key], Mapping)]
            cut = replaced[-1] if replaced else -1  # earlier mappings were replaced there
            live = [i for i in holding if i > cut]
            values = [v[key] if i in live else v for i, v in enumerate(values)]
        if owner is None:
            return None
        return self.layers[owner][0].locate(tuple(path))


def merge_configs(base: Any, over: Any, path: tuple[Any, ...] = ()) -> Any:
    """OmegaConf's merge on plain data: mappings merge, everything else replaces.

    A mapping against a list (either way) is an error, as in OmegaConf.
    """
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = merge_configs(base[key], value, path + (key,)) if key in base else value
        return merged
    if (isinstance(base, Mapping) and isinstance(over, list)) or (
        isinstance(base, list) and isinstance(over, Mapping)
    ):
        raise _Conflict(path, base, over)
    return over


class _Conflict(Exception):
    def __init__(self, path: tuple[Any, ...], base: Any, over: Any) -> None:
        super().__init__(path)
        self.path = path
        self.kinds = (type(base).__name__, type(over).__name__)


def _group_dir(path: Path, model_dir: str | Path | None) -> Path | None:
    if model_dir is not None:
        return Path(model_dir)
    return path.parent if path.parent.name == MODEL_GROUP else None


def _split_defaults(entries: list[Any]) -> tuple[list[tuple[int, str]], list[Any], int | None]:
    """(model entries with their index, entries left for the library, position of ``_self_``)."""
    models: list[tuple[int, str]] = []
    rest: list[Any] = []
    self_at: int | None = None
    for index, item in enumerate(entries):
        if item == "_self_":
            self_at = index
            rest.append(item)
        elif isinstance(item, str) and _IDENTIFIER.match(item):
            models.append((index, item))
        else:  # library entries, and anything else for the library to refuse
            rest.append(item)
    return models, rest, self_at


def compose_model_file(
    path: str | Path,
    *,
    block_dir: str | Path | None = None,
    model_dir: str | Path | None = None,
    root: str = "",
    _chain: tuple[Path, ...] = (),
) -> tuple[Any, SourceMap]:
    """Read ``path`` and compose its defaults list; return the plain data and its positions.

    ``block_dir`` is the library block directory (default: ``block/`` beside
    the file's ``model/`` directory); ``model_dir`` the directory other models
    are looked up in (default: the file's own directory when it is a
    ``model/`` directory). Every problem is raised as one :class:`SpecError`.
    """
    path = Path(path)
    loaded = load_yaml_file(path)
    data, source = loaded.data, loaded.source
    if not isinstance(data, Mapping) or "defaults" not in data:
        return data, source
    if block_dir is None:
        block_dir = default_block_dir(path)
    entries = data["defaults"]
    if not isinstance(entries, list):  # the library reports the form it expects
        return apply_library(data, source, block_dir=block_dir, root=root), source
    models, rest, self_at = _split_defaults(entries)
    own = apply_library({**data, "defaults": rest}, source, block_dir=block_dir, root=root)
    if not models:
        return own, source

    group = _group_dir(path, model_dir)
    chain = _chain + (path.resolve(),)
    layers: list[tuple[int, tuple[Any, SourceMap]]] = []
    problems: list[ConfigProblem] = []
    if models and group is None:
        problems.append(
            problem_at(
                source,
                ("defaults", models[0][0]),
                f"'{models[0][1]}' names another model, but this file is not in a "
                f"'{MODEL_GROUP}/' directory: pass model_dir=... to say where models are "
                "looked up, or keep the file beside the models it composes (conf/model/)",
                root,
            )
        )
        models = []
    available = (
        {p.stem: p for p in sorted(Path(group).glob("*.yaml")) if p.is_file()} if models else {}
    )
    base = Path(group).resolve() if models else None
    for index, name in models:
        found = available.get(name)
        where = ("defaults", index)
        if found is None:
            problems.append(
                problem_at(
                    source,
                    where,
                    f"unknown model '{name}' in the defaults list.{did_you_mean(name, available)} "
                    f"Models in {group}: {', '.join(available) or 'none'}.",
                    root,
                )
            )
            continue
        resolved = found.resolve()
        if not resolved.is_relative_to(base):
            problems.append(
                problem_at(
                    source,
                    where,
                    f"model '{name}' leads outside {group} (a symlink?); refused",
                    root,
                )
            )
            continue
        if resolved in chain or len(chain) >= MAX_CHAIN:
            names = " -> ".join(p.stem for p in chain + (resolved,))
            why = "a cycle" if resolved in chain else f"more than {MAX_CHAIN} files deep"
            problems.append(
                problem_at(source, where, f"the defaults lists compose {why}: {names}", root)
            )
            continue
        layers.append(
            (
                index,
                compose_model_file(
                    found, block_dir=block_dir, model_dir=group, root=root, _chain=chain
                ),
            )
        )
    if problems:
        raise SpecError(f"invalid defaults list in {source.filename}", problems)

    order = [layer for _, layer in sorted(layers, key=lambda item: item[0])]
    position = sum(1 for index, _ in layers if self_at is not None and index < self_at)
    order.insert(position if self_at is not None else len(order), (own, source))
    merged: Any = {}
    for layer_data, layer_source in order:
        try:
            merged = merge_configs(merged, layer_data)
        except _Conflict as err:
            raise SpecError(
                f"invalid defaults list in {source.filename}",
                [
                    problem_at(
                        layer_source,
                        err.path,
                        f"cannot merge a {err.kinds[1]} onto the {err.kinds[0]} of an earlier "
                        "file in the defaults list (Hydra refuses it too); give the same kind "
                        "of value",
                        root,
                    )
                ],
            ) from None
    return merged, ComposedSource(source.filename, layers=[(s, d) for d, s in order])
