"""Shared benchmark plumbing: side-by-side timing, child-process peak memory, the report.

Only the standard library and torch are imported here, so a child process that
measures one case pays for nothing but what that case itself imports.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"

__all__ = [
    "ROOT",
    "DOC",
    "Case",
    "time_side_by_side",
    "run_child",
    "baseline_peak",
    "machine_description",
    "format_table",
    "write_section",
    "fmt_seconds",
    "fmt_mib",
]


@dataclass
class Case:
    """One variant of a comparison: a label and a zero-argument callable to time."""

    label: str
    fn: Callable[[], object]
    # Run after each timed call, untimed (e.g. drop the built model before the next one).
    after: Callable[[], None] | None = None


def time_side_by_side(cases: Sequence[Case], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time of each case, with the cases interleaved in every repeat.

    Interleaving (a, b, c, a, b, c, ...) rather than running each case's
    repeats back to back means a noisy neighbour on a shared machine slows
    every case alike, so the ratios stay meaningful even when times drift.
    """
    samples: dict[str, list[float]] = {case.label: [] for case in cases}
    for round_index in range(warmup + repeats):
        for case in cases:
            start = time.perf_counter()
            case.fn()
            elapsed = time.perf_counter() - start
            if case.after is not None:
                case.after()
            if round_index >= warmup:
                samples[case.label].append(elapsed)
    return {label: statistics.median(values) for label, values in samples.items()}


# A small launcher between us and each measured child. Linux carries the RSS
# high-water mark of the process that execs into the child (ru_maxrss survives
# fork and exec), so a child started straight from this process would report at
# least our own, torch-sized RSS. The launcher imports nothing, so its own small
# RSS is the floor, and it reports exactly its one child's peak and wall time.
_LAUNCHER = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - start
sys.stderr.write(f"\\n@@child {os.waitstatus_to_exitcode(status)} {usage.ru_maxrss} {wall}\\n")
"""


def run_child(argv: Sequence[str], *, cwd: Path | None = None) -> tuple[float, int, str]:
    """Run ``argv`` to completion; return (wall seconds, peak RSS in bytes, stdout).

    A failing child raises, with its stderr, so a broken case is never
    reported as a measurement.
    """
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *argv],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = proc.stderr.rstrip().splitlines()
    if not lines or not lines[-1].startswith("@@child "):
        raise RuntimeError(f"{' '.join(argv)}: launcher failed:\n{proc.stderr[-3000:]}")
    _, code, maxrss, wall = lines[-1].split()
    if int(code) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({code}):\n{proc.stderr[-3000:]}")
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return float(wall), int(maxrss) * scale, proc.stdout


def baseline_peak() -> int:
    """Peak RSS in bytes of a Python process that only imports torch."""
    _, peak, _ = run_child([sys.executable, "-c", "import torch"])
    return peak


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def machine_description() -> str:
    """One line: CPU model, cores, RAM, OS, Python, torch, and today's date."""
    import torch

    threads = torch.get_num_threads()
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores (torch threads: {threads}), RAM {_ram_gib()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}; run {datetime.date.today().isoformat()}"
    )


def fmt_seconds(seconds: float) -> str:
    """Seconds in a readable unit (µs, ms or s)."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.3f} s"


def fmt_mib(nbytes: float | None) -> str:
    """Bytes as MiB, or an em dash when not measured."""
    return "—" if nbytes is None else f"{nbytes / 2**20:.0f} MiB"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (also readable as plain text on a terminal)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str, doc: Path = DOC) -> None:
    """Replace (or append) the section between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``.

    Everything outside the markers (the introduction and the hand-written
    analysis) is kept, so the two scripts can each refresh their own part.
    """
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        marker = "\n## Analysis"
        at = text.find(marker)
        text = (
            text.rstrip() + "\n\n" + block + "\n"
            if at < 0
            else text[:at].rstrip() + "\n\n" + block + "\n" + text[at:]
        )
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
