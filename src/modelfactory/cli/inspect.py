"""``modelfactory inspect FILE``: a checkpoint's architecture, parameter table and metadata.

Reads the safetensors header only: no model is built and no tensor data is
read, so inspecting a file of any size, or from anyone, is cheap and safe.
Every string from the file is printed with control characters escaped, so a
hostile name or metadata value cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from ..errors import CheckpointError
from ..io.checkpoint import META_PREFIX
from ..io.safetensors_file import SafetensorsHeader, read_header
from ..tables import format_table

__all__ = ["setup", "run", "format_inspection"]

# Metadata keys shown in their own sections rather than in the metadata list.
_SECTIONED = {META_PREFIX + "spec", META_PREFIX + "ties"}


def _printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\n`` ...)."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def setup(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``inspect``."""
    parser.add_argument("file", help="a .safetensors checkpoint (from modelfactory.save or not)")


def _architecture(header: SafetensorsHeader) -> str:
    raw = header.metadata.get(META_PREFIX + "spec")
    if raw is None:
        return "(none: not a modelfactory model checkpoint)"
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"inspect: '{header.path}': metadata '{META_PREFIX}spec' is not valid JSON ({err}); "
            "the file was edited or corrupted."
        ) from None
    text = yaml.safe_dump(data, sort_keys=False)
    return "\n".join(_printable(line) for line in text.splitlines())


def _ties(header: SafetensorsHeader) -> dict[str, str]:
    """Each tied name that is not stored -> the stored name holding its tensor."""
    try:
        groups = json.loads(header.metadata.get(META_PREFIX + "ties", "[]"))
    except json.JSONDecodeError:
        return {}
    aliases: dict[str, str] = {}
    for group in groups if isinstance(groups, list) else []:
        names = [n for n in group if isinstance(n, str)] if isinstance(group, list) else []
        stored = [n for n in names if n in header.tensors]
        for name in names:
            if stored and name not in header.tensors:
                aliases[name] = stored[0]
    return aliases


def format_inspection(header: SafetensorsHeader) -> str:
    """The text ``inspect`` prints for a checked header."""
    rows = [
        [
            _printable(e.name),
            e.torch_dtype,
            "x".join(map(str, e.shape)) or "scalar",
            f"{e.numel:,}",
            "",
        ]
        for e in header.tensors.values()
    ]
    for alias, stored in sorted(_ties(header).items()):
        entry = header.tensors[stored]
        shape = "x".join(map(str, entry.shape)) or "scalar"
        rows.append(
            [
                _printable(alias),
                entry.torch_dtype,
                shape,
                "0",
                f"tied: stored as {_printable(stored)}",
            ]
        )
    rows.sort(key=lambda r: r[0])
    stored_elements = sum(e.numel for e in header.tensors.values())
    data_bytes = sum(e.nbytes for e in header.tensors.values())
    table = format_table(["tensor", "dtype", "shape", "count", "note"], rows, align_right={3})
    meta_lines = [
        f"  {_printable(key)}: {_printable(value)}"
        for key, value in sorted(header.metadata.items())
        if key not in _SECTIONED
    ]
    return "\n".join(
        [
            f"file: {_printable(str(header.path))} ({header.file_size:,} bytes)",
            "",
            "architecture:",
            _architecture(header),
            "",
            "tensors:",
            table,
            f"{len(header.tensors)} stored tensors, {stored_elements:,} elements, "
            f"{data_bytes:,} bytes",
            "",
            "metadata:",
            *(meta_lines or ["  (none)"]),
        ]
    )


def run(args: argparse.Namespace) -> int:
    """Print the file's architecture, tensors and metadata; exit 1 on an unreadable file."""
    print(format_inspection(read_header(args.file)))
    return 0
