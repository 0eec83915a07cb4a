"""``modelfactory inspect FILE``: a checkpoint's architecture, parameter table and metadata.

Reads the safetensors header only: no tensor data is read, so inspecting a
file of any size, or from anyone, is cheap and safe. The counts come from the
stored architecture, validated like any model file and built on the ``meta``
device (no memory, no init), so they are the counts ``validate`` and ``run``
print.
Every string from the file is printed with control characters escaped, so a
hostile name or metadata value cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from ..errors import CheckpointError, ModelFactoryError
from ..io.checkpoint import MAX_METADATA_BYTES, MAX_METADATA_DEPTH, META_PREFIX
from ..io.safetensors_file import SafetensorsHeader, read_header
from ..safety.json_bounded import loads_bounded
from ..safety.terminal import printable
from ..tables import format_counts, format_table, parameter_counts

__all__ = ["setup", "run", "format_inspection"]

# Metadata keys shown in their own sections rather than in the metadata list.
_SECTIONED = {META_PREFIX + "spec", META_PREFIX + "ties"}


def _printable(text: str) -> str:
    """``text`` with every control, bidi and non-printable character escaped."""
    return printable(text)


def _counts(header: SafetensorsHeader) -> str:
    """The counts of the stored architecture (built on the meta device: nothing allocated)."""
    raw = header.metadata.get(META_PREFIX + "spec")
    if raw is None:
        return "unknown (no architecture stored; stored elements are parameters and buffers)"
    try:
        from ..io.checkpoint import spec_from_data
        from ..pipeline import build

        data = loads_bounded(
            raw,
            max_bytes=MAX_METADATA_BYTES,
            max_depth=MAX_METADATA_DEPTH,
            what="the spec",
            allow_duplicate_keys=True,
        )
        model = build(spec_from_data(data, header.path), device="meta", check=False)
    except ModelFactoryError as err:
        first = str(err).splitlines()[0]
        return f"unknown (the stored architecture does not build here: {_printable(first)})"
    return format_counts(parameter_counts(model))


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
            f"counts: {_counts(header)}",
            "",
            "metadata:",
            *(meta_lines or ["  (none)"]),
        ]
    )


def run(args: argparse.Namespace) -> int:
    """Print the file's architecture, tensors and metadata; exit 1 on an unreadable file."""
    print(format_inspection(read_header(args.file)))
    return 0
