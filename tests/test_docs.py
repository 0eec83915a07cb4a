"""Every YAML example in the docs validates, and every whole model in them builds and runs."""

from __future__ import annotations

import re

import pytest
import torch
import yaml
from conftest import ROOT

import modelfactory as mf
from modelfactory.builder.forward import make_input

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```yaml\n(.*?)```", re.S)


def yaml_examples():
    for doc in DOCS:
        for index, match in enumerate(FENCE.finditer(doc.read_text())):
            yield pytest.param(match.group(1), id=f"{doc.name}#{index}")


EXAMPLES = list(yaml_examples())


def test_the_docs_have_examples():
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("text", EXAMPLES)
def test_yaml_example_validates_and_builds(text):
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    if "rules" in data:  # an init config: apply it to the text's param_net
        model = mf.build(ROOT / "conf" / "model" / "param_net.yaml", init=data)
        assert model.modelfactory_info.init_report
        return
    spec = mf.validate(data)
    model = mf.build(spec)
    out = model(make_input(spec.input, seed=0))
    outs = out if isinstance(out, tuple) else (out,)
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.fixture(scope="module")
def schema_validator():
    import jsonschema  # dev dependency

    from modelfactory.spec.schema import model_schema

    return jsonschema.Draft202012Validator(model_schema())


@pytest.mark.parametrize("text", EXAMPLES)
def test_yaml_example_matches_the_json_schema(text, schema_validator):
    data = yaml.safe_load(text)
    if "rules" in data:
        pytest.skip("an init config, not a model file")
    errors = [
        f"{list(e.absolute_path)}: {e.message[:200]}" for e in schema_validator.iter_errors(data)
    ]
    assert not errors, errors
