"""``modelfactory inspect FILE``: from the header only, safe to print, with clear exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import modelfactory as mf
from modelfactory.cli import main


@pytest.fixture
def shared_ckpt(zoo_path, tmp_path):
    return mf.save(mf.build(zoo_path("shared"), seed=3), tmp_path / "shared.safetensors")


def test_inspect_prints_architecture_tensors_and_metadata(shared_ckpt, capsys, monkeypatch):
    from modelfactory.builder import construct as construct_module

    real_construct = construct_module.construct

    def meta_only(spec, *, device, **kwargs):  # counting builds on meta: nothing allocated
        assert str(device) == "meta", "inspect must build on the meta device only"
        return real_construct(spec, device=device, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("inspect must not open tensor data")

    monkeypatch.setattr("modelfactory.builder.construct.construct", meta_only)
    monkeypatch.setattr("modelfactory.pipeline.construct", meta_only)
    monkeypatch.setattr("safetensors.safe_open", forbidden)
    monkeypatch.setattr("modelfactory.io.weights.safe_open", forbidden)
    assert main(["inspect", str(shared_ckpt)]) == 0
    out = capsys.readouterr().out
    assert "architecture:" in out and "out_features: 8" in out and "shared: shared" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line[:1].isdigit()}
    assert rows["0.weight"] == ["float32", "8x4", "32"]
    assert rows["2.weight"] == ["float32", "8x8", "64"]
    assert rows["4.weight"][:3] == ["float32", "8x8", "0"]
    assert "tied: stored as 2.weight" in " ".join(rows["4.weight"])
    assert "6 stored tensors, 121 elements, 484 bytes" in out
    # the one definition of the counts (as validate and run.py print them)
    assert (
        "counts: 121 parameters (193 counting every name: 72 in shared modules); no buffers" in out
    )
    assert "modelfactory.seed: 3" in out
    assert "modelfactory.fingerprint: sha256:" in out


def test_inspect_a_plain_safetensors_file(tmp_path, capsys):
    save_file({"w": torch.zeros(2, 3, dtype=torch.float16)}, str(tmp_path / "p.safetensors"))
    assert main(["inspect", str(tmp_path / "p.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "not a modelfactory model checkpoint" in out
    assert "w       float16  2x3        6" in out


def test_inspect_escapes_control_characters_from_the_file(tmp_path, capsys):
    save_file(
        {"w\x1b[31m": torch.zeros(1)},
        str(tmp_path / "p.safetensors"),
        metadata={"note": "\x1b[2Jcleared"},
    )
    assert main(["inspect", str(tmp_path / "p.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "note: \\x1b[2Jcleared" in out and "w\\x1b[31m" in out


@pytest.mark.parametrize(
    "argv", [pytest.param([], id="no-file"), pytest.param(["a", "b"], id="two-files")]
)
def test_inspect_usage_error_exits_2(argv, capsys):
    assert main(["inspect", *argv]) == 2
    assert "usage: modelfactory" in capsys.readouterr().err


def test_inspect_bad_file_exits_1(tmp_path, capsys):
    (tmp_path / "x.safetensors").write_bytes(b"garbage!" * 3)
    assert main(["inspect", str(tmp_path / "x.safetensors")]) == 1
    assert "error: 'x.safetensors'" in capsys.readouterr().err.replace(str(tmp_path) + "/", "")
    assert main(["inspect", str(tmp_path / "missing.safetensors")]) == 1


def test_python_m_modelfactory_inspect(shared_ckpt):
    proc = subprocess.run(
        [sys.executable, "-m", "modelfactory", "inspect", str(shared_ckpt)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "tied: stored as 2.weight" in proc.stdout
