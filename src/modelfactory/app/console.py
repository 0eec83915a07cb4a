"""What a run prints, by ``print_model`` level, and ``run.log``: a copy of everything it printed.

Levels: ``none``; ``summary`` (the default: one screen, whatever the model's
size); ``layers`` (adds the per-layer table with output shapes and FLOPs);
``full`` (adds the module tree, the parameter table and the init report).
``true`` and ``false`` mean ``full`` and ``none``.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from torch import nn

from ..errors import ModelFactoryError
from ..safety.terminal import printable
from ..tables import (
    format_counts,
    format_init_report,
    format_parameter_table,
    format_table,
    layer_summary,
    parameter_counts,
)

__all__ = ["LEVELS", "print_level", "describe_model", "tee_to_log"]

LEVELS = ("none", "summary", "layers", "full")
MAX_CHILDREN = 20  # top-level modules listed in the summary; the rest are counted


def print_level(value: Any) -> str:
    """The ``print_model`` setting as one of :data:`LEVELS`; a clear error for anything else."""
    if value is True or value is None:
        return "full" if value is True else "summary"
    if value is False:
        return "none"
    if isinstance(value, str) and value.lower() in LEVELS:
        return value.lower()
    raise ModelFactoryError(
        f"print_model: must be one of {', '.join(LEVELS)} (or true = full, false = none), "
        f"found {printable(repr(value), 60)}. Example: print_model=layers"
    )


def _shape(shape: Any) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _children_table(model: nn.Module) -> str:
    children = list(model.named_children())
    rows = [
        [
            printable(name, 40),
            type(child).__name__,
            f"{sum(p.numel() for p in child.parameters()):,}",
        ]
        for name, child in children[:MAX_CHILDREN]
    ]
    table = format_table(["module", "type", "parameters"], rows, align_right={2})
    if len(children) > MAX_CHILDREN:
        table += f"\n... and {len(children) - MAX_CHILDREN} more top-level modules"
    return table


def _init_line(report: list[dict[str, Any]]) -> str:
    by_rule = Counter(
        (row.get("rule", "?"), "" if row.get("rule") == "default" else row.get("scheme", "?"))
        for row in report
    )
    parts = [
        f"{count} by {rule} ({scheme})" if scheme else f"{count} by their layer's reset_parameters"
        for (rule, scheme), count in by_rule.items()
    ]
    return f"init: {len(report)} parameter tensors; " + ", ".join(parts)


def describe_model(model: nn.Module, x: Any, *, level: str, label: str) -> str:
    """The text printed before the forward pass, at ``level`` (see :data:`LEVELS`)."""
    if level == "none":
        return ""
    info = model.modelfactory_info
    spec = info.spec
    lines = [
        f"model {printable(str(label), 80)}: {type(model).__name__} on {info.device}, seed {info.seed}",
        f"input {_shape(spec.input.shape)} ({spec.input.dist})",
        format_counts(parameter_counts(model)),
        "",
    ]
    if level == "full":
        lines += [str(model), ""]
    if level in ("layers", "full") and info.device != "meta":
        lines += [layer_summary(model, x).format(), ""]
    else:
        lines += [_children_table(model), ""]
    if level == "full":
        lines += [format_parameter_table(model), "", format_init_report(info.init_report), ""]
    else:
        lines += [_init_line(info.init_report)]
        lines += ["(print_model=layers: every layer with FLOPs; print_model=full: everything)", ""]
    return "\n".join(lines)


class _Tee:
    """A text stream that writes to the terminal stream and to the log file."""

    def __init__(self, terminal: TextIO, log: TextIO) -> None:
        self.terminal = terminal
        self.log = log

    def write(self, text: str) -> int:
        try:
            self.log.write(text)
        except (OSError, ValueError):  # a full disk or a closed log never stops the run
            pass
        return self.terminal.write(text)

    def flush(self) -> None:
        try:
            self.log.flush()
        except (OSError, ValueError):
            pass
        self.terminal.flush()

    def isatty(self) -> bool:
        return self.terminal.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.terminal, name)


@contextlib.contextmanager
def tee_to_log(path: Path) -> Iterator[None]:
    """Copy everything printed to stdout and stderr in the block into ``path`` (appended).

    Hydra's own log records go to the same file through its log handler.
    """
    try:
        log = open(path, "a", encoding="utf-8", errors="backslashreplace")
    except OSError:  # no run.log is no reason to fail the run
        yield
        return
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
        log.close()
