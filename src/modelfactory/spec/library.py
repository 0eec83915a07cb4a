"""Block libraries: reusable blocks in their own files, used by name from a trusted directory.

A library block is one node (what would be written under ``blocks: NAME:``) in
its own file, ``<block dir>/NAME.yaml``. A model file uses it with a Hydra
defaults list::

    defaults:
      - /block@blocks.block1: block1      # conf/block/block1.yaml -> blocks.block1
      - _self_

Under Hydra (``python run.py model=rgnet``) that is ordinary config
composition. Read standalone (``modelfactory.build(path)``, ``modelfactory
validate``) the same file works: this module understands exactly that entry
form (and ``_self_``) and refuses anything else a defaults list can say
(``override hydra/...``, other groups, ``_global_`` packages).

Safety: the file gives only a *name*. Names must be identifiers and are looked
up in a listing of the block directory, so no path from the file is ever
opened (``../../etc/passwd`` is not a name); a symlink leading outside the
directory is refused. The directory itself comes from the caller
(``block_dir=``, ``--block-dir``) or, by default, is the ``block/`` directory
beside the ``model/`` directory holding the file (the layout of ``conf/``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SpecError, did_you_mean
from .yaml_reader import SourceMap, load_yaml_file, problem_at

__all__ = ["default_block_dir", "library_blocks", "apply_library", "LIBRARY_GROUP"]

LIBRARY_GROUP = "block"  # the Hydra config group of library blocks: conf/block/
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENTRY_KEY = re.compile(rf"^/{LIBRARY_GROUP}@blocks\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
_ENTRY_FORM = (
    f"'- /{LIBRARY_GROUP}@blocks.NAME: FILE' (FILE a block in the block directory), "
    "'- NAME' (another model of the same model/ directory) or '_self_'"
)


def default_block_dir(model_file: str | Path) -> Path | None:
    """``<dir>/block`` for a file at ``<dir>/model/<name>.yaml`` (the ``conf/`` layout), else ``None``."""
    parent = Path(model_file).parent
    if parent.name != "model":
        return None
    return parent.parent / LIBRARY_GROUP


def library_blocks(block_dir: str | Path) -> dict[str, Path]:
    """The library blocks in ``block_dir``: name -> file, for every ``NAME.yaml`` named like an identifier."""
    directory = Path(block_dir)
    try:
        return {
            p.stem: p
            for p in sorted(directory.glob("*.yaml"))
            if _IDENTIFIER.match(p.stem) and p.is_file()
        }
    except OSError as err:
        raise SpecError(
            f"cannot list the block directory '{directory}': {err.strerror or err}"
        ) from err


def _entry(
    item: Any, index: int, source: SourceMap | None, root: str
) -> tuple[str, str] | None | SpecError:
    """``(local name, library name)`` for one defaults entry, ``None`` for ``_self_``."""
    where = ("defaults", index)
    if item == "_self_":
        return None
    if isinstance(item, Mapping) and len(item) == 1:
        ((key, value),) = item.items()
        match = _ENTRY_KEY.match(str(key))
        if match and isinstance(value, str) and _IDENTIFIER.match(value):
            return match["name"], value
        if match:
            return SpecError(
                "invalid block library entry",
                [
                    problem_at(
                        source,
                        where,
                        f"the library block must be a name (letters, digits, _), found "
                        f"{value!r}; paths are never accepted",
                        root,
                    )
                ],
            )
    return SpecError(
        "invalid defaults list",
        [
            problem_at(
                source,
                where,
                f"a model file's defaults list may only name library blocks and models: {_ENTRY_FORM}; "
                f"found {item!r}",
                root,
            )
        ],
    )


def apply_library(
    data: Mapping[str, Any],
    source: SourceMap | None,
    *,
    block_dir: str | Path | None,
    root: str = "",
) -> dict[str, Any]:
    """Replace a model's ``defaults`` list by the library blocks it names, added under ``blocks``.

    Every problem (bad entry, unknown block with did-you-mean, a name also
    defined in the file) is collected and raised as one :class:`SpecError`.
    """
    data = dict(data)
    entries = data.pop("defaults", None)
    if entries is None:
        return data
    if not isinstance(entries, list):
        raise SpecError(
            "invalid defaults list",
            [problem_at(source, ("defaults",), f"must be a list of {_ENTRY_FORM}", root)],
        )
    problems = []
    wanted: list[tuple[int, str, str]] = []
    for index, item in enumerate(entries):
        parsed = _entry(item, index, source, root)
        if isinstance(parsed, SpecError):
            problems.extend(parsed.problems)
        elif parsed is not None:
            wanted.append((index, *parsed))
    if wanted and block_dir is None:
        problems.append(
            problem_at(
                source,
                ("defaults",),
                "this file uses library blocks but no block directory is set: pass "
                "block_dir=... (or --block-dir DIR), or keep the file in a model/ directory "
                "beside a block/ directory",
                root,
            )
        )
        wanted = []
    available = library_blocks(block_dir) if wanted else {}
    base = Path(block_dir).resolve() if wanted else None
    blocks = data.get("blocks", {})
    if not isinstance(blocks, Mapping):
        problems.append(problem_at(source, ("blocks",), "must be a mapping of block names", root))
        blocks = {}
    merged = dict(blocks)
    for index, local, name in wanted:
        path = available.get(name)
        if path is None:
            problems.append(
                problem_at(
                    source,
                    ("defaults", index),
                    f"unknown library block '{name}'.{did_you_mean(name, available)} "
                    f"Blocks in {block_dir}: {', '.join(available) or 'none'}.",
                    root,
                )
            )
            continue
        if not path.resolve().is_relative_to(base):
            problems.append(
                problem_at(
                    source,
                    ("defaults", index),
                    f"library block '{name}' leads outside the block directory {block_dir} "
                    "(a symlink?); refused",
                    root,
                )
            )
            continue
        if local in merged:
            problems.append(
                problem_at(
                    source,
                    ("blocks", local) if local in blocks else ("defaults", index),
                    f"block '{local}' is defined twice (in the file and from the library, or "
                    "listed twice in defaults); rename one",
                    root,
                )
            )
            continue
        loaded = load_yaml_file(path)  # the same safe loader and refusals as the model file
        merged[local] = loaded.data
        if source is not None:
            source.mount(("blocks", local), loaded.source)
    if problems:
        origin = f" in {source.filename}" if source else ""
        raise SpecError(f"invalid block library use{origin}", problems)
    if merged:
        data["blocks"] = merged
    return data
