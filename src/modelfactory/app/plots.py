"""The sweep plots: per-layer activation std and per-parameter weight std, one line per job.

Made to stay readable at 50 jobs and 60 layers:

- every job gets its own colour and line style (20 colours x 4 styles);
- jobs whose models have different layers are drawn in separate panels, each
  with its own layer names (up to :data:`MAX_PANELS`; past that, one panel
  indexed by position);
- the y axis is logarithmic when the values span more than :data:`LOG_SPREAD`
  (symmetric-log when some are exactly 0, as under a constant init);
- layer names are thinned to at most :data:`MAX_TICKS` labels and rotated;
- an undefined statistic (the std of a one-element bias) is a gap, never 0.

Labels come from job directories, so they are escaped (control characters,
and ``$``, which matplotlib would read as mathtext).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..safety.terminal import printable
from .summary import JobResult

__all__ = ["write_plots", "activation_series", "weight_series", "legend_labels"]

MAX_PANELS = 4
MAX_TICKS = 40
LOG_SPREAD = 50.0
_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v")

Series = tuple[str, list[str], list[float]]  # label, x names, values (NaN = undefined)


def _value(record: dict[str, Any]) -> float:
    std = record.get("std")
    return float(std) if isinstance(std, (int, float)) and not isinstance(std, bool) else math.nan


def activation_series(job: JobResult) -> tuple[list[str], list[float]]:
    """Layer names (``#2`` for a layer's second call) and the std of each output."""
    names, values = [], []
    for rec in job.metrics.get("activations") or []:
        call = rec.get("call", 1)
        names.append(f"{rec.get('module')}" + (f"#{call}" if call != 1 else ""))
        values.append(_value(rec))
    return names, values


def weight_series(job: JobResult) -> tuple[list[str], list[float]]:
    """Parameter names and the std of each parameter's values."""
    names = [str(rec.get("name")) for rec in job.metrics.get("weights") or []]
    return names, [_value(rec) for rec in job.metrics.get("weights") or []]


def _safe_label(text: str, limit: int = 120) -> str:
    """Escaped for display; ``$`` is literal, and a leading ``_`` does not hide the entry."""
    text = printable(text, limit).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def legend_labels(jobs: list[JobResult]) -> list[str]:
    """Each job's overrides less those all jobs share (and ``resume``), so legends stay short."""
    kept = [[o for o in j.overrides if not o.startswith("resume=")] for j in jobs]
    common = set.intersection(*map(set, kept)) if len(kept) > 1 else set()
    labels = [
        " ".join(o for o in k if o not in common) or j.label
        for k, j in zip(kept, jobs, strict=True)
    ]
    return [f"{j.path.name}: {label}" for j, label in zip(jobs, labels, strict=True)]


def _scale(ax: Any, values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    positive = [v for v in finite if v > 0]
    if not positive or max(positive) / min(positive) < LOG_SPREAD:
        return "linear"
    if len(positive) == len(finite):
        ax.set_yscale("log")
        return "log"
    # zeros (a zero bias, a constant init) stay visible below a power of ten, one decade down
    ax.set_yscale("symlog", linthresh=10 ** math.floor(math.log10(min(positive))))
    return "symlog"


def _ticks(ax: Any, names: list[str]) -> None:
    step = max(1, math.ceil(len(names) / MAX_TICKS))
    shown = list(range(0, len(names), step))
    ax.set_xticks(
        shown,
        [_safe_label(names[i], 40) for i in shown],
        rotation=90 if len(shown) > 12 else 45,
        ha="center" if len(shown) > 12 else "right",
        fontsize="x-small" if len(shown) > 20 else "small",
    )
    ax.set_xlim(-0.5, len(names) - 0.5)


def _panels(series: list[Series]) -> list[tuple[list[str] | None, list[int]]]:
    """Groups of series with the same x names; one group by index when there are too many."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, (_, names, _) in enumerate(series):
        groups.setdefault(tuple(names), []).append(index)
    if len(groups) <= MAX_PANELS:
        return [(list(names), members) for names, members in groups.items()]
    return [(None, list(range(len(series))))]


def _plot(path: Path, series: list[Series], what: str, xlabel: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed on a cluster node
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    series = [s for s in series if s[2]]
    panels = _panels(series) if series else [(None, [])]
    longest = max((len(s[2]) for s in series), default=1)
    width = min(28.0, max(10.0, 4 + 0.18 * longest))
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, 5.5 * len(panels)), squeeze=False)
    colours = colormaps["tab20"].colors
    try:
        for ax, (names, members) in zip(axes[:, 0], panels, strict=True):
            for index in members:
                label, _, values = series[index]
                ax.plot(
                    range(len(values)),
                    values,
                    color=colours[index % len(colours)],
                    linestyle=_STYLES[(index // len(colours)) % len(_STYLES)],
                    marker=_MARKERS[(index // (len(colours) * len(_STYLES))) % len(_MARKERS)],
                    markersize=3,
                    linewidth=1.2,
                    label=_safe_label(label),
                )
            scale = _scale(ax, [v for i in members for v in series[i][2]])
            if names is not None:
                _ticks(ax, names)
                ax.set_xlabel(xlabel)
            else:
                ax.set_xlabel(f"{xlabel}: position (the jobs' models differ in their layers)")
            ax.set_ylabel(ylabel + ("" if scale == "linear" else f" ({scale} scale)"))
            ax.grid(True, which="major", alpha=0.3)
            if members:
                ax.legend(
                    fontsize="xx-small" if len(members) > 20 else "x-small",
                    loc="upper left",
                    bbox_to_anchor=(1.01, 1.0),
                    ncol=1 + len(members) // 26,
                    title="job: overrides",
                    title_fontsize="x-small",
                )
            else:
                ax.text(0.5, 0.5, "no successful job", ha="center", transform=ax.transAxes)
        gaps = any(not math.isfinite(v) for s in series for v in s[2])
        title = f"{what} std, one line per job"
        if gaps:
            title += " (gaps: undefined, e.g. the std of a one-element tensor)"
        axes[0, 0].set_title(title)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)


_PLOTS: tuple[tuple[str, str, Callable[[JobResult], tuple[list[str], list[float]]], str, str], ...] = (
    ("activations.png", "per-layer activation", activation_series, "layer (module path, in call order)",
     "std of the layer's output"),
    ("weights.png", "per-parameter weight", weight_series, "parameter", "std of the parameter's values"),
)  # fmt: skip


def write_plots(sweep_dir: Path, ok_jobs: list[JobResult]) -> tuple[list[Path], list[str]]:
    """Write the plots of the successful jobs; return the files written and what failed."""
    labels = legend_labels(ok_jobs) if ok_jobs else []
    written, problems = [], []
    for name, what, series_of, xlabel, ylabel in _PLOTS:
        path = sweep_dir / name
        try:
            series = [(label, *series_of(j)) for label, j in zip(labels, ok_jobs, strict=True)]
            _plot(path, series, what, xlabel, ylabel)
        except Exception as err:  # noqa: BLE001 - a plot never costs the summary tables
            problems.append(f"{name} ({type(err).__name__}: {printable(str(err), 200)})")
            continue
        written.append(path)
    return written, problems
