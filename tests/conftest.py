"""Shared fixtures: paths, and skipping CUDA-marked tests cleanly without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
ZOO = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none available)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def zoo_path():
    """Path of a zoo model file by name."""
    return lambda name: CONF / "model" / f"{name}.yaml"


@pytest.fixture
def registrations():
    """Let a test register layers, ops and init schemes; every name it adds is removed after it."""
    from modelfactory.registry import INITS, LAYERS, OPS

    before = {registry: set(registry.names()) for registry in (LAYERS, OPS, INITS)}
    yield
    for registry, names in before.items():
        for name in set(registry.names()) - names:
            registry.remove(name)


def torchrun(nproc: int, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone`` from this venv (a free port each time)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(nproc), *args]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=240
    )
