"""What a run leaves behind: the checkpoint is the built model, run.log, save_checkpoint, printing levels."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import ZOO
from safetensors.torch import load_file
from test_app import run_app
from torch import nn

import modelfactory as mf
from modelfactory.app.job import architecture_yaml
from modelfactory.builder.forward import buffers_kept, make_input, run_forward
from modelfactory.io.checkpoint import fingerprint


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet18")
    proc = run_app("model=resnet18", "seed=5", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_the_checkpoint_equals_a_fresh_build_bit_for_bit(resnet_run):
    out, _ = resnet_run
    saved = load_file(str(out / "model.safetensors"))
    fresh = mf.build("resnet18", seed=5).state_dict()
    assert saved.keys() == fresh.keys()
    for name, tensor in fresh.items():
        assert torch.equal(saved[name], tensor), name  # running stats and counters included
    assert saved["bn1.num_batches_tracked"].item() == 0
    assert torch.equal(saved["bn1.running_mean"], torch.zeros(64))


def test_the_summary_fits_one_screen_and_run_log_holds_it(resnet_run):
    out, proc = resnet_run
    lines = proc.stdout.splitlines()
    assert len(lines) <= 30, proc.stdout
    assert lines[0] == "model resnet18: ResNet on cpu, seed 5"
    assert "11,689,512 parameters; 9,620 buffer elements" in proc.stdout
    assert "layer4   Sequential          8,393,728" in proc.stdout
    log = (out / "run.log").read_text()
    assert proc.stdout in log  # everything the console showed is in run.log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"] == {
        "unique": 11_689_512,
        "total": 11_689_512,
        "shared": 0,
        "tied": 0,
        "trainable_unique": 11_689_512,
        "buffers": 9_620,
    }
    assert metrics["parameters"] == mf.check("resnet18").counts


def test_statistics_passes_keep_buffers_and_time_without_hooks():
    model = mf.build("resnet18", seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = make_input(model.modelfactory_info.spec.input, seed=1)
    seen_hooks: list[int] = []
    model.fc.register_forward_pre_hook(lambda m, a: seen_hooks.append(len(m._forward_hooks)))
    result = run_forward(model, x)
    assert seen_hooks == [1, 0]  # the statistics pass has its hook; the timed pass has none
    assert result.seconds > 0 and result.activations
    mf.summary(model)  # the FLOP-counting pass, on the recorded input
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_buffers_kept_restores_after_an_error():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(RuntimeError), buffers_kept(bn):
        bn(torch.randn(4, 3))
        raise RuntimeError("boom")
    assert bn.num_batches_tracked.item() == 0 and torch.equal(bn.running_mean, torch.zeros(3))


def test_summary_uses_the_recorded_input():
    model = mf.build("chimera", seed=2)
    table = mf.summary(model)
    assert table.rows and table.counts == mf.check("chimera").counts
    with pytest.raises(mf.ModelFactoryError, match="pass one: modelfactory.summary"):
        mf.summary(nn.Linear(2, 2))


@pytest.mark.parametrize(
    ("level", "present", "absent"),
    [
        ("none", [], ["model shared", "parameter  shape"]),
        ("summary", ["model shared", "module  type"], ["FLOPs for one", "init report"]),
        ("layers", ["FLOPs", "layer  type"], ["init report", "Sequential(\n"]),
        ("full", ["Sequential(\n", "FLOPs", "init report", "shared module: same as 2.weight"], []),
        ("true", ["init report"], []),
        ("false", [], ["model shared"]),
    ],
)
def test_print_model_levels(tmp_path, level, present, absent):
    proc = run_app("model=shared", f"print_model={level}", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    for text in present:
        assert text in proc.stdout
    for text in absent:
        assert text not in proc.stdout
    assert "output: shape (2, 1)" in proc.stdout


def test_a_bad_print_model_level_is_a_clear_error(tmp_path):
    proc = run_app("model=shared", "print_model=everything", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "print_model: must be one of none, summary, layers, full" in proc.stderr


def test_save_checkpoint_false_writes_everything_but_the_checkpoint(tmp_path):
    proc = run_app("model=param_net", "save_checkpoint=false", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "model.safetensors").exists()
    assert "no checkpoint: save_checkpoint=false" in proc.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["checkpoint"] is None and metrics["status"] == "ok"
    assert (tmp_path / "architecture.yaml").is_file() and (tmp_path / "init_report.json").is_file()


@pytest.mark.parametrize("name", [n for n in ZOO if n != "big_mlp"])
def test_architecture_yaml_has_no_nulls_and_rebuilds_the_same_model(name):
    spec = mf.check(name).spec
    text = architecture_yaml(spec)
    assert ": null" not in text and "- null" not in text
    assert fingerprint(mf.validate(yaml.safe_load(text))) == fingerprint(spec)


def test_architecture_yaml_keeps_a_null_argument():
    spec = mf.validate(
        {
            "input": {"shape": [2, 3], "dist": "randint", "high": 5},
            "network": [
                {"type": "Embedding", "num_embeddings": 5, "embedding_dim": 2, "padding_idx": None}
            ],
        }
    )
    assert "padding_idx: null" in architecture_yaml(spec)


# --- model sources -------------------------------------------------------------------


@pytest.fixture
def plain(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text(
        "name: plain\ninput: {shape: [2, 4]}\nnetwork: [{type: Linear, in_features: 4, out_features: 2}]\n"
    )
    return path


@pytest.mark.parametrize("other", ["model=chimera", "model.input.shape=[16,8]", "+model.extra=1"])
def test_model_file_with_model_overrides_is_an_error_saying_which_wins(tmp_path, plain, other):
    proc = run_app(f"model_file={plain}", other, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (
        f"model_file= and {other} both say which model to run; model_file= would win" in proc.stderr
    )
    assert "Use one: model=NAME with model.* overrides" in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_cfg_job_shows_the_model_file(plain):
    proc = run_app(f"model_file={plain}", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown["model"]["name"] == "plain" and shown["model_file"] == str(plain)
    assert "read from model_file=" in proc.stdout
    proc = run_app("model=chimera", "--cfg", "job")  # without model_file: Hydra's own output
    assert yaml.safe_load(proc.stdout)["model"]["name"] == "chimera"


def test_plugins_without_brackets_and_a_checkpoint_as_model_file_are_clear_errors(tmp_path):
    proc = run_app("plugins=mypkg.layers", f"hydra.run.dir={tmp_path / 'a'}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "write plugins=[mypkg.layers] (with the brackets" in proc.stderr
    ckpt = mf.save(mf.build("mlp"), tmp_path / "m.safetensors")
    proc = run_app(f"model_file={ckpt}", f"hydra.run.dir={tmp_path / 'b'}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (
        "is a checkpoint, not a model file" in proc.stderr
        and "modelfactory.load(path)" in proc.stderr
    )


def test_a_model_file_edit_changes_the_resume_digest(tmp_path, plain):
    from hydra import compose, initialize_config_dir

    from modelfactory.app.sources import effective_config
    from modelfactory.app.summary import config_digest
    from modelfactory.zoo import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"model_file={plain}"])
    before = config_digest(effective_config(cfg))
    plain.write_text(plain.read_text().replace("out_features: 2", "out_features: 3"))
    assert config_digest(effective_config(cfg)) != before
    assert effective_config(cfg)["model"]["network"][0]["out_features"] == 3
