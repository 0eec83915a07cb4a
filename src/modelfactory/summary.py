"""Parameter tables and counts that understand shared modules and tied parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = [
    "ParamRow",
    "parameter_rows",
    "parameter_counts",
    "parameter_stats",
    "format_parameter_table",
    "format_table",
]


@dataclass(frozen=True)
class ParamRow:
    """One parameter as it appears in ``named_parameters(remove_duplicate=False)``."""

    name: str
    shape: tuple[int, ...]
    count: int
    trainable: bool
    same_as: str | None  # the first name of the same Parameter object, if this is a repeat


def parameter_rows(model: nn.Module) -> list[ParamRow]:
    """Every parameter name, marking names that reach an already-listed Parameter."""
    first: dict[int, str] = {}
    rows = []
    for name, param in model.named_parameters(remove_duplicate=False):
        original = first.setdefault(id(param), name)
        rows.append(
            ParamRow(
                name=name,
                shape=tuple(param.shape),
                count=param.numel(),
                trainable=param.requires_grad,
                same_as=None if original == name else original,
            )
        )
    return rows


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``total`` counts every name (as a state_dict would); ``unique`` counts each tensor once."""
    rows = parameter_rows(model)
    return {
        "total": sum(r.count for r in rows),
        "unique": sum(r.count for r in rows if r.same_as is None),
        "trainable_unique": sum(r.count for r in rows if r.same_as is None and r.trainable),
        "buffers": sum(b.numel() for b in model.buffers()),
    }


def parameter_stats(model: nn.Module) -> list[dict[str, Any]]:
    """Name, shape, mean and std of each parameter tensor, a tied one once (first name)."""
    stats = []
    for name, param in model.named_parameters():
        row: dict[str, Any] = {"name": name, "shape": list(param.shape)}
        if param.device.type != "meta" and param.numel():
            values = param.detach().float()
            row["mean"] = values.mean().item()
            row["std"] = values.std().item() if values.numel() > 1 else 0.0
        stats.append(row)
    return stats


def format_table(
    headers: list[str], rows: list[list[str]], align_right: set[int] = frozenset()
) -> str:
    """A plain-text table with a header rule; columns in ``align_right`` are right-aligned."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in align_right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def format_parameter_table(model: nn.Module) -> str:
    """The parameter table printed by ``run.py``: name, shape, count, and sharing."""
    rows = parameter_rows(model)
    body = [
        [
            r.name,
            "x".join(map(str, r.shape)) or "scalar",
            f"{r.count:,}",
            f"shared with {r.same_as}" if r.same_as else ("" if r.trainable else "frozen"),
        ]
        for r in rows
    ]
    counts = parameter_counts(model)
    table = format_table(["parameter", "shape", "count", "note"], body, align_right={2})
    totals = f"total {counts['total']:,} parameters, unique {counts['unique']:,}"
    if counts["buffers"]:
        totals += f", plus {counts['buffers']:,} buffer elements (constants, running stats)"
    return f"{table}\n{totals}"
