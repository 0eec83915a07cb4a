"""Sweeps: the summary and its plots, failure isolation, resume, launchers and glob sweeps."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONF, ROOT, ZOO
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

import modelfactory as mf
from modelfactory import cli
from modelfactory.app import sweep as sweep_app
from modelfactory.app.summary import (
    UNFINISHED,
    collect_jobs,
    config_digest,
    incomplete_reason,
    write_summary,
)
from modelfactory.tables import parameter_stats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = {
    "input": {"shape": [2, 4]},
    "network": [{"type": "Linear", "in_features": 4, "out_features": 3}],
}
# A huge input passes validation (with the budget raised) and the meta dry run, then
# fails to allocate:
# a genuine out-of-memory error, instantly.
OOM_INPUT = "[100000000000,4]"


def run_sweep(*overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "print_model=false", *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def read_csv(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def fake_job(job_dir: Path, *, digest: str = "sha256:x", **metrics) -> Path:
    """A job directory as the app leaves it: checkpoint, metrics.json and .hydra/overrides.yaml."""
    job_dir.mkdir(parents=True)
    model = mf.build(SMALL, seed=0)
    mf.save(model, job_dir / "model.safetensors")
    data = {
        "status": "ok",
        "model": "small",
        "device": "cpu",
        "output": {"shape": [2, 3], "mean": 0.1, "std": 0.5, "min": -1.0, "max": 1.0},
        "parameters": {"total": 15, "unique": 15},
        "timings": {"build_s": 0.01, "forward_s": 0.002},
        "activations": [{"module": "0", "call": 1, "std": 0.5}],
        "weights": parameter_stats(model),
        "config_sha256": digest,
        **metrics,
    }
    (job_dir / "metrics.json").write_text(json.dumps(data))
    (job_dir / ".hydra").mkdir()
    (job_dir / ".hydra" / "overrides.yaml").write_text(f"- seed={job_dir.name}\n")
    return job_dir


# --- complete jobs (resume) -------------------------------------------------------


def test_config_digest_ignores_resume_and_printing_but_not_the_config():
    base = {
        "model": {"name": "a"},
        "seed": 0,
        "device": "cpu",
        "resume": False,
        "print_model": True,
    }
    assert config_digest(base) == config_digest({**base, "resume": True, "print_model": False})
    assert config_digest(base) != config_digest({**base, "seed": 1})


def test_a_finished_job_is_complete(tmp_path):
    job = fake_job(tmp_path / "0", digest="sha256:abc")
    assert incomplete_reason(job, "sha256:abc") is None


def _no_metrics(job: Path) -> None:
    (job / "metrics.json").unlink()


def _cut_metrics(job: Path) -> None:
    text = (job / "metrics.json").read_text()
    (job / "metrics.json").write_text(text[: len(text) // 2])


def _failed(job: Path) -> None:
    (job / "metrics.json").write_text(
        json.dumps({"status": "failed", "config_sha256": "sha256:abc"})
    )


def _no_checkpoint(job: Path) -> None:
    (job / "model.safetensors").unlink()


def _cut_checkpoint(job: Path) -> None:
    (job / "model.safetensors").write_bytes(b"\x10\x00")


@pytest.mark.parametrize(
    ("damage", "digest", "reason"),
    [
        pytest.param(_no_metrics, "sha256:abc", "no metrics.json", id="no-metrics"),
        pytest.param(_cut_metrics, "sha256:abc", "metrics.json is unreadable", id="cut-metrics"),
        pytest.param(_failed, "sha256:abc", "status 'failed'", id="failed"),
        pytest.param(None, "sha256:other", "different config", id="other-config"),
        pytest.param(_no_checkpoint, "sha256:abc", "no checkpoint at", id="no-checkpoint"),
        pytest.param(_cut_checkpoint, "sha256:abc", "not a readable safetensors", id="cut-ckpt"),
    ],
)
def test_an_unfinished_or_different_job_is_not_complete(tmp_path, damage, digest, reason):
    job = fake_job(tmp_path / "0", digest="sha256:abc")
    if damage:
        damage(job)
    assert reason in incomplete_reason(job, digest)


# --- reading a sweep directory ------------------------------------------------------


def test_jobs_are_found_in_order_and_unfinished_ones_count_as_failed(tmp_path):
    for name in ("2", "10"):
        fake_job(tmp_path / name)
    killed = tmp_path / "3" / ".hydra"  # Hydra wrote its files, then the job was killed
    killed.mkdir(parents=True)
    (killed / "overrides.yaml").write_text("- seed=3\n")
    cut = fake_job(tmp_path / "4")
    _cut_metrics(cut)
    fake_job(tmp_path / ".submitit" / "123")  # launcher bookkeeping, not a job

    jobs = collect_jobs(tmp_path)
    assert [j.path.name for j in jobs] == ["2", "3", "4", "10"]
    assert [j.status for j in jobs] == ["ok", "failed", "failed", "ok"]
    assert jobs[1].error == UNFINISHED and jobs[1].overrides == ["seed=3"]
    assert "metrics.json is unreadable" in jobs[2].error


def test_summary_files_hold_one_row_per_job(tmp_path):
    fake_job(tmp_path / "0", overrides=["model=small", "seed=0"])
    fake_job(
        tmp_path / "1",
        status="failed",
        error="model.network[0]: bad | value\nsecond line",
        overrides=["model=small", "seed=1"],
    )
    summary = write_summary(tmp_path)

    assert [p.name for p in summary.files] == [
        "summary.csv",
        "summary.md",
        "activations.png",
        "weights.png",
    ]
    rows = read_csv(tmp_path)
    assert [(r["job"], r["overrides"], r["status"]) for r in rows] == [
        ("0", "model=small seed=0", "ok"),
        ("1", "model=small seed=1", "failed"),
    ]
    assert rows[0]["params_unique"] == "15" and rows[0]["output_shape"] == "2x3"
    assert rows[0]["checkpoint"] == "0/model.safetensors" and rows[1]["checkpoint"] == ""
    assert rows[1]["error"] == "model.network[0]: bad | value\nsecond line"
    md = (tmp_path / "summary.md").read_text()
    assert "2 jobs: 1 ok, 1 failed." in md
    assert "bad \\| value<br>second line" in md  # the table survives pipes and newlines
    for png in summary.files[2:]:
        assert png.read_bytes().startswith(PNG_MAGIC)
    assert "failed: 1 (model=small seed=1): model.network[0]: bad | value second line" in (
        summary.report()
    )


def test_parameter_stats_list_a_tied_parameter_once():
    model = mf.build(ROOT / "conf" / "model" / "shared.yaml", seed=0)
    names = [row["name"] for row in parameter_stats(model)]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "6.weight", "6.bias"]
    weight = next(r for r in parameter_stats(model) if r["name"] == "0.weight")
    assert weight["std"] == pytest.approx(model[0].weight.std().item())


def test_summarize_command_rewrites_the_summary(tmp_path, capsys):
    fake_job(tmp_path / "0")
    assert cli.main(["summarize", str(tmp_path)]) == 0
    assert "1 jobs, 1 ok, 0 failed" in capsys.readouterr().out
    assert read_csv(tmp_path)[0]["status"] == "ok"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p / "missing", "is not a directory", id="missing"),
        pytest.param(lambda p: p, "no job directories under", id="empty"),
    ],
)
def test_summarize_command_rejects_a_directory_without_jobs(tmp_path, capsys, make, message):
    assert cli.main(["summarize", str(make(tmp_path))]) == 1
    assert message in capsys.readouterr().err


# --- whole sweeps through run.py ------------------------------------------------------

BAD_AND_GOOD = ("model=param_net,shared", "model.network.0.out_features=-1,8")


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """Four jobs with the basic launcher; the first (and third) fail validation."""
    sweep_dir = tmp_path_factory.mktemp("basic")
    proc = run_sweep(*BAD_AND_GOOD, f"hydra.sweep.dir={sweep_dir}")
    return sweep_dir, proc


def test_basic_launcher_runs_every_job_despite_failures(basic_sweep):
    sweep_dir, proc = basic_sweep
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr  # bad configs are reported, not raised
    rows = read_csv(sweep_dir)
    assert [r["status"] for r in rows] == ["failed", "ok", "failed", "ok"]
    assert "must be a positive size (found -1)" in rows[0]["error"]
    assert "2 ok, 2 failed" in proc.stderr
    failed = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert failed["status"] == "failed" and failed["error_type"] == "SpecError"
    for row in rows[1::2]:
        model = mf.load(sweep_dir / row["checkpoint"])
        assert isinstance(model, torch.nn.Module)
    for name in ("summary.md", "activations.png", "weights.png"):
        assert (sweep_dir / name).is_file()


def test_resume_skips_complete_jobs_and_reruns_the_rest(basic_sweep, tmp_path):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(basic_sweep[0], sweep_dir)
    (sweep_dir / "3" / "model.safetensors").unlink()  # a job cut off before its checkpoint
    kept = [sweep_dir / "1" / name for name in ("model.safetensors", "metrics.json")]
    before = [p.stat().st_mtime_ns for p in kept]
    failed_before = (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns

    proc = run_sweep(*BAD_AND_GOOD, f"hydra.sweep.dir={sweep_dir}", "resume=true")

    assert proc.returncode == 1  # the bad configs fail again
    assert [p.stat().st_mtime_ns for p in kept] == before  # job 1 was not rebuilt
    assert "is complete; skipped" in proc.stdout
    assert (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns != failed_before
    assert (sweep_dir / "3" / "model.safetensors").is_file()  # the partial job ran again
    assert [r["status"] for r in read_csv(sweep_dir)] == ["failed", "ok", "failed", "ok"]


def test_joblib_preset_isolates_an_out_of_memory_job(tmp_path):
    proc = run_sweep(
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "model=param_net,shared",
        f"model.input.shape=[2,4],{OOM_INPUT}",
        "max_parameters=1000000000000",  # let the input past the size limit, to the allocator
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 1, proc.stderr
    assert "Joblib.Parallel" in proc.stdout + proc.stderr  # the joblib launcher ran the jobs
    rows = read_csv(tmp_path)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok", "failed"]
    assert all("can't allocate memory" in r["error"] for r in rows[1::2])


def test_submitit_local_launcher_reports_failures(tmp_path):
    proc = run_sweep(
        "hydra/launcher=submitit_local",
        "model=param_net",
        "model.network.0.out_features=-1,8",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 1, proc.stderr
    assert (tmp_path / ".submitit").is_dir()  # submitit ran the jobs
    assert [r["status"] for r in read_csv(tmp_path)] == ["failed", "ok"]


def test_glob_sweeps_every_zoo_model(tmp_path):
    proc = run_sweep("model=glob(*,exclude=big_mlp)", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(tmp_path)
    assert sorted(r["model"] for r in rows) == sorted(set(ZOO) - {"big_mlp"})
    assert {r["status"] for r in rows} == {"ok"}


def test_a_joblib_worker_killed_by_the_os_still_gets_a_summary(tmp_path):
    # The OS kills the worker of seed=13 (SIGKILL, as the OOM killer does): joblib then
    # aborts the sweep and on_multirun_end never runs, so the summary is written at exit.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "-m",
            "print_model=false",
            "hydra/launcher=parallel",
            "hydra.launcher.n_jobs=2",
            "model=param_net",
            "seed=0,13",
            "+hydra.callbacks.killer._target_=sweep_killer.KillSeed13",
            f"hydra.sweep.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "TerminatedWorkerError" in proc.stderr
    killed = next(r for r in read_csv(tmp_path) if "seed=13" in r["overrides"])
    assert (killed["status"], killed["error"]) == ("failed", UNFINISHED)


# --- the per-job guard, in process ------------------------------------------------------


@pytest.fixture
def hydra_job(tmp_path):
    """Set up HydraConfig as a launcher does for one job writing to ``tmp_path``."""

    def setup(*overrides: str, multirun: bool = True):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path)
            cfg.hydra.mode = RunMode.MULTIRUN if multirun else RunMode.RUN
            HydraConfig.instance().set_config(cfg)
            del cfg["hydra"]  # a job sees its config without the hydra node
        return cfg

    yield setup
    HydraConfig.instance().cfg = None


def test_guard_records_an_unexpected_error_and_lets_the_sweep_go_on(
    hydra_job, tmp_path, monkeypatch
):
    cfg = hydra_job("model=param_net")

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr("modelfactory.app.job.run_job", boom)
    assert sweep_app.run_guarded(cfg) is None
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "failed"
    assert record["error"] == "RuntimeError: CUDA out of memory"
    assert record["config_sha256"] == config_digest(OmegaConf.to_container(cfg, resolve=True))


def test_guard_reraises_in_a_single_run(hydra_job, tmp_path):
    cfg = hydra_job("model=param_net", "model.network.0.out_features=-1", multirun=False)
    with pytest.raises(mf.ModelFactoryError, match="must be a positive size"):
        sweep_app.run_guarded(cfg)
    assert json.loads((tmp_path / "metrics.json").read_text())["error_type"] == "SpecError"


def test_guard_removes_an_earlier_result_before_running(hydra_job, tmp_path, monkeypatch):
    cfg = hydra_job("model=param_net")
    (tmp_path / "metrics.json").write_text('{"status": "ok"}')  # from an earlier sweep

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # the job stops without recording anything

    monkeypatch.setattr("modelfactory.app.job.run_job", dies)
    with pytest.raises(KeyboardInterrupt):
        sweep_app.run_guarded(cfg)
    assert not (tmp_path / "metrics.json").exists()


def test_init_glob_sweeps_every_init_scheme_and_isolates_the_unmatched_rule(tmp_path):
    proc = run_sweep("model=param_net,rgnet", "init=glob(*)", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 1  # one job fails ...
    rows = read_csv(tmp_path)
    schemes = {p.stem for p in (CONF / "init").glob("*.yaml")}
    assert len(rows) == 2 * len(schemes)  # ... and every other one still ran
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["overrides"] for r in failed] == ["print_model=False model=rgnet init=mixed"]
    assert (
        "init rule constant(val=42.0) on module='2' param='weight' matched no parameter"
        in failed[0]["error"]
    )
