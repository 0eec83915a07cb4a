"""The ``modelfactory`` command: ``run`` (the Hydra app), ``ls``, ``--version``, and the installed package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, ZOO

import modelfactory as mf
from modelfactory.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"modelfactory {mf.__version__} (torch {torch.__version__}, Python ")


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "give a command" in capsys.readouterr().err


def test_ls_models_lists_the_zoo_with_descriptions(capsys):
    assert main(["ls", "models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines if line and not line.startswith("build one")]
    assert names == ZOO == mf.list_models()
    assert any(line.startswith("resnet18") and "torchvision" in line for line in lines)


def test_ls_layers_shows_arguments_constraints_and_inferred_sizes(capsys):
    assert main(["ls", "layers", "linear"]) == 0
    out = capsys.readouterr().out
    assert (
        "Linear(in_features: int (>0, inferred), out_features: int (>0), bias: bool = True)" in out
    )
    assert "MyLinear(in_units: int (>0, inferred), units: int (>0))" in out
    assert main(["ls", "layers", "*Norm2d"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("BatchNorm2d(num_features: int (>0, inferred), eps: float = 1e-05")
    assert main(["ls", "layers", "TransformerEncoder"]) == 0
    out = capsys.readouterr().out
    assert "TransformerEncoder(encoder_layer: LayerNode, num_layers: int (>=0)" in out
    assert " at 0x" not in out  # callable defaults by name


def test_ls_ops_and_inits(capsys):
    assert main(["ls", "ops"]) == 0
    out = capsys.readouterr().out
    assert "concat(*tensors; dim: int = 1)" in out and "matmul(x, y)" in out
    assert "halve_while_abs_sum_gt(x; threshold: float = 1.0)" in out
    assert main(["ls", "inits"]) == 0
    out = capsys.readouterr().out
    assert "  xavier_uniform(gain: float = 1.0)" in out
    assert "  constant(val: float)" in out
    assert "presets (init=NAME" in out
    mixed = next(line for line in out.splitlines() if line.strip().startswith("mixed "))
    assert "[only for: mlp, mlp_b64, param_net, shared, big_mlp]" in mixed
    assert mf.list_inits() == sorted(p.stem for p in (ROOT / "conf" / "init").glob("*.yaml"))


def test_ls_includes_plugin_layers(capsys, tmp_path, monkeypatch, registrations):
    (tmp_path / "lsplug.py").write_text(
        "import modelfactory as mf\nfrom torch import nn\n\n"
        "@mf.register_layer\nclass Twice(nn.Module):\n"
        "    def __init__(self, factor: float = 2.0):\n        super().__init__()\n"
        "    def forward(self, x):\n        return 2 * x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["ls", "layers", "twice", "--plugin", "lsplug"]) == 0
    assert "Twice(factor: float = 2.0)" in capsys.readouterr().out


def _run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in (env or os.environ).items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "modelfactory", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_modelfactory_run_works_from_any_directory(tmp_path):
    proc = _run("run", "model=param_net", "init=xavier", "seed=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "outputs").glob("*/*")  # Hydra's run dir, under the cwd
    assert {"model.safetensors", "metrics.json", "architecture.yaml", "run.log"} <= {
        p.name for p in run_dir.iterdir()
    }
    again = mf.build("param_net", init="xavier", seed=2)
    torch.testing.assert_close(
        mf.load(run_dir / "model.safetensors").state_dict(), again.state_dict()
    )


def test_modelfactory_run_help_is_hydras_without_the_block_group(tmp_path):
    proc = _run("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "model: big_mlp, centered" in proc.stdout and "init: constant" in proc.stdout
    assert "\nblock:" not in proc.stdout  # library blocks are not a group one selects
    assert "resnet18           ResNet-18" in proc.stdout


def test_modelfactory_run_reports_a_bad_config_without_traceback(tmp_path):
    proc = _run("run", "model=resnet19", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "resnet18" in proc.stderr  # Hydra lists the options


def test_the_installed_package_carries_the_zoo(tmp_path):
    """Build the wheel from a copy of the sources, install it, run it away from any clone."""
    source = tmp_path / "src-copy"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build a wheel here: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("*.whl")
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    assert (target / "modelfactory" / "conf" / "model" / "resnet18.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import modelfactory as mf, sys; m = mf.build('rgnet', init='xavier'); "
        "assert mf.__file__.startswith(sys.argv[1]), mf.__file__; "
        "print(len(mf.list_models()), type(m).__name__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(len(ZOO)), "Sequential"]
    script = target / "bin" / "modelfactory"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "modelfactory"]
    proc = subprocess.run(
        [*command, "run", "model=rgnet", "print_model=none"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert list((elsewhere / "outputs").glob("*/*/model.safetensors"))


def test_an_unknown_layer_without_a_close_match_says_how_to_add_one():
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.validate({"input": {"shape": [2, 4]}, "network": [{"type": "Frobnicate"}]})
    message = info.value.problems[0].message
    assert "`modelfactory ls layers` lists them" in message
    assert "plugins=[mypkg.layers] (run.py), --plugin mypkg.layers" in message
