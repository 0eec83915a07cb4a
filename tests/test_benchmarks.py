"""Smoke test of the benchmarks: they run, exit 0 and print their ratio tables.

No timing is asserted (speed is measured in benchmarks/, never in tests).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--no-write", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_run_quick_prints_every_section_and_the_target_table():
    proc = run_benchmark("run.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for title in (
        "### 1. Config overhead",
        "### 2. Scaling",
        "### 3. Big model build + init",
        "### 4. Checkpoints",
        "### 5. Start-up",
        "### Summary: ratios and targets",
    ):
        assert title in out
    assert "| comparison | measured | target | met |" in out
    assert "| 1. mf.build(dict) / hand |" in out and "<= 1.5x" in out
    assert "| 4. mf.save throughput / torch.save |" in out and ">= 0.9x" in out
    assert "<= +0.5 s" in out
    assert "MiB" in out  # at least one peak-memory measurement came back


def test_build_quick_prints_ratios_against_the_floor():
    proc = run_benchmark("build.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| comparison | ratio | target | met |" in proc.stdout
    assert "| mf default build / floor |" in proc.stdout
    assert "floor: one uniform_ fill" in proc.stdout


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="tests the no-CUDA message")
def test_build_cuda_skips_cleanly_without_cuda():
    proc = run_benchmark("build.py", "--device", "cuda")
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and "CUDA is not available" in proc.stdout


def test_sharded_quick_prints_the_memory_per_rank_table():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sharded.py"), "--quick", "--no-write"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| run | malloc | rank | parameters held | peak RSS after build |" in proc.stdout
    assert proc.stdout.count("| build_sharded, world size 2 |") == 2  # one row per rank
