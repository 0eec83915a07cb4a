"""``python run.py``: outputs in the run directory, and clean failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT

import modelfactory as mf


def run_app(*overrides: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *overrides],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=300,
    )


def test_run_writes_checkpoint_architecture_and_metrics(tmp_path):
    proc = run_app("model=shared", "seed=3", "print_model=full", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert "Sequential(" in proc.stdout
    assert (
        "shared module: same as 2.weight" in proc.stdout
    )  # the parameter table marks the shared layer
    assert "output: shape (2, 1)" in proc.stdout

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["output"]["shape"] == [2, 1]
    assert metrics["device"] == "cpu"
    assert metrics["seed"] == 3
    assert metrics["parameters"]["unique"] == 121  # 8*4+8 + 8*8+8 + 8+1
    assert metrics["parameters"]["total"] == 121 + 72
    assert metrics["parameters"]["shared"] == 72 and metrics["parameters"]["buffers"] == 0
    assert set(metrics["timings"]) >= {"build_s", "forward_s", "save_s"}
    assert [a["module"] for a in metrics["activations"]][:3] == ["0", "1", "2"]

    arch = yaml.safe_load((tmp_path / "architecture.yaml").read_text())
    assert mf.validate(arch).shared["shared"].type == "Linear"

    reloaded = mf.load(tmp_path / "model.safetensors")
    assert reloaded[2] is reloaded[4]
    x = torch.rand(2, 4)
    again = mf.build(arch, seed=3)
    torch.testing.assert_close(reloaded(x), again(x))


def test_bad_config_exits_nonzero_with_message_and_no_traceback(tmp_path):
    proc = run_app("model=mlp", "model.network.0.out_features=-5", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert (
        "model.network[0].out_features: invalid value for Linear argument 'out_features': must be a positive size (found -5)"
        in proc.stderr
    )
    assert "conf/model/mlp.yaml:5:" in proc.stderr


def test_unavailable_device_exits_cleanly(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    proc = run_app("device=cuda:0", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "device: 'cuda:0' is not available" in proc.stderr
    assert "device=auto" in proc.stderr


def test_hydra_cfg_job_and_help_still_work():
    proc = run_app("--cfg", "job")
    assert proc.returncode == 0 and "network:" in proc.stdout
    proc = run_app("--help")
    assert proc.returncode == 0 and "model: " in proc.stdout


def test_init_group_applies_and_report_is_saved(tmp_path):
    proc = run_app("model=param_net", "init=mixed", "print_model=full", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert "init report" in proc.stdout
    report = {row["param"]: row for row in json.loads((tmp_path / "init_report.json").read_text())}
    assert report["0.weight"]["scheme"] == "xavier_uniform"
    assert report["2.weight"] == {
        "param": "2.weight",
        "aliases": [],
        "shape": [1, 8],
        "rule": "init.rules[1]",
        "scheme": "constant",
        "args": {"val": 42.0},
    }
    assert report["0.bias"]["rule"] == "default"
    model = mf.load(tmp_path / "model.safetensors")
    assert torch.all(model[2].weight == 42)


def test_an_init_preset_for_other_models_is_refused_up_front(tmp_path):
    proc = run_app("model=rgnet", "init=mixed", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "init preset 'mixed' is written for the models mlp, mlp_b64, param_net" in proc.stderr
    assert "'rgnet' is not one of them" in proc.stderr
    assert not (tmp_path / "model.safetensors").exists()  # nothing was built


def test_unmatched_init_rule_fails_without_traceback(tmp_path):
    nameless = tmp_path / "net.yaml"  # no name: the preset's models: list cannot apply
    nameless.write_text(
        "input: {shape: [2, 4]}\nnetwork: [{type: Linear, in_features: 4, out_features: 1}]\n"
    )
    proc = run_app(f"model_file={nameless}", "init=mixed", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert (
        "init.rules[1]: init rule constant(val=42.0) on module='2' param='weight' matched no parameter"
        in proc.stderr
    )


def test_model_file_run_is_labelled_by_its_file(tmp_path):
    theirs = tmp_path / "their_net.yaml"
    theirs.write_text(
        "input: {shape: [2, 4]}\nnetwork: [{type: Linear, in_features: 4, out_features: 2}]\n"
    )
    proc = run_app(f"model_file={theirs}", f"hydra.run.dir={tmp_path / 'run'}", "print_model=false")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"] == "their_net"
    assert metrics["output"]["shape"] == [2, 2]
