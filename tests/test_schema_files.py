"""The JSON Schemas of model, block and init files: the shipped files pass, what the validator refuses fails."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from conftest import CONF

import modelfactory as mf
from modelfactory.cli import main
from modelfactory.spec.schema_files import schema_for

BLOCK_DIR, MODEL_DIR = CONF / "block", CONF / "model"


@pytest.fixture(scope="module")
def validators():
    return {
        kind: jsonschema.Draft202012Validator(
            schema_for(kind, block_dir=BLOCK_DIR, model_dir=MODEL_DIR)
        )
        for kind in ("model", "block", "init")
    }


def errors(validator, data) -> list[str]:
    return [e.message for e in validator.iter_errors(data)]


@pytest.mark.parametrize(
    ("kind", "path"),
    [("model", p) for p in sorted(MODEL_DIR.glob("*.yaml"))]
    + [("block", p) for p in sorted(BLOCK_DIR.glob("*.yaml"))]
    + [("init", p) for p in sorted((CONF / "init").glob("*.yaml"))],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_every_shipped_file_validates_against_its_schema(validators, kind, path):
    for validator in [validators[kind]]:
        jsonschema.Draft202012Validator.check_schema(validator.schema)
        assert errors(validator, yaml.safe_load(path.read_text())) == []


BASE = {"input": {"shape": [2, 4]}}
BLOCK = {"children": {"fc": {"type": "Linear", "in_features": 4, "out_features": 4}}}


@pytest.mark.parametrize(
    "data",
    [
        {**BASE, "network": ["Relu"]},  # a layer name in the wrong case
        {**BASE, "network": [{"type": "Relu"}]},
        {**BASE, "network": [{"type": "Linear", "in_features": 4, "out_features": -3}]},
        {**BASE, "network": [{"type": "Linear", "in_features": 4, "out_features": 0}]},
        {
            **BASE,
            "network": [
                {"type": "Conv2d", "in_channels": 4, "out_channels": 3, "kernel_size": [3, -1]}
            ],
        },
        {
            **BASE,
            "network": [{"type": "Conv2d", "out_channels": 3, "kernel_size": 3, "padding": -1}],
        },
        {
            **BASE,
            "network": [{"type": "Linear", "in_features": 4, "out_features": 2, "bais": False}],
        },
        {**BASE, "blocks": {"B": {**BLOCK, "forward": ["fc", {"op": "relU"}]}}, "network": ["B"]},
        {**BASE, "blocks": {"B": {**BLOCK, "forward": ["fc", "Relu"]}}, "network": ["B"]},
        {
            **BASE,
            "blocks": {"B": {**BLOCK, "forward": ["fc", {"op": "add_scalar"}]}},
            "network": ["B"],
        },
        {"input": {"shape": [-2, 4]}, "network": ["ReLU"]},
        {**BASE},  # no network, and no model to compose it from
    ],
)
def test_what_the_validator_refuses_the_model_schema_refuses(validators, data):
    assert errors(validators["model"], data)
    with pytest.raises(mf.ModelFactoryError):
        mf.check(data)


def test_a_valid_file_with_blocks_and_lowercase_children_passes(validators):
    data = {
        **BASE,
        "blocks": {"Res": {**BLOCK, "forward": ["fc", "relu", {"op": "add_scalar", "value": 1.0}]}},
        "network": ["Res", "ReLU", {"type": "Conv1d", "out_channels": 2, "kernel_size": 1}],
    }
    data["input"] = {"shape": [2, 4, 3]}
    data["blocks"]["Res"]["children"]["fc"]["in_features"] = 3
    data["blocks"]["Res"]["children"]["fc"]["out_features"] = 3
    assert errors(validators["model"], data) == []
    mf.check(data)


@pytest.mark.parametrize(
    "rules",
    [
        [{"scheme": "xavier_unifrom"}],
        [{"scheme": "constant"}],  # val is required
        [{"scheme": "normal", "mean": 0.0, "sdt": 1.0}],
        [{"scheme": "zeros", "type": "linear"}],
        [{"scheme": "zeros", "modul": "0"}],
    ],
)
def test_what_the_validator_refuses_the_init_schema_refuses(validators, rules):
    assert errors(validators["init"], {"name": "x", "rules": rules})
    with pytest.raises(mf.ModelFactoryError):
        mf.build("param_net", init=rules)


def test_block_schema_refuses_a_bad_block(validators):
    assert errors(validators["block"], [{"type": "Linear", "in_features": 4, "out_features": -1}])
    assert errors(validators["block"], {"repeat": 2, "names": "b{i}", "body": "Relu"})


@pytest.mark.parametrize("kind", ["model", "block", "init"])
def test_schema_command_prints_each_kind(kind, capsys):
    assert main(["schema", "--kind", kind]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == f"modelfactory {'model' if kind == 'model' else kind} file".replace(
        "block file", "library block file"
    )
