"""Sweep directories: which jobs ran, how each ended, and the summary with its plots.

Hydra-free: everything here takes paths and plain data. The Hydra side (the
per-job guard and the ``on_multirun_end`` callback) is :mod:`modelfactory.sweep_app`.

A job directory is one that holds ``metrics.json`` or ``.hydra/overrides.yaml``.
Its ``metrics.json`` has ``status: ok`` (written by the app) or ``status: failed``
with the error (written by the guard); a job directory without one did not finish.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ModelFactoryError
from ..io.checkpoint import META_PREFIX, read_metadata, verify_checksum

__all__ = [
    "SweepError",
    "JobResult",
    "SweepSummary",
    "config_digest",
    "failure_record",
    "incomplete_reason",
    "collect_jobs",
    "write_summary",
]

METRICS = "metrics.json"
CHECKPOINT = "model.safetensors"
# Config keys that do not change a job's result, so resuming ignores them.
NON_RESULT_KEYS = ("resume", "print_model")
UNFINISHED = (
    "the job did not finish: its directory has no metrics.json "
    "(killed, out of memory, timed out, or still running)"
)
CSV_COLUMNS = [
    "job",
    "overrides",
    "status",
    "error",
    "model",
    "params_total",
    "params_unique",
    "output_shape",
    "output_mean",
    "output_std",
    "output_min",
    "output_max",
    "build_s",
    "forward_s",
    "checkpoint",
]


class SweepError(ModelFactoryError):
    """A sweep directory could not be summarised."""


def config_digest(config: Mapping[str, Any]) -> str:
    """SHA-256 of a job's resolved config, ignoring keys that do not change its result."""
    data = {k: v for k, v in config.items() if k not in NON_RESULT_KEYS}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def failure_record(error: BaseException, **facts: Any) -> dict[str, Any]:
    """The ``metrics.json`` of a failed job: its error and whatever is known about it."""
    if isinstance(error, ModelFactoryError):
        message = str(error)
    else:  # an unexpected error: its type is part of what happened (MemoryError, ...)
        message = f"{type(error).__name__}: {error}"
    return {"status": "failed", "error": message, "error_type": type(error).__name__, **facts}


def incomplete_reason(job_dir: str | Path, config_sha256: str) -> str | None:
    """Why ``job_dir`` does not hold a complete result of this config; ``None`` if it does.

    Complete means: ``metrics.json`` parses, says ``status: ok`` and was written
    for the same config (digest), and ``model.safetensors`` has a readable
    modelfactory header and data matching its checksum (meta-device runs write no
    checkpoint; a sharded run's ``model.dcp`` must be a complete DCP checkpoint).
    """
    job_dir = Path(job_dir)
    path = job_dir / METRICS
    if not path.is_file():
        return "no metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return f"metrics.json is unreadable ({err})"
    if not isinstance(metrics, dict):
        return "metrics.json is not a JSON object"
    if metrics.get("status") != "ok":
        return f"metrics.json has status {metrics.get('status')!r}, not 'ok'"
    if metrics.get("config_sha256") != config_sha256:
        return "metrics.json was written for a different config"
    if metrics.get("device") == "meta":
        return None
    if metrics.get("strategy") == "fsdp":  # a sharded run: a complete DCP directory
        from ..io.dcp import read_dcp  # torch.distributed's checkpoint package, only here

        try:
            read_dcp(job_dir / "model.dcp")
        except ModelFactoryError as err:
            return str(err)
        return None
    try:
        header = read_metadata(job_dir / CHECKPOINT)
    except ModelFactoryError as err:
        return str(err)
    if META_PREFIX + "spec" not in header:
        return f"{job_dir / CHECKPOINT} has no modelfactory architecture in its header"
    try:  # a checkpoint whose bytes changed since it was written is not a result
        verify_checksum(job_dir / CHECKPOINT)
    except ModelFactoryError as err:
        return str(err)
    return None


@dataclass
class JobResult:
    """One job of a sweep as found on disk."""

    path: Path
    overrides: list[str]
    status: str  # "ok" | "failed"
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The job's overrides, as a plot legend and table label."""
        return " ".join(self.overrides) or "(no overrides)"


