"""Parameter tables and counts that understand shared modules and tied parameters."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .sharing import group_by_identity

__all__ = [
    "ParamRow",
    "parameter_rows",
    "parameter_counts",
    "counts_of_rows",
    "format_counts",
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
    tied: bool = False  # True for a parameter tie (different modules), False for a shared module


def parameter_rows(model: nn.Module) -> list[ParamRow]:
    """Every parameter name, marking names that reach an already-listed Parameter."""
    modules = dict(model.named_modules(remove_duplicate=False))
    named = list(model.named_parameters(remove_duplicate=False))
    first = {id(group[0][1]): group[0][0] for group in group_by_identity(named)}
    rows = []
    for name, param in named:
        original = first[id(param)]
        owner = modules[name.rpartition(".")[0]]
        first_owner = modules[original.rpartition(".")[0]]
        rows.append(
            ParamRow(
                name=name,
                shape=tuple(param.shape),
                count=param.numel(),
                trainable=param.requires_grad,
                same_as=None if original == name else original,
                tied=original != name and owner is not first_owner,
            )
        )
    return rows


def counts_of_rows(rows: Iterable[ParamRow], buffers: int) -> dict[str, int]:
    """The one definition of every count printed or recorded (validate, run, inspect, summary).

    ``unique``: parameter elements, each tensor once (what training updates);
    ``total``: every parameter name counted (what a state_dict lists), so
    ``total = unique + shared + tied``; ``shared``: elements reached again
    through a module used at several places; ``tied``: elements reached again
    through a tied parameter; ``trainable_unique``; ``buffers``: buffer
    elements (running statistics, constants), each once, never parameters.
    """
    rows = list(rows)
    return {
        "unique": sum(r.count for r in rows if r.same_as is None),
        "total": sum(r.count for r in rows),
        "shared": sum(r.count for r in rows if r.same_as is not None and not r.tied),
        "tied": sum(r.count for r in rows if r.tied),
        "trainable_unique": sum(r.count for r in rows if r.same_as is None and r.trainable),
        "buffers": buffers,
    }


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """The counts of a built model (see :func:`counts_of_rows` for what each one means)."""
    return counts_of_rows(parameter_rows(model), sum(b.numel() for b in model.buffers()))


def format_counts(counts: Mapping[str, Any]) -> str:
    """One line: unique parameters, the by-name total when it differs, buffers.

    ``11,689,512 parameters; 9,620 buffer elements`` or
    ``4,356 parameters (7,556 counting every name: 3,200 tied); no buffers``.
    """
    unique, total = counts.get("unique", 0), counts.get("total", 0)
    text = f"{unique:,} parameters"
    if total != unique:
        extra = [
            f"{counts[key]:,} {label}"
            for key, label in (("shared", "in shared modules"), ("tied", "tied"))
            if counts.get(key)
        ]
        text += f" ({total:,} counting every name: {', '.join(extra)})"
    buffers = counts.get("buffers", 0)
    text += f"; {buffers:,} buffer elements" if buffers else "; no buffers"
    return text


def parameter_stats(model: nn.Module) -> list[dict[str, Any]]:
    """Name, shape, mean and std of each parameter tensor, a tied one once (first name).

    The std of a one-element tensor is undefined and recorded as ``None``.
    """
    stats = []
    for name, param in model.named_parameters():
        row: dict[str, Any] = {"name": name, "shape": list(param.shape)}
        if param.device.type != "meta" and param.numel():
            values = param.detach().float()
            row["mean"] = _finite(values.mean().item())
            row["std"] = _finite(values.std().item()) if values.numel() > 1 else None
        stats.append(row)
    return stats


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


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


def _note(row: ParamRow) -> str:
    if row.same_as is None:
        return "" if row.trainable else "frozen"
    return f"tied to {row.same_as}" if row.tied else f"shared module: same as {row.same_as}"


def format_parameter_table(model: nn.Module) -> str:
    """The parameter table printed by ``run.py``: name, shape, count, and sharing."""
    rows = parameter_rows(model)
    body = [
        [
            r.name,
            "x".join(map(str, r.shape)) or "scalar",
            f"{r.count:,}",
            _note(r),
        ]
        for r in rows
    ]
    counts = counts_of_rows(rows, sum(b.numel() for b in model.buffers()))
    table = format_table(["parameter", "shape", "count", "note"], body, align_right={2})
    return f"{table}\n{format_counts(counts)}"


def format_init_report(report: list[dict[str, Any]]) -> str:
    """The init report as a table: which rule initialised each parameter, with what."""
    body = [
        [
            row["param"] + (f" (= {', '.join(row['aliases'])})" if row.get("aliases") else ""),
            row["rule"],
            row["scheme"]
            + (
                f"({', '.join(f'{k}={v!r}' for k, v in row['args'].items())})"
                if row["args"]
                else ""
            ),
        ]
        for row in report
    ]
    return "init report\n" + format_table(["parameter", "rule", "scheme"], body)


@dataclass(frozen=True)
class LayerRow:
    """One leaf layer: where it is, what it is, what it produced and what it cost."""

    path: str
    type: str
    output_shape: list[int] | None
    params: int
    flops: int
    calls: int


@dataclass(frozen=True)
class LayerSummary:
    """A torchinfo-style table: one row per leaf layer, then totals."""

    rows: list[LayerRow]
    total_flops: int
    counts: dict[str, int]

    def format(self) -> str:
        """The table as text, as ``run.py`` prints it."""
        body = [
            [
                r.path,
                r.type,
                "x".join(map(str, r.output_shape)) if r.output_shape is not None else "-",
                f"{r.params:,}",
                _human(r.flops) + (f" ({r.calls} calls)" if r.calls > 1 else ""),
            ]
            for r in self.rows
        ]
        table = format_table(
            ["layer", "type", "output", "params", "FLOPs"], body, align_right={3, 4}
        )
        return (
            f"{table}\ntotal {_human(self.total_flops)} FLOPs ({_human(self.total_flops // 2)} MACs) "
            f"for one forward pass; {format_counts(self.counts)}"
        )


def _human(count: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def recorded_input(model: nn.Module) -> Any:
    """The input declared by the spec ``model`` was built from (same seed, model's device)."""
    from .builder.forward import make_input
    from .errors import ModelFactoryError

    info = getattr(model, "modelfactory_info", None)
    spec = getattr(info, "spec", None)
    if spec is None:
        raise ModelFactoryError(
            f"summary: {type(model).__name__} was not built by modelfactory.build, so no input "
            "is recorded for it; pass one: modelfactory.summary(model, x)"
        )
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else info.device
    return make_input(spec.input, seed=info.seed, device=device)


def layer_summary(model: nn.Module, *inputs: Any) -> LayerSummary:
    """Run ``model(*inputs)`` once without gradients and tabulate its leaf layers.

    Without ``inputs``, a model from :func:`modelfactory.build` runs on the
    input its spec declares. Buffers (BatchNorm statistics) are left as they
    were. FLOPs come from ``torch.utils.flop_counter`` (matmuls and
    convolutions; two FLOPs per multiply-accumulate). A shared layer is one
    row, its calls summed.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .builder.forward import buffers_kept

    if not inputs:
        inputs = (recorded_input(model),)

    leaves = [(name, m) for name, m in model.named_modules() if name and not list(m.children())]
    shapes: dict[int, list[int] | None] = {}
    calls: dict[int, int] = {}

    def record(module: nn.Module, _args: Any, output: Any) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        if id(module) not in shapes:
            shapes[id(module)] = list(output.shape) if isinstance(output, torch.Tensor) else None

    handles = [m.register_forward_hook(record) for _, m in leaves]
    try:
        with buffers_kept(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    counts = {
        key.partition(".")[2]: sum(ops.values())
        for key, ops in counter.get_flop_counts().items()
        if "." in key
    }
    rows = [
        LayerRow(
            path=name,
            type=type(m).__name__,
            output_shape=shapes.get(id(m)),
            params=sum(p.numel() for p in m.parameters()),
            flops=counts.get(name, 0),
            calls=calls.get(id(m), 0),
        )
        for name, m in leaves
    ]
    return LayerSummary(rows, counter.get_total_flops(), parameter_counts(model))
