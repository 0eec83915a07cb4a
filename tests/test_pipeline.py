"""The pipeline's stages each run once, the package has no import cycles, and built models pickle."""

from __future__ import annotations

import ast
import copy
import io
import pickle
from collections import Counter
from pathlib import Path

import pytest
import torch

import modelfactory as mf
import modelfactory.builder.construct as construct_module
import modelfactory.checker.limits as limits_module
import modelfactory.pipeline as pipeline
import modelfactory.resolve as resolve_module
from modelfactory.checker import shapes as shapes_module
from modelfactory.spec.model import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PACKAGE = ROOT / "src" / "modelfactory"
ZOO = sorted((CONF / "model").glob("*.yaml"))

ONE_INFERRED = {
    "input": {"shape": [2, 20]},
    "network": [
        {"type": "Linear", "out_features": 64},  # in_features inferred
        "ReLU",
        {"type": "Linear", "in_features": 64, "out_features": 10},
    ],
}


@pytest.fixture
def stage_calls(monkeypatch):
    """Count each stage: pydantic validation of a spec, resolve, shape check, construction, budget."""
    calls: Counter[str] = Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    original_validate = ModelSpec.model_validate.__func__

    def validate(cls, *args, **kwargs):
        calls["validation"] += 1
        return original_validate(cls, *args, **kwargs)

    monkeypatch.setattr(ModelSpec, "model_validate", classmethod(validate))
    monkeypatch.setattr(pipeline, "resolve", counted("resolve", resolve_module.resolve))
    monkeypatch.setattr(pipeline, "check_shapes", counted("check", shapes_module.check))
    # the build stage's construction (the shape check constructs nothing: symbolic shapes)
    monkeypatch.setattr(pipeline, "construct", counted("construct", construct_module.construct))
    # the shape check holds the budget as it counts each layer (checker/evaluate.py); the
    # build stage counts again only when the check was skipped
    budget = counted("build-stage budget", limits_module.enforce_parameter_budget)
    monkeypatch.setattr(pipeline, "enforce_parameter_budget", budget)
    return calls


@pytest.mark.parametrize("strategy", ["direct", "meta"])
def test_build_runs_each_stage_once(stage_calls, strategy):
    model = mf.build(ONE_INFERRED, strategy=strategy)
    assert model[0].in_features == 20
    assert stage_calls == {"validation": 1, "resolve": 1, "check": 1, "construct": 1}


def test_a_checked_spec_is_built_without_any_earlier_stage(stage_calls):
    checked = mf.check(ONE_INFERRED)
    stage_calls.clear()
    mf.build(checked)
    assert stage_calls == {"construct": 1}


def test_check_accepts_a_path_and_build_a_checked_spec():
    checked = mf.check(CONF / "model" / "resnet18.yaml")
    assert isinstance(checked, mf.CheckedSpec)
    assert checked.output_shapes == [[1, 1000]]  # the file declares a batch of one
    assert checked.elements == 11_689_512 + 9_620  # parameters + BatchNorm buffers
    assert isinstance(mf.build(checked), torch.nn.Module)


def test_load_constructs_once(stage_calls, tmp_path):
    model = mf.build(ONE_INFERRED, seed=3)
    mf.save(model, tmp_path / "m.safetensors")
    stage_calls.clear()
    loaded = mf.load(tmp_path / "m.safetensors")
    assert stage_calls["construct"] == 1
    assert stage_calls["check"] == 0  # the stored spec was checked when it was built
    assert stage_calls["build-stage budget"] == 1  # on the meta model, before allocating
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_check_false_skips_only_the_shape_check(stage_calls):
    spec = {**ONE_INFERRED, "network": ONE_INFERRED["network"][1:]}
    spec["network"] = [{"type": "Linear", "in_features": 20, "out_features": 64}, "ReLU"]
    mf.build(spec, check=False)
    assert stage_calls == {
        "validation": 1,
        "resolve": 1,
        "construct": 1,
        "build-stage budget": 1,
    }


def test_check_false_cannot_infer_sizes():
    with pytest.raises(mf.ModelFactoryError, match="must be inferred first"):
        mf.build(ONE_INFERRED, check=False)


# ------------------------------------------------------------------ pickling
@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_every_zoo_model_pickles_deepcopies_and_torch_saves(path):
    if path.stem == "big_mlp":
        pytest.skip("537 MB: the same code path as the small models, too slow to copy three times")
    model = mf.build(path, seed=1)
    x = pipeline_input(mf.validate(path))
    expected = model(x)
    buffer = io.BytesIO()
    torch.save(model, buffer)  # pickles the module (weights_only=False on read: our own bytes)
    buffer.seek(0)
    copies = [
        pickle.loads(pickle.dumps(model)),
        copy.deepcopy(model),
        torch.load(buffer, weights_only=False),
    ]
    for clone in copies:
        assert type(clone).__name__ == type(model).__name__
        assert str(clone) == str(model)
        assert _same(clone(x), expected)
        assert clone.modelfactory_info.init_report == model.modelfactory_info.init_report
        # ties and shared modules survive: the same number of unique tensors
        assert len(list(clone.parameters())) == len(list(model.parameters()))


def pipeline_input(spec):
    from modelfactory.builder.forward import make_input

    return make_input(spec.input, seed=0)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return all(_same(x, y) for x, y in zip(a, b, strict=True))


def test_a_tied_model_stays_tied_after_unpickling():
    model = mf.build(CONF / "model" / "tied_lm.yaml")
    clone = pickle.loads(pickle.dumps(model))
    assert clone.head.weight is clone.embedding.weight
    clone.to(torch.float64)  # the tie is kept through later moves too
    assert clone.head.weight is clone.embedding.weight


# ------------------------------------------------------------------ layout
def _imports(path: Path, module: str) -> set[str]:
    """Modules imported at the top level of ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("modelfactory"):
                found.add(target)
                for alias in node.names:  # `from . import x` imports the module x
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("modelfactory"))
    return found


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def test_no_import_cycles_between_modules():
    from graphlib import CycleError, TopologicalSorter

    modules = _modules()
    graph = {
        name: {m for m in _imports(path, name) if m in modules and m != name}
        for name, path in modules.items()
    }
    # a package's __init__ re-exports its modules: importing a submodule runs it, so
    # edges into a package from its own submodules are not cycles of the code
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def test_hydra_is_imported_only_in_app():
    for name, path in _modules().items():
        text = path.read_text()
        if "import hydra" in text or "from hydra" in text:
            assert name.startswith("modelfactory.app"), name


def test_every_module_is_small_and_says_what_it_is_for():
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        assert len(lines) <= 460, f"{name} has {len(lines)} lines"
        assert lines and lines[0].startswith('"""') and len(lines[0]) > 10, name


# ------------------------------------------------------------------ start-up
@pytest.mark.parametrize(
    "argv",
    [
        ["run.py", "--help"],
        ["run.py", "--cfg", "job"],
        ["-m", "modelfactory", "--help"],
        ["-c", "import modelfactory"],
    ],
    ids=["run.py --help", "run.py --cfg job", "modelfactory --help", "import modelfactory"],
)
def test_help_and_import_do_not_import_torch(argv):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "torch" not in imported
    assert "hydra" in imported or "modelfactory" in imported  # the check saw real imports
