"""Sharing tools: validate and schema commands, block libraries, plugins, limits, safe loading."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import CONF, ROOT
from hydra import compose, initialize_config_dir

import modelfactory as mf
from modelfactory import limits
from modelfactory.cli import main
from modelfactory.errors import SpecError
from modelfactory.registry import LAYERS
from modelfactory.registry.plugins import PluginError, load_plugins
from modelfactory.spec.schema import model_schema
from modelfactory.spec.validate import to_spec
from modelfactory.spec.yaml_reader import MAX_DEPTH, load_yaml_text

RGNET = CONF / "model" / "rgnet.yaml"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- validate command
def test_validate_all_zoo_files_exit_0(capsys):
    files = [str(p) for p in sorted((CONF / "model").glob("*.yaml"))]
    assert main(["validate", *files]) == 0
    out = capsys.readouterr().out
    assert out.count("ok: ") == len(files)
    assert "rgnet: 309 parameters" in out


def test_validate_reports_every_problem_located_with_did_you_mean(tmp_path, capsys):
    bad = write(
        tmp_path / "bad.yaml",
        "input: {shape: [2, 4]}\nnetwork:\n  - {type: Lineer, in_features: 4, out_features: 2}\n"
        "  - Relu\n",
    )
    good = write(tmp_path / "good.yaml", "input: {shape: [2, 4]}\nnetwork: ReLU\n")
    assert main(["validate", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"ok: {good}" in captured.out
    assert (
        f"network[0]: unknown layer type 'Lineer'. Did you mean 'Linear'? ({bad}:3:5)"
        in captured.err
    )
    assert (
        f"network[1]: unknown layer type 'Relu'. Did you mean 'ReLU'? ({bad}:4:5)" in captured.err
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(["validate"], "the following arguments are required: FILE", id="no-files"),
        pytest.param(["validate", "missing.yaml"], "missing.yaml: does not exist", id="missing"),
        pytest.param(["validate", "."], ".: is a directory", id="directory"),
        pytest.param(
            ["validate", "--plugin", "no_such_plugin_xyz", str(RGNET)],
            "cannot import plugin module 'no_such_plugin_xyz'",
            id="bad-plugin",
        ),
        pytest.param(
            ["validate", "--max-parameters", "0", str(RGNET)],
            "--max-parameters must be positive",
            id="bad-budget",
        ),
    ],
)
def test_validate_usage_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_file_wins_over_invalid_file(tmp_path, capsys):
    bad = write(tmp_path / "bad.yaml", "input: {shape: [2]}\nnetwork: Relu\n")
    assert main(["validate", str(bad), str(tmp_path / "nope.yaml")]) == 2


def test_validate_budget_flag(capsys):
    assert main(["validate", "--max-parameters", "100", str(RGNET)]) == 1
    assert "309 parameter and buffer elements, over the budget of 100" in capsys.readouterr().err


def test_console_script_and_module_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "modelfactory", "validate", str(RGNET)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "ok: " in proc.stdout
    script = ROOT / ".venv" / "bin" / "modelfactory"
    if script.exists():  # installed by pip install -e
        proc = subprocess.run([str(script), "validate", str(RGNET)], capture_output=True, text=True)
        assert proc.returncode == 0


# ---------------------------------------------------------------- schema command
class Scale(torch.nn.Module):
    """Multiply by a constant factor."""

    def __init__(self, factor: float, *, shift: int = 0) -> None:
        super().__init__()
        self.factor = factor


@pytest.fixture
def scale_layer():
    mf.register_layer(name="TestScaleLayer")(Scale)
    yield "TestScaleLayer"
    LAYERS.remove("TestScaleLayer")


def _layer_branch(schema, name):
    branches = schema["$defs"]["LayerNode"]["oneOf"]
    return next(b for b in branches if b["properties"]["type"] == {"const": name})


def test_schema_specialises_layers_including_user_registered(scale_layer):
    schema = model_schema()
    branch = _layer_branch(schema, scale_layer)
    assert branch["required"] == ["type", "factor"]
    assert set(branch["properties"]) == {"type", "when", "factor", "shift"}
    assert branch["additionalProperties"] is False
    assert branch["description"] == "Multiply by a constant factor."
    linear = _layer_branch(schema, "Linear")
    assert linear["required"] == ["type", "out_features"]  # in_features may be inferred
    ops = [b.get("title") for b in schema["$defs"]["Step"]["anyOf"]]
    assert "op add" in ops and "call" in ops
    assert "_InvalidNode" not in json.dumps(schema)
    assert schema["properties"]["defaults"]["type"] == "array"


def test_schema_validates_zoo_and_rejects_typos():
    import jsonschema  # dev dependency

    schema = model_schema(block_dir=CONF / "block")
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((CONF / "model").glob("*.yaml")):
        data = load_yaml_text(path.read_bytes(), str(path)).data
        assert not list(validator.iter_errors(data)), path
    bad = {"input": {"shape": [2]}, "network": {"type": "Linear", "in_featurs": 2}}
    assert list(validator.iter_errors(bad))


def test_schema_command_prints_json_with_plugin_layers(capsys):
    assert main(["schema", "--plugin", "schema_test_plugin"]) == 2  # not importable
    capsys.readouterr()
    assert main(["schema", "--block-dir", str(CONF / "block")]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    item = schema["properties"]["defaults"]["items"]["anyOf"][1]
    assert list(item["patternProperties"].values())[0]["enum"] == ["block1", "block2"]


# ---------------------------------------------------------------- block libraries
def test_rgnet_uses_library_blocks_through_hydra_and_standalone():
    assert "blocks:" not in RGNET.read_text()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=rgnet"])
    composed = mf.validate(cfg.model)
    standalone = mf.validate(RGNET)
    assert composed == standalone
    assert set(standalone.blocks) == {"block1", "block2"}


def test_library_block_errors_are_located_in_the_block_file(tmp_path):
    write(tmp_path / "block" / "good.yaml", "- {type: Linear, in_features: 4, out_features: 2}\n")
    write(tmp_path / "block" / "bad.yaml", "- {type: Linear, in_features: 4, out_feature: 2}\n")
    model = write(
        tmp_path / "model" / "m.yaml",
        "defaults:\n  - /block@blocks.bad: bad\n  - _self_\ninput: {shape: [2, 4]}\nnetwork: bad\n",
    )
    with pytest.raises(SpecError) as info:
        mf.validate(model)  # block dir defaults to ../block beside model/
    where = {p.path: p.source for p in info.value.problems}
    assert where["blocks.bad[0].out_feature"] == f"{tmp_path / 'block' / 'bad.yaml'}:1:34"


def test_library_name_clash_and_missing_block_dir(tmp_path):
    write(tmp_path / "block" / "b.yaml", "ReLU\n")
    clash = write(
        tmp_path / "model" / "m.yaml",
        "defaults:\n  - /block@blocks.b: b\ninput: {shape: [2]}\nblocks: {b: Tanh}\nnetwork: b\n",
    )
    with pytest.raises(SpecError, match=r"blocks\.b: block 'b' is defined twice"):
        mf.validate(clash)
    loose = write(
        tmp_path / "m.yaml", "defaults:\n  - /block@blocks.b: b\ninput: {shape: [2]}\nnetwork: b\n"
    )
    with pytest.raises(SpecError, match="no block directory is set"):
        mf.validate(loose)
    assert to_spec(loose, block_dir=tmp_path / "block").blocks["b"].type == "ReLU"


def test_library_symlink_out_of_the_directory_is_refused(tmp_path):
    write(tmp_path / "outside.yaml", "ReLU\n")
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "evil.yaml").symlink_to(tmp_path / "outside.yaml")
    model = write(
        tmp_path / "model" / "m.yaml",
        "defaults:\n  - /block@blocks.evil: evil\ninput: {shape: [2]}\nnetwork: evil\n",
    )
    with pytest.raises(SpecError, match="leads outside the block directory"):
        mf.validate(model)


def test_mapping_with_defaults_uses_the_given_block_dir():
    data = {"defaults": [{"/block@blocks.block1": "block1"}], "input": {"shape": [2, 4]}}
    data["network"] = "block1"
    assert len(mf.build(to_spec(data, block_dir=CONF / "block"))) == 4


# ---------------------------------------------------------------- plugins
def test_plugins_load_only_by_module_name(tmp_path, monkeypatch, registrations):
    write(
        tmp_path / "my_plugin_layers.py",
        "import torch\nimport modelfactory as mf\n\n\n@mf.register_layer\n"
        "class PluginDouble(torch.nn.Module):\n    def forward(self, x):\n        return 2 * x\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"input": {"shape": [2]}, "network": "PluginDouble"}
    with pytest.raises(mf.ModelFactoryError, match="unknown layer type 'PluginDouble'"):
        mf.validate(spec)
    assert load_plugins(["my_plugin_layers"]) == ["my_plugin_layers"]
    assert torch.equal(mf.build(spec)(torch.ones(2)), torch.full((2,), 2.0))
    with pytest.raises(PluginError, match="never by file path"):
        load_plugins([str(tmp_path / "my_plugin_layers.py")])


def test_run_py_loads_plugins_and_reads_model_file(tmp_path):
    write(
        tmp_path / "run_plugin_layers.py",
        "import torch\nimport modelfactory as mf\n\n\n@mf.register_layer\n"
        "class RunPluginIdentity(torch.nn.Identity):\n    pass\n",
    )
    theirs = write(
        tmp_path / "their.yaml",
        "name: theirs\ninput: {shape: [2, 4]}\nnetwork: [RunPluginIdentity, "
        "{type: Linear, in_features: 4, out_features: 3}]\n",
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    base = [sys.executable, str(ROOT / "run.py"), f"model_file={theirs}"]
    proc = subprocess.run(
        base + [f"hydra.run.dir={tmp_path / 'a'}"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 1 and "unknown layer type 'RunPluginIdentity'" in proc.stderr
    proc = subprocess.run(
        base + ["plugins=[run_plugin_layers]", f"hydra.run.dir={tmp_path / 'b'}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "output: shape (2, 3)" in proc.stdout
    assert (tmp_path / "b" / "model.safetensors").exists()


# ---------------------------------------------------------------- limits
def test_parameter_budget_is_configurable():
    spec = to_spec(
        {
            "input": {"shape": [2, 4]},
            "network": {"type": "Linear", "in_features": 4, "out_features": 4},
        }
    )
    assert mf.check(spec).elements == 20
    with (
        limits.budget(max_parameters=19),
        pytest.raises(
            limits.LimitError, match="20 parameter and buffer elements, over the budget of 19"
        ),
    ):
        mf.check(spec)
    with limits.budget(max_parameters=19), pytest.raises(limits.LimitError, match="budget of 19"):
        mf.build(spec)
    with pytest.raises(limits.LimitError, match="max_parameters: must be a positive integer"):
        with limits.budget(max_parameters=0):
            pass


def test_default_budget_refuses_a_billion_by_billion_linear():
    data = {
        "input": {"shape": [2, 4]},
        "network": {"type": "Linear", "in_features": 10**9, "out_features": 10**9},
    }
    with pytest.raises(
        limits.LimitError, match="1,000,000,001,000,000,000 parameter and buffer elements"
    ):
        mf.build(data)


def test_shared_modules_count_once_and_modules_are_counted_statically():
    spec = to_spec(CONF / "model" / "shared.yaml")
    assert mf.check(spec).elements == 121
    rgnet = to_spec(RGNET)
    assert limits.count_modules(rgnet) == 1 + 1 + 4 * 5 + 1
    with (
        limits.budget(max_modules=20),
        pytest.raises(limits.LimitError, match="expands to 23 modules"),
    ):
        mf.validate(RGNET)


def test_python_data_is_depth_limited_too():
    deep = "ReLU"
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(limits.LimitError, match=f"nested deeper than {MAX_DEPTH} levels"):
        mf.build({"input": {"shape": [2]}, "network": deep})
    loop: list = ["ReLU"]
    loop.append(loop)
    with pytest.raises(limits.LimitError, match="nested deeper"):
        mf.validate({"input": {"shape": [2]}, "network": loop})
    shallow = "ReLU"
    for _ in range(MAX_DEPTH - 2):
        shallow = [shallow]
    mf.validate({"input": {"shape": [2]}, "network": shallow})


def test_yaml_depth_and_alias_limits():
    with pytest.raises(SpecError, match=f"refused: nested deeper than {MAX_DEPTH} levels"):
        load_yaml_text("a: " + "[" * 150 + "]" * 150)
    load_yaml_text("a: " + "[" * 90 + "]" * 90)
    laughs = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        laughs += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]\n"
    with pytest.raises(SpecError, match="an alias bomb"):
        load_yaml_text(laughs)
    assert load_yaml_text("a: &x [1, 2]\nb: *x\n").data == {"a": [1, 2], "b": [1, 2]}


def test_interpolation_is_refused_not_resolved_even_in_library_blocks(tmp_path, monkeypatch):
    monkeypatch.setenv("MF_LIB_SECRET", "leak-me-not")
    write(
        tmp_path / "block" / "b.yaml",
        "{type: Linear, in_features: 4, out_features: '${oc.env:MF_LIB_SECRET}'}\n",
    )
    model = write(
        tmp_path / "model" / "m.yaml",
        "defaults:\n  - /block@blocks.b: b\ninput: {shape: [2, 4]}\nnetwork: b\n",
    )
    with pytest.raises(SpecError, match=r"b\.yaml:1:46\)") as info:
        mf.validate(model)
    assert "leak-me-not" not in str(info.value)


def test_terminal_escapes_in_a_model_file_never_reach_the_terminal(tmp_path):
    """A layer type that clears the screen and prints a fake 'ok' is shown escaped."""
    import subprocess
    import sys

    evil = "\x1b[2J\x1b[Hok: this file is valid\x1b[8m"
    path = tmp_path / "evil.yaml"
    path.write_text(
        "input: {shape: [2, 4]}\nnetwork:\n  - {type: " + json.dumps(evil) + "}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "modelfactory", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "\x1b" not in done.stderr + done.stdout
    assert "\\x1b[2J\\x1b[Hok: this file is valid\\x1b[8m" in done.stderr
