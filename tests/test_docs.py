"""Every YAML example in the docs validates, and every whole model in them builds and runs."""

from __future__ import annotations

import re
import shutil

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
def test_yaml_example_validates_and_builds(text, tmp_path):
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    if "defaults" in data:  # composed from other models: read from a model/ directory
        shutil.copytree(ROOT / "conf", tmp_path / "conf")
        path = tmp_path / "conf" / "model" / "doc_example.yaml"
        path.write_text(text)
        data = path
    if (
        isinstance(data, dict) and "rules" in data
    ):  # an init config: apply it to the text's param_net
        model = mf.build(ROOT / "conf" / "model" / "param_net.yaml", init=data)
        assert model.modelfactory_info.init_report
        return
    spec = mf.validate(data)
    model = mf.build(spec)
    out = model(make_input(spec.input, seed=0))
    outs = out if isinstance(out, tuple) else (out,)
    assert all(torch.isfinite(o).all() for o in outs)


def _forward_ops(node) -> set[str]:
    """Names of the ops a model file's composites use (``{op: x}`` steps and bare op names)."""
    from modelfactory.registry import OPS

    found: set[str] = set()
    if isinstance(node, dict):
        for step in node.get("forward") or ():
            if isinstance(step, dict) and "op" in step:
                found.add(step["op"])
            elif isinstance(step, str) and step in OPS:
                found.add(step)
        for value in node.values():
            found |= _forward_ops(value)
    elif isinstance(node, list):
        for item in node:
            found |= _forward_ops(item)
    return found


def test_every_builtin_op_is_documented_with_an_example():
    """docs/language.md lists every built-in op with its arguments, and uses each in an
    example model file (which test_yaml_example_validates_and_builds builds and runs)."""
    from modelfactory.registry import OPS

    text = (ROOT / "docs" / "language.md").read_text()
    builtin = [
        n
        for n in OPS.names()
        if OPS.get(n).target.__module__.startswith("modelfactory.registry.ops.")
    ]
    used: set[str] = set()
    for match in FENCE.finditer(text):
        used |= _forward_ops(yaml.safe_load(match.group(1)))
    assert sorted(set(builtin) - used) == []
    table = text[
        text.index("## Ops") : text.index("## Recurrent, attention and transformer layers")
    ]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    for name in builtin:
        (row,) = [r for r in rows if f"`{name}`" in r.split("|")[1]]
        for argument in OPS.get(name).args_model.model_fields:
            assert f"`{argument}`" in row, (name, argument)


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