def _natural_key(path: Path) -> list[Any]:
    # Job 10 after job 9: compare digit runs as numbers.
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.as_posix())]


def _job_dirs(sweep_dir: Path) -> list[Path]:
    found = {p.parent for p in sweep_dir.rglob(METRICS)}
    found |= {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")}
    # Skip launcher bookkeeping such as submitit's .submitit/ folder.
    found = {
        d for d in found if not any(part.startswith(".") for part in d.relative_to(sweep_dir).parts)
    }
    return sorted(found, key=lambda d: _natural_key(d.relative_to(sweep_dir)))


def _read_overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(o) for o in data] if isinstance(data, list) else []


def read_job(job_dir: Path) -> JobResult:
    """Read one job directory; a missing or unreadable ``metrics.json`` counts as failed."""
    overrides = _read_overrides(job_dir)
    path = job_dir / METRICS
    if not path.is_file():
        return JobResult(job_dir, overrides, "failed", UNFINISHED)
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return JobResult(
            job_dir, overrides, "failed", f"metrics.json is unreadable ({err}): the job was cut off"
        )
    if not isinstance(metrics, dict):
        return JobResult(job_dir, overrides, "failed", "metrics.json is not a JSON object")
    overrides = [str(o) for o in metrics.get("overrides") or overrides]
    # Metrics from before statuses existed have no "status" but are complete runs.
    status = "ok" if metrics.get("status", "ok") == "ok" else "failed"
    error = "" if status == "ok" else str(metrics.get("error") or "failed (no message)")
    return JobResult(job_dir, overrides, status, error, metrics)


def collect_jobs(sweep_dir: str | Path) -> list[JobResult]:
    """Every job under ``sweep_dir`` in job order; raise :class:`SweepError` if there is none."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise SweepError(
            f"summarize: '{sweep_dir}' is not a directory. Pass a sweep directory, "
            "such as multirun/<date>/<time>, or the hydra.sweep.dir you chose."
        )
    dirs = _job_dirs(sweep_dir)
    if not dirs:
        raise SweepError(
            f"summarize: no job directories under '{sweep_dir}' (none holds metrics.json or "
            ".hydra/overrides.yaml). Pass the directory of a `python run.py -m ...` sweep."
        )
    return [read_job(d) for d in dirs]


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _row(job: JobResult, sweep_dir: Path) -> dict[str, str]:
    m = job.metrics
    output = m.get("output") or {}
    timings = m.get("timings") or {}
    params = m.get("parameters") or {}
    checkpoint = job.path / CHECKPOINT
    return {
        "job": job.path.relative_to(sweep_dir).as_posix(),
        "overrides": " ".join(job.overrides),
        "status": job.status,
        "error": job.error,
        "model": str(m.get("model") or ""),
        "params_total": _number(params.get("total")),
        "params_unique": _number(params.get("unique")),
        "output_shape": "x".join(map(str, output["shape"])) or "scalar"
        if "shape" in output
        else "",
        "output_mean": _number(output.get("mean")),
        "output_std": _number(output.get("std")),
        "output_min": _number(output.get("min")),
        "output_max": _number(output.get("max")),
        "build_s": _number(timings.get("build_s")),
        "forward_s": _number(timings.get("forward_s")),
        "checkpoint": checkpoint.relative_to(sweep_dir).as_posix()
        if job.status == "ok" and checkpoint.is_file()
        else "",
    }


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


def _write_markdown(path: Path, rows: list[dict[str, str]], title: str) -> None:
    ok = sum(r["status"] == "ok" for r in rows)
    lines = [
        f"# Sweep summary: {title}",
        "",
        f"{len(rows)} jobs: {ok} ok, {len(rows) - ok} failed.",
        "",
        "| " + " | ".join(CSV_COLUMNS) + " |",
        "|" + "---|" * len(CSV_COLUMNS),
    ]
    lines += ["| " + " | ".join(_md_cell(r[c]) for c in CSV_COLUMNS) + " |" for r in rows]
    path.write_text("\n".join(lines) + "\n")


def _activation_series(job: JobResult) -> tuple[list[str], list[float]]:
    names, values = [], []
    for rec in job.metrics.get("activations") or []:
        if isinstance(rec, dict) and isinstance(rec.get("std"), int | float):
            call = rec.get("call", 1)
            names.append(f"{rec.get('module')}" + (f"#{call}" if call != 1 else ""))
            values.append(float(rec["std"]))
    return names, values


def _weight_series(job: JobResult) -> tuple[list[str], list[float]]:
    names, values = [], []
    for rec in job.metrics.get("weights") or []:
        if isinstance(rec, dict) and isinstance(rec.get("std"), int | float):
            names.append(str(rec.get("name")))
            values.append(float(rec["std"]))
    return names, values


def _plot(path: Path, series: list[tuple[str, list[str], list[float]]], what: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed on a cluster node
    import matplotlib.pyplot as plt

    series = [s for s in series if s[2]]
    fig, ax = plt.subplots(figsize=(10, 5.5))
    try:
        for label, _, values in series:
            ax.plot(range(len(values)), values, marker="o", markersize=3, label=label)
        names = {tuple(s[1]) for s in series}
        if len(names) == 1:  # every job has the same layers: name them on the axis
            ticks = next(iter(names))
            ax.set_xticks(range(len(ticks)), ticks, rotation=60, ha="right", fontsize="small")
            ax.set_xlabel("layer")
        else:
            ax.set_xlabel("layer index (jobs differ in their layers)")
        values = [v for s in series for v in s[2] if math.isfinite(v)]
        if values and min(values) > 0:
            ax.set_yscale("log")  # stds across layers and schemes span decades
        ax.set_ylabel(f"{what} std")
        ax.set_title(f"per-layer {what} std, one line per job")
        if series:
            # Beside the axes, so many jobs never hide the lines.
            ax.legend(
                fontsize="x-small",
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                ncol=1 + len(series) // 30,
            )
        else:
            ax.text(0.5, 0.5, "no successful job", ha="center", transform=ax.transAxes)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)


def _legend_labels(jobs: list[JobResult]) -> list[str]:
    """Each job's overrides less those all jobs share (and ``resume``), so legends stay short."""
    kept = [[o for o in j.overrides if not o.startswith("resume=")] for j in jobs]
    common = set.intersection(*map(set, kept)) if len(kept) > 1 else set()
    return [
        " ".join(o for o in k if o not in common) or j.label
        for k, j in zip(kept, jobs, strict=True)
    ]


