"""Sweep directories: which jobs ran, how each ended, and the summary files (plots: ``plots.py``).

Hydra-free: everything here takes paths and plain data. The Hydra side (the
per-job guard and the ``on_multirun_end`` callback) is :mod:`modelfactory.app.sweep`.

A job directory is one that holds ``metrics.json`` or ``.hydra/overrides.yaml``.
Its ``metrics.json`` has ``status: ok`` (written by the app), ``failed`` with
the error, or ``skipped`` with the reason (written by the guard); a job
directory without one did not finish.

Whatever a job directory holds, the summary is written: ``metrics.json`` is
read with bounds on size and nesting, every field is type-checked before use,
and a job whose files are unreadable or malformed is listed as failed with
the reason. Every string from a job (overrides, errors, names) is escaped in
the CSV (:func:`~modelfactory.safety.terminal.csv_cell`), the Markdown and
the terminal report.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ModelFactoryError
from ..io.checkpoint import META_PREFIX, read_metadata, verify_checksum
from ..safety.json_bounded import loads_bounded
from ..safety.read import read_bounded
from ..safety.terminal import csv_cell, printable
from .metrics_check import metrics_problems

__all__ = [
    "SweepError",
    "JobResult",
    "SweepSummary",
    "config_digest",
    "failure_record",
    "incomplete_reason",
    "read_metrics",
    "collect_jobs",
    "write_summary",
]

METRICS = "metrics.json"
CHECKPOINT = "model.safetensors"
MAX_METRICS_BYTES = 64 * 1024 * 1024  # a 100,000-module model writes a few MB
MAX_METRICS_DEPTH = 32  # the app writes 4 levels
MAX_OVERRIDES_BYTES = 1024 * 1024
STATUSES = ("ok", "failed", "skipped")
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
    "params_unique",
    "params_total",
    "buffers",
    "output_shape",
    "output_mean",
    "output_std",
    "output_min",
    "output_max",
    "build_s",
    "forward_s",
    "checkpoint",
]
_TEXT_COLUMNS = ("job", "overrides", "status", "error", "model", "checkpoint")


class SweepError(ModelFactoryError):
    """A sweep directory, or one of its job files, could not be read."""


def config_digest(config: Mapping[str, Any]) -> str:
    """SHA-256 of a job's resolved config, ignoring keys that do not change its result."""
    data = {k: v for k, v in config.items() if k not in NON_RESULT_KEYS}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def failure_record(error: BaseException, *, status: str = "failed", **facts: Any) -> dict[str, Any]:
    """The ``metrics.json`` of a failed (or skipped) job: its error and what is known about it."""
    if isinstance(error, ModelFactoryError):
        message = str(error)
    else:  # an unexpected error: its type is part of what happened (MemoryError, ...)
        message = f"{type(error).__name__}: {error}"
    return {"status": status, "error": message, "error_type": type(error).__name__, **facts}


def read_metrics(path: Path) -> dict[str, Any]:
    """A ``metrics.json`` as a dict, read within bounds; :class:`SweepError` says what is wrong."""
    raw = read_bounded(path, limit=MAX_METRICS_BYTES, what="metrics.json", error=SweepError)
    data = loads_bounded(
        raw,
        max_bytes=MAX_METRICS_BYTES,
        max_depth=MAX_METRICS_DEPTH,
        what=f"{path}",
        allow_duplicate_keys=True,
        error=SweepError,
    )
    if not isinstance(data, dict):
        raise SweepError(f"{path}: not a JSON object (found a {type(data).__name__})")
    return data


