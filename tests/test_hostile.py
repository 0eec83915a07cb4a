"""A corpus of hostile model files: each is refused with its own error, and nothing else happens.

Every file under tests/hostile/ is listed here with the error it must raise.
The side-effect checks: files that would run ``touch pwned`` under a
``_target_``/tag-evaluating loader leave no sentinel file, and the secret in
``MF_HOSTILE_SECRET`` (which the files try to read with ``${oc.env:...}``) never
appears in an error, in output, or in any written file.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF, ROOT

import modelfactory as mf

HOSTILE = ROOT / "tests" / "hostile"
SECRET_VAR = "MF_HOSTILE_SECRET"
SECRET = "s3cr3t-" + secrets.token_hex(8)

TARGET = "unknown key '_target_'"
TAG = r"YAML tag '{}' is not allowed: a model file is plain data"
INTERP = r"interpolation '\$\{{{}.*' is not allowed: a model file is read as plain data"
PACKAGE = r"a '# @package' header is not allowed"
HYDRA = r"hydra: unknown key 'hydra'"
DEFAULTS = r"defaults list may only name library blocks"
BUDGET = r"over the parameter budget"
MODULES = r"expands to [\d,]+ modules \(repeats x blocks\), over the limit of 100,000"
DEEP = r"refused: nested deeper than 100 levels"

CASES = {
    "target_os_system.yaml": TARGET,
    "target_in_network.yaml": r"found a mapping with keys \['_target_', '_args_'\]",
    "target_in_layer_args.yaml": r"unknown argument '_target_' for Linear",
    "type_builtins_eval.yaml": r"unknown layer type 'builtins\.eval'",
    "type_logging_os_system.yaml": r"unknown layer type 'logging\.os\.system'",
    "type_dotted_torch_path.yaml": r"unknown layer type 'torch\.nn\.modules\.linear\.Linear'",
    "bare_name_os_system.yaml": r"network\[0\]: unknown layer type 'os\.system'",
    "python_object_apply.yaml": TAG.format(r"!!python/object/apply:os\.system"),
    "python_object_new.yaml": TAG.format(r"!!python/object/new:subprocess\.Popen"),
    "python_object.yaml": TAG.format(r"!!python/object:builtins\.object"),
    "python_name.yaml": TAG.format(r"!!python/name:os\.system"),
    "python_module.yaml": TAG.format(r"!!python/module:os"),
    "custom_tag_include.yaml": TAG.format("!include"),
    "oc_env_secret.yaml": INTERP.format("oc.env"),
    "oc_env_in_argument.yaml": INTERP.format("oc.env"),
    "oc_decode_resolver.yaml": INTERP.format("oc.decode"),
    "hydra_runtime_resolver.yaml": INTERP.format("hydra:runtime"),
    "interpolation_reference.yaml": INTERP.format(r"input\.shape"),
    "interpolation_in_key.yaml": r"network\.children\.\$\{oc\.env:MF_HOSTILE_SECRET\}: interpolation",
    "package_global_header.yaml": "package_global_header.yaml:1:1: " + PACKAGE,
    "package_header_after_comment.yaml": "package_header_after_comment.yaml:2:1: " + PACKAGE,
    "hydra_callbacks.yaml": HYDRA,
    "hydra_env_set.yaml": HYDRA,
    "hydra_job_logging.yaml": HYDRA,
    "plugins_key.yaml": r"plugins: unknown key 'plugins'",
    "defaults_override_hydra.yaml": DEFAULTS + r".*found \{'override hydra/job_logging'",
    "defaults_global_package.yaml": DEFAULTS + r".*found \{'/model@_global_': 'mlp'\}",
    "defaults_absolute_path.yaml": DEFAULTS + r".*found '/etc/passwd'",
    "defaults_path_traversal.yaml": r"must be a name .* found '\.\./\.\./\.\./etc/passwd'; paths are never accepted",
    "defaults_unknown_block.yaml": r"unknown library block 'blok1'\. Did you mean 'block1'\?",
    "duplicate_key.yaml": r"key 'network' is given twice in this mapping",
    "repeat_names_format.yaml": r"'names' must contain the placeholder \{i\} once",
    "huge_linear.yaml": BUDGET,
    "huge_constant.yaml": r"network.constants.c.shape: the constant has 1,000,000,000,000,000 elements",
    "huge_input.yaml": r"input\.shape: the input has 1,000,000,000,000,000 elements, over the budget",
    "huge_layer_count.yaml": r"expands to 1,000,000,002 modules",
    "repeat_bomb.yaml": MODULES,
    "block_bomb.yaml": MODULES,
    "alias_bomb.yaml": r"more than 1,000,000 nodes once aliases are expanded \(an alias bomb\?\)",
    "block_cycle.yaml": r"blocks refer to each other in a cycle: a -> b -> a",
    "shared_cycle.yaml": r"shared refer to each other in a cycle: s -> t -> s",
    "recursive_alias.yaml": DEEP,
    "deep_nesting.yaml": r"invalid YAML: exceeded maximum nesting depth|" + DEEP,
    "deep_composite.yaml": DEEP,
    "invalid_timestamp.yaml": r"invalid YAML value: month must be in 1\.\.12 \(ValueError\)",
    "explicit_bad_int.yaml": r"invalid YAML value: invalid literal for int\(\)",
    "multi_document.yaml": r"multi_document\.yaml:3:1: invalid YAML: but found another document",
    "top_level_list.yaml": r"a model spec must be a mapping with 'input' and 'network', found list",
    "top_level_scalar.yaml": r"a model spec must be a mapping .* found str",
    "empty.yaml": r"the file is empty",
    "only_comments.yaml": r"the file is empty",
    "non_utf8.yaml": r"not UTF-8 text \(byte 32: b'\\xe9'\)",
    "utf16_bom.yaml": r"not UTF-8 text \(byte 0: b'\\xff'\)",
}


def test_the_corpus_is_complete():
    on_disk = {p.name for p in HOSTILE.glob("*.yaml")}
    assert on_disk == set(CASES)
    assert len(on_disk) >= 30


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Run in an empty directory with the secret set; afterwards, nothing may be in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(SECRET_VAR, SECRET)
    yield tmp_path
    assert list(tmp_path.iterdir()) == [], "a hostile file had a side effect"


@pytest.mark.parametrize(
    "name, match", [pytest.param(n, m, id=n.removesuffix(".yaml")) for n, m in CASES.items()]
)
def test_hostile_file_is_refused_by_build(name, match, sandbox):
    with pytest.raises(mf.ModelFactoryError, match=match) as info:
        _build(HOSTILE / name)
    assert SECRET not in str(info.value)
    assert info.value.__class__.__module__.startswith("modelfactory")


def _build(path: Path):
    # Library blocks resolve against the project's own block directory (trusted).
    spec = mf.spec.to_spec(path, block_dir=CONF / "block")
    return mf.build(spec)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env[SECRET_VAR] = SECRET
    return env


def _no_secret_anywhere(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_validate_cli_refuses_the_whole_corpus(tmp_path):
    files = sorted(HOSTILE.glob("*.yaml"))
    proc = subprocess.run(
        [sys.executable, "-m", "modelfactory", "validate", "--block-dir", str(CONF / "block")]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not [line for line in proc.stdout.splitlines() if line.startswith("ok:")]
    assert proc.stderr.count("error: ") == len(files)
    assert SECRET not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("oc_env_secret.yaml", id="oc_env"),
        pytest.param("hydra_callbacks.yaml", id="hydra_callbacks"),
        pytest.param("package_global_header.yaml", id="package_global"),
        pytest.param("python_object_apply.yaml", id="python_tag"),
        pytest.param("huge_linear.yaml", id="huge_linear"),
    ],
)
def test_run_py_model_file_refuses_without_side_effects(name, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            f"model_file={HOSTILE / name}",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert __import__("re").search(CASES[name], proc.stderr), proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert not (tmp_path / "pwned").exists() and not (run_dir / "pwned").exists()
    assert not (run_dir / "model.safetensors").exists()
    _no_secret_anywhere(tmp_path)


def test_the_corpus_is_really_hostile_under_omegaconf(monkeypatch):
    """Positive control: resolved by OmegaConf, the same text leaks the secret.

    This is what reading the file as plain data prevents; if it stopped leaking,
    the corpus would no longer test anything.
    """
    from omegaconf import OmegaConf

    monkeypatch.setenv(SECRET_VAR, SECRET)
    cfg = OmegaConf.create((HOSTILE / "oc_env_secret.yaml").read_text())
    assert OmegaConf.to_container(cfg, resolve=True)["name"] == SECRET