@dataclass(frozen=True)
class SweepSummary:
    """What :func:`write_summary` found and wrote."""

    sweep_dir: Path
    jobs: list[JobResult]
    files: list[Path]

    @property
    def failed(self) -> list[JobResult]:
        """The jobs that failed or did not finish."""
        return [j for j in self.jobs if j.status != "ok"]

    def report(self) -> str:
        """One line for the whole sweep, then one per failed job."""
        lines = [
            f"sweep {self.sweep_dir}: {len(self.jobs)} jobs, {len(self.jobs) - len(self.failed)} "
            f"ok, {len(self.failed)} failed; summary in {self.sweep_dir / 'summary.md'}"
        ]
        for job in self.failed:
            error = " ".join(job.error.split()) or "failed"  # one line per job
            lines.append(f"  failed: {job.path.name} ({job.label}): {error}")
        return "\n".join(lines)


def write_summary(sweep_dir: str | Path) -> SweepSummary:
    """Write summary.csv, summary.md, activations.png and weights.png into ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    jobs = collect_jobs(sweep_dir)
    rows = [_row(job, sweep_dir) for job in jobs]
    files = [sweep_dir / name for name in ("summary.csv", "summary.md")]
    with open(files[0], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    _write_markdown(files[1], rows, sweep_dir.as_posix())
    ok = [j for j in jobs if j.status == "ok"]
    labels = _legend_labels(ok)
    for name, what, series_of in (
        ("activations.png", "activation", _activation_series),
        ("weights.png", "weight", _weight_series),
    ):
        _plot(
            sweep_dir / name,
            [(label, *series_of(j)) for label, j in zip(labels, ok, strict=True)],
            what,
        )
        files.append(sweep_dir / name)
    return SweepSummary(sweep_dir, jobs, files)