def incomplete_reason(job_dir: str | Path, config_sha256: str) -> str | None:
    """Why ``job_dir`` does not hold a complete result of this config; ``None`` if it does.

    Complete means: ``metrics.json`` parses, says ``status: ok`` and was written
    for the same config (digest), and ``model.safetensors`` has a readable
    modelfactory header and data matching its checksum (unless the run wrote none:
    ``device=meta`` or ``save_checkpoint=false``, which the digest covers; a sharded
    run's ``model.dcp`` must be a complete DCP checkpoint).
    """
    job_dir = Path(job_dir)
    path = job_dir / METRICS
    if not path.exists():
        return "no metrics.json"
    try:
        metrics = read_metrics(path)
    except ModelFactoryError as err:
        return f"metrics.json is unreadable ({err})"
    problems = metrics_problems(metrics)
    if problems:
        return "metrics.json is malformed: " + "; ".join(problems)
    if metrics.get("status") != "ok":
        return f"metrics.json has status {printable(repr(metrics.get('status')), 40)}, not 'ok'"
    if metrics.get("config_sha256") != config_sha256:
        return "metrics.json was written for a different config"
    if metrics.get("device") == "meta" or ("checkpoint" in metrics and not metrics["checkpoint"]):
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
    """One job of a sweep as found on disk (``metrics`` type-checked when ``status`` is ok)."""

    path: Path
    overrides: list[str]
    status: str  # "ok" | "failed" | "skipped"
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The job's overrides, as a table label (not escaped: escape where it is shown)."""
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
        raw = read_bounded(path, limit=MAX_OVERRIDES_BYTES, what="overrides", error=SweepError)
        data = yaml.safe_load(raw)
    except Exception:  # noqa: BLE001 - missing, unreadable, hostile: no overrides known
        return []
    return [o for o in data if isinstance(o, str)] if isinstance(data, list) else []


def read_job(job_dir: Path) -> JobResult:
    """Read one job directory; an unreadable or malformed ``metrics.json`` counts as failed."""
    overrides = _read_overrides(job_dir)
    path = job_dir / METRICS
    if not path.exists() and not path.is_symlink():
        return JobResult(job_dir, overrides, "failed", UNFINISHED)
    try:
        metrics = read_metrics(path)
    except ModelFactoryError as err:
        return JobResult(job_dir, overrides, "failed", f"metrics.json is unreadable: {err}")
    listed = metrics.get("overrides")
    if isinstance(listed, list) and all(isinstance(o, str) for o in listed):
        overrides = listed
    problems = metrics_problems(metrics)
    if problems:
        return JobResult(
            job_dir, overrides, "failed", "metrics.json is malformed: " + "; ".join(problems)
        )
    # Metrics from before statuses existed have no "status" but are complete runs.
    status = metrics.get("status", "ok")
    error = "" if status == "ok" else str(metrics.get("error") or f"{status} (no message)")
    return JobResult(job_dir, overrides, status, error, metrics)


