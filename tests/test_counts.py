"""One definition of each count, the same in check/validate, the built model, inspect and the summary."""

from __future__ import annotations

import pytest
from conftest import CONF, ZOO

import modelfactory as mf
from modelfactory.cli import main
from modelfactory.tables import format_counts, parameter_counts


@pytest.mark.parametrize("name", [n for n in ZOO if n != "big_mlp"])
def test_check_counts_equal_the_built_models(name):
    assert mf.check(name).counts == parameter_counts(mf.build(name))


def test_big_mlp_is_counted_without_building():
    counts = mf.check("big_mlp").counts
    assert counts["unique"] == counts["total"] == 8 * (4096 * 4096 + 4096)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("chimera", "4,712 parameters; 400 buffer elements"),
        ("resnet18", "11,689,512 parameters; 9,620 buffer elements"),
        ("tied_lm", "4,356 parameters (7,556 counting every name: 3,200 tied); no buffers"),
        ("shared", "121 parameters (193 counting every name: 72 in shared modules); no buffers"),
    ],
)
def test_the_issues_models_count_the_same_everywhere(name, line, capsys, tmp_path):
    assert format_counts(mf.check(name).counts) == line
    assert main(["validate", str(CONF / "model" / f"{name}.yaml")]) == 0
    assert f"({name}: {line}; shapes checked" in capsys.readouterr().out
    mf.save(mf.build(name), tmp_path / "m.safetensors")
    assert main(["inspect", str(tmp_path / "m.safetensors")]) == 0
    assert f"counts: {line}" in capsys.readouterr().out


def test_inferred_sizes_and_ties_are_counted_as_built():
    spec = {
        "input": {"shape": [2, 5], "dist": "randint", "high": 10},
        "network": [
            {"type": "Embedding", "num_embeddings": 10, "embedding_dim": 6},
            {
                "type": "Linear",
                "out_features": 6,
            },  # in_features inferred (a stand-in on the dry run)
            {"type": "Linear", "out_features": 10, "bias": False},
        ],
        "ties": {"2.weight": "0.weight"},
    }
    spec["network"][2]["in_features"] = 6
    counts = mf.check(spec).counts
    assert counts == parameter_counts(mf.build(spec))
    assert counts["tied"] == 60 and counts["unique"] == 60 + 42
