"""The shape of a job's ``metrics.json``, checked before the summary uses any field of it.

A job directory may hold anything (an edited file, another tool's output, a
hostile one), so every field the summary and the plots read is type-checked
here; a file that does not fit is listed as a failed job, with what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["metrics_problems", "MAX_PROBLEMS"]

MAX_PROBLEMS = 5  # problems named per file; a file wrong everywhere is not listed in full
_MAX_ITEMS = 1_000_000  # records checked per list (a few MB of JSON holds fewer)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (not isinstance(value, float) or math.isfinite(value))
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number_or_none(value: Any) -> bool:
    return value is None or _is_number(value)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


_RECORD_FIELDS: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    "activations": {
        "module": (lambda v: isinstance(v, str), "a string"),
        "call": (_is_int, "an integer"),
        "std": (_number_or_none, "a number or null"),
    },
    "weights": {
        "name": (lambda v: isinstance(v, str), "a string"),
        "std": (_number_or_none, "a number or null"),
    },
}


def _records(metrics: dict[str, Any], key: str, problems: list[str]) -> None:
    records = metrics.get(key)
    if records is None:
        return
    if not isinstance(records, list):
        problems.append(f"'{key}' is {_kind(records)}, expected a list")
        return
    fields = _RECORD_FIELDS[key]
    for index, record in enumerate(records[:_MAX_ITEMS]):
        if not isinstance(record, dict):
            problems.append(f"'{key}[{index}]' is {_kind(record)}, expected an object")
            return
        for name, (ok, expected) in fields.items():
            if name in record and not ok(record[name]):
                problems.append(
                    f"'{key}[{index}].{name}' is {_kind(record[name])}, expected {expected}"
                )
                return


def _mapping_of(
    metrics: dict[str, Any], key: str, ok: Callable[[Any], bool], expected: str, problems: list[str]
) -> None:
    value = metrics.get(key)
    if value is None:
        return
    if not isinstance(value, dict):
        problems.append(f"'{key}' is {_kind(value)}, expected an object")
        return
    for name, item in value.items():
        if not ok(item):
            problems.append(f"'{key}.{name}' is {_kind(item)}, expected {expected}")
            return


def metrics_problems(metrics: dict[str, Any]) -> list[str]:
    """What is wrong with the fields the summary reads (empty when it can use them all)."""
    problems: list[str] = []
    status = metrics.get("status", "ok")
    if status not in ("ok", "failed", "skipped"):
        shown = repr(status)[:40] if isinstance(status, str) else _kind(status)
        problems.append(f"'status' is {shown}, expected 'ok', 'failed' or 'skipped'")
    for key in ("model", "error"):
        if metrics.get(key) is not None and not isinstance(metrics[key], str):
            problems.append(f"'{key}' is {_kind(metrics[key])}, expected a string")
    output = metrics.get("output")
    if output is not None:
        if not isinstance(output, dict):
            problems.append(f"'output' is {_kind(output)}, expected an object")
        else:
            shape = output.get("shape")
            if shape is not None and not (
                isinstance(shape, list) and all(_is_int(d) for d in shape)
            ):
                problems.append(f"'output.shape' is {_kind(shape)}, expected a list of integers")
            for key in ("mean", "std", "min", "max"):
                if not _number_or_none(output.get(key)):
                    problems.append(
                        f"'output.{key}' is {_kind(output[key])}, expected a number or null"
                    )
    _mapping_of(metrics, "parameters", _is_int, "an integer", problems)
    _mapping_of(metrics, "timings", _is_number, "a number", problems)
    _records(metrics, "activations", problems)
    _records(metrics, "weights", problems)
    return problems[:MAX_PROBLEMS]
