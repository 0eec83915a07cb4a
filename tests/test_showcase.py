"""Every fenced command and snippet of the README and docs/ runs as shown (or a documented equivalent).

Each document gets a fresh working directory holding a copy of ``conf/`` and
``run.py``; its ``bash`` and ``python`` blocks run there in order, with
``python`` and ``modelfactory`` on the PATH meaning this interpreter and this
source tree. A ``yaml`` block whose first line names a file (``# my_net.yaml``)
is written to that file first. A command that is not run as shown is listed
below with the reason and where it is covered, or with the tiny equivalent that
runs instead; a new command that fails and is not listed fails this test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
FILE_COMMENT = re.compile(r"^#\s*(\S+\.ya?ml)\b")

SETUP = "set-up: creates a virtual environment and installs torch from the network; .ci/run runs the test command step by step"
# command as written -> why it is not run here, and where it is covered
NOT_RUN = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e . && python run.py": SETUP,
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e '.[dev]' && python -m pytest -q": SETUP,
    "python run.py -m model=param_net,rgnet init='glob(*)'": "tests/test_sweep.py::test_init_glob_sweep_skips_a_preset_written_for_other_models runs exactly this sweep",
    "python benchmarks/run.py": "a full benchmark run (tens of minutes, rewrites docs/benchmarks.md); tests/test_benchmarks.py runs its --quick smoke run",
    "python benchmarks/run.py --quick": "tests/test_benchmarks.py::test_run_quick_prints_every_section_and_the_target_table",
    "python benchmarks/build.py": "rewrites docs/benchmarks.md; tests/test_benchmarks.py::test_build_quick_prints_ratios_against_the_floor runs its --quick form",
    "python benchmarks/build.py --device cuda": "tests/test_benchmarks.py::test_build_cuda_skips_cleanly_without_cuda (and scripts/gpu_checks.sh on a GPU)",
    "torchrun --nproc_per_node 8 run.py model=big_mlp parallel=fsdp device=cuda hydra.run.dir=outputs/big_mlp_fsdp": "needs 8 GPUs; the NCCL path is tests/test_cuda.py's, the same logic on gloo tests/test_sharded_dist.py's",
    "torchrun --nproc_per_node 2 run.py model=big_mlp parallel=fsdp device=cpu hydra.run.dir=outputs/big_mlp_fsdp": "tests/test_sharded_dist.py::test_run_py_parallel_fsdp_under_torchrun runs run.py parallel=fsdp under torchrun on 2 CPU processes (a smaller model)",
}
# command as written -> the tiny equivalent run instead (same path, CPU, fewer jobs)
TINY = {
    "python run.py -m hydra/launcher=slurm hydra.launcher.partition=gpu hydra.launcher.timeout_min=30 "
    "hydra.launcher.gpus_per_task=1 hydra.launcher.mem_gb=32 hydra.sweep.dir=multirun/init-cmp "
    "model=param_net,rgnet init='glob(*)' device=cuda": (
        "python run.py -m hydra/launcher=submitit_local hydra.launcher.timeout_min=30 "
        "hydra.sweep.dir=multirun/init-cmp model=param_net init=xavier,mixed device=cpu"
    ),
}


def _commands(body: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", "", body)
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")
    ]


def _strip_comment(command: str) -> str:
    """The command without a trailing ``# comment`` (outside quotes)."""
    quote = None
    for index, char in enumerate(command):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (index == 0 or command[index - 1] == " "):
            return command[:index].rstrip()
    return command


def steps(doc: Path) -> list[tuple[str, str]]:
    """(kind, text) in document order: ``file`` (yaml with a name), ``bash`` commands, ``python``."""
    out = []
    for match in FENCE.finditer(doc.read_text()):
        kind, body = match.group(1), match.group(2)
        if kind == "yaml":
            named = FILE_COMMENT.match(body)
            if named:
                out.append(("file", f"{named.group(1)}\n{body}"))
        elif kind == "bash":
            out += [("bash", _strip_comment(c)) for c in _commands(body)]
        elif kind == "python":
            out.append(("python", body))
    return out


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "work"
    shutil.copytree(ROOT / "conf", work / "conf")  # a copy: nothing here writes into the zoo
    shutil.copy(ROOT / "run.py", work / "run.py")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # scripts, not links: a link to a virtual environment's python loses the environment
    for name, line in (
        ("python", f'exec "{sys.executable}" "$@"'),
        ("python3", f'exec "{sys.executable}" "$@"'),
        ("modelfactory", f'exec "{sys.executable}" -m modelfactory "$@"'),
    ):
        (bin_dir / name).write_text(f"#!/bin/sh\n{line}\n")
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT / "src")
    env["MPLBACKEND"] = "Agg"
    return work, env


def _run(argv: list[str], work: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("doc", [d for d in DOCS if steps(d)], ids=lambda d: d.name)
def test_every_command_and_snippet_runs(doc, sandbox):
    work, env = sandbox
    for kind, text in steps(doc):
        if kind == "file":
            name, body = text.split("\n", 1)
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(body)
            continue
        if kind == "python":
            (work / "snippet.py").write_text(text)
            proc = _run([sys.executable, "snippet.py"], work, env)
            assert proc.returncode == 0, (
                f"{doc.name}: python snippet failed:\n{text}\n{proc.stderr[-3000:]}"
            )
            continue
        if text in NOT_RUN:
            continue
        command = TINY.get(text, text)
        proc = _run(["bash", "-c", command], work, env)
        assert proc.returncode == 0, (
            f"{doc.name}: `{command}` exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
        assert "Traceback" not in proc.stdout + proc.stderr, command


def test_the_exceptions_are_still_in_the_docs():
    """A command listed above that left the docs must leave the lists too."""
    written = {text for doc in DOCS for kind, text in steps(doc) if kind == "bash"}
    assert set(NOT_RUN) <= written
    assert set(TINY) <= written


def test_the_readme_sample_output_is_what_the_command_prints(sandbox):
    work, env = sandbox
    text = (ROOT / "README.md").read_text()
    blocks = [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    net = next(body for kind, body in blocks if kind == "yaml" and body.startswith("# my_net.yaml"))
    sample = next(
        body for kind, body in blocks if kind == "text" and body.startswith("model my_net")
    )
    (work / "my_net.yaml").write_text(net)
    proc = _run([sys.executable, "run.py", "model_file=my_net.yaml"], work, env)
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.splitlines()
    for got, want in zip(printed, sample.splitlines(), strict=True):
        if want.startswith("output:"):  # the values depend on the CPU's arithmetic
            assert got.split(",")[0] == want.split(",")[0]
        elif not want.startswith("wrote "):
            assert got == want
    # and the mistake the README shows is the one a misspelt layer gives
    (work / "my_net.yaml").write_text(net.replace("  - ReLU", "  - Relu"))
    proc = _run([sys.executable, "-m", "modelfactory", "validate", "my_net.yaml"], work, env)
    quoted = re.search(r"`(network\[1\]: unknown layer type 'Relu'[^`]*)`", text).group(1)
    assert proc.returncode == 1 and quoted in proc.stderr