def collect_jobs(sweep_dir: str | Path) -> list[JobResult]:
    """Every job under ``sweep_dir`` in job order; raise :class:`SweepError` if there is none."""
    sweep_dir = Path(sweep_dir)
    shown = printable(str(sweep_dir), 300)
    if not sweep_dir.is_dir():
        raise SweepError(
            f"summarize: '{shown}' is not a directory. Pass a sweep directory, "
            "such as multirun/<date>/<time>, or the hydra.sweep.dir you chose."
        )
    try:
        dirs = _job_dirs(sweep_dir)
    except OSError as err:
        raise SweepError(f"summarize: cannot list '{shown}': {err.strerror or err}") from None
    if not dirs:
        raise SweepError(
            f"summarize: no job directories under '{shown}' (none holds metrics.json or "
            ".hydra/overrides.yaml). Pass the directory of a `python run.py -m ...` sweep."
        )
    jobs = []
    for job_dir in dirs:
        try:
            jobs.append(read_job(job_dir))
        except Exception as err:  # noqa: BLE001 - one bad job never stops the summary
            jobs.append(JobResult(job_dir, [], "failed", f"unreadable job ({type(err).__name__})"))
    return jobs


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value) if isinstance(value, int) else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _row(job: JobResult, sweep_dir: Path) -> dict[str, str]:
    m = job.metrics
    output = m.get("output") or {}
    timings = m.get("timings") or {}
    params = m.get("parameters") or {}
    checkpoint = job.path / CHECKPOINT
    shape = output.get("shape")
    row = {
        "job": job.path.relative_to(sweep_dir).as_posix(),
        "overrides": " ".join(job.overrides),
        "status": job.status,
        "error": _one_line(job.error),
        "model": str(m.get("model") or ""),
        "params_unique": _number(params.get("unique")),
        "params_total": _number(params.get("total")),
        "buffers": _number(params.get("buffers")),
        "output_shape": ("x".join(map(str, shape)) or "scalar") if isinstance(shape, list) else "",
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
    return row


def _csv_row(row: dict[str, str]) -> dict[str, str]:
    """Strings from jobs escaped and defused (formulas); numbers written by us stay numbers."""
    return {k: csv_cell(v, 4000) if k in _TEXT_COLUMNS else v for k, v in row.items()}


def _md_cell(text: str) -> str:
    text = printable(text, 4000)  # escapes backslashes too, so the Markdown escapes below stay
    return text.replace("|", "\\|").replace("`", "\\`").replace("<", "&lt;")


def _counts_line(rows: list[dict[str, str]]) -> str:
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    text = f"{len(rows)} jobs: {counts['ok']} ok, {counts['failed']} failed"
    return text + (f", {counts['skipped']} skipped" if counts["skipped"] else "")


def _write_markdown(path: Path, rows: list[dict[str, str]], title: str) -> None:
    lines = [
        f"# Sweep summary: {_md_cell(title)}",
        "",
        _counts_line(rows) + ".",
        "",
        "| " + " | ".join(CSV_COLUMNS) + " |",
        "|" + "---|" * len(CSV_COLUMNS),
    ]
    lines += ["| " + " | ".join(_md_cell(r[c]) for c in CSV_COLUMNS) + " |" for r in rows]
    path.write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class SweepSummary:
    """What :func:`write_summary` found and wrote."""

    sweep_dir: Path
    jobs: list[JobResult]
    files: list[Path]
    problems: list[str] = field(default_factory=list)  # files that could not be written

    @property
    def failed(self) -> list[JobResult]:
        """The jobs that failed, did not finish, or left unreadable results."""
        return [j for j in self.jobs if j.status == "failed"]

    @property
    def skipped(self) -> list[JobResult]:
        """The jobs skipped up front (an init preset written for other models)."""
        return [j for j in self.jobs if j.status == "skipped"]

    def report(self) -> str:
        """One line for the whole sweep, then one per failed or skipped job (all escaped)."""
        ok = len(self.jobs) - len(self.failed) - len(self.skipped)
        head = f"sweep {printable(str(self.sweep_dir), 300)}: {len(self.jobs)} jobs, {ok} ok, "
        head += f"{len(self.failed)} failed"
        head += f", {len(self.skipped)} skipped" if self.skipped else ""
        lines = [head + f"; summary in {printable(str(self.sweep_dir / 'summary.md'), 300)}"]
        for job in self.failed + self.skipped:
            error = _one_line(job.error) or job.status  # one line per job
            lines.append(
                f"  {job.status}: {printable(job.path.name, 80)} ({printable(job.label, 300)}): "
                f"{printable(error, 1000)}"
            )
        lines += [f"  not written: {p}" for p in self.problems]
        return "\n".join(lines)


def write_summary(sweep_dir: str | Path) -> SweepSummary:
    """Write summary.csv, summary.md, activations.png and weights.png into ``sweep_dir``."""
    from .plots import write_plots

    sweep_dir = Path(sweep_dir)
    jobs = collect_jobs(sweep_dir)
    rows = [_row(job, sweep_dir) for job in jobs]
    files = [sweep_dir / name for name in ("summary.csv", "summary.md")]
    try:
        with open(files[0], "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(_csv_row(r) for r in rows)
        _write_markdown(files[1], rows, sweep_dir.as_posix())
    except OSError as err:
        raise SweepError(
            f"summarize: cannot write the summary into '{printable(str(sweep_dir), 300)}': "
            f"{err.strerror or err}. Make the directory writable, or copy the sweep elsewhere "
            "and summarize the copy."
        ) from None
    written, problems = write_plots(sweep_dir, [j for j in jobs if j.status == "ok"])
    return SweepSummary(sweep_dir, jobs, files + written, problems)
