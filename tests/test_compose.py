"""Model files with Hydra defaults lists compose the same way outside run.py as under Hydra."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import CONF, ZOO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import modelfactory as mf
from modelfactory.cli import main
from modelfactory.spec.compose import compose_model_file, merge_configs


def hydra_model(conf_dir, name: str) -> dict:
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model={name}"])
    return OmegaConf.to_container(cfg.model, resolve=True)


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_model_composes_as_hydra_composes_it(name):
    data, _ = compose_model_file(CONF / "model" / f"{name}.yaml")
    assert data == hydra_model(CONF, name)


@pytest.fixture
def conf(tmp_path):
    """A copy of conf/ to drop model files into."""
    shutil.copytree(CONF, tmp_path / "conf")
    return tmp_path / "conf"


def write(conf, name: str, text: str):
    path = conf / "model" / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text",
    [
        "defaults: [mlp, _self_]\nname: b64\ninput: {shape: [64, 20]}\n",
        "defaults: [_self_, mlp]\nname: b64\ninput: {shape: [64, 20]}\n",  # mlp wins
        "defaults: [mlp]\nname: b64\ninput: {dist: randn}\n",  # _self_ implicitly last
        "defaults: [rgnet, _self_]\nname: rg2\ninput: {shape: [5, 4]}\n",  # a parent with blocks
        "defaults: [mlp_b64, _self_]\nname: twice\nnetwork: [{type: Linear, in_features: 20, out_features: 3}]\n",
    ],
)
def test_a_composed_file_validates_and_builds_as_under_hydra(conf, text):
    path = write(conf, "composed", text)
    data, _ = compose_model_file(path)
    assert data == hydra_model(conf, "composed")
    model = mf.build(path)
    assert model.modelfactory_info.spec.input.shape == tuple(data["input"]["shape"])
    assert main(["validate", str(path)]) == 0


def test_the_test_suites_zoo_checks_pass_with_a_composed_file_dropped_in(conf, capsys):
    write(conf, "mlp_wide", "defaults: [mlp, _self_]\nname: mlp_wide\ninput: {shape: [8, 20]}\n")
    paths = sorted(str(p) for p in (conf / "model").glob("*.yaml") if p.stem != "big_mlp")
    assert main(["validate", *paths]) == 0
    assert "ok: " + str(conf / "model" / "mlp_wide.yaml") in capsys.readouterr().out


def test_errors_point_into_the_file_that_set_the_value(conf):
    path = write(conf, "bad", "defaults: [mlp, _self_]\ninput: {shape: [2, 20], dist: gauss}\n")
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.validate(path)
    (problem,) = info.value.problems
    assert problem.path == "input.dist" and problem.source.endswith("bad.yaml:2:25")
    path = write(
        conf,
        "bad2",
        "defaults: [mlp, _self_]\nname: bad2\nnetwork: [{type: Linear, in_features: 20, out_features: -1}]\n",
    )
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.validate(path)
    assert info.value.problems[0].source.startswith(str(path))
    # a value the parent set is located in the parent
    (conf / "model" / "parent.yaml").write_text(
        "input: {shape: [2, 4], dist: gauss}\nnetwork: [ReLU]\n"
    )
    path = write(conf, "child", "defaults: [parent, _self_]\nname: child\n")
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.validate(path)
    assert info.value.problems[0].source.startswith(str(conf / "model" / "parent.yaml") + ":1:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "defaults: [mpl, _self_]\n",
            r"unknown model 'mpl' in the defaults list\. Did you mean 'mlp'\?",
        ),
        ("defaults: [loop, _self_]\ninput: {shape: [2, 4]}\n", r"compose a cycle: loop -> loop"),
        (
            "defaults: [mlp, _self_]\nnetwork: {sequential: {a: ReLU}}\n",
            r"cannot merge a dict onto the list of an earlier file",
        ),
    ],
)
def test_bad_defaults_lists_are_refused_with_their_reason(conf, text, message):
    with pytest.raises(mf.ModelFactoryError, match=message):
        mf.validate(write(conf, "loop", text))


def test_a_file_outside_a_model_directory_cannot_name_its_neighbours(tmp_path):
    (tmp_path / "secret.yaml").write_text("input: {shape: [2, 4]}\nnetwork: [ReLU]\n")
    theirs = tmp_path / "theirs.yaml"
    theirs.write_text("defaults: [secret, _self_]\n")
    with pytest.raises(mf.ModelFactoryError, match="this file is not in a 'model/' directory"):
        mf.validate(theirs)


def test_a_symlink_out_of_the_model_directory_is_refused(conf, tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("input: {shape: [2, 4]}\nnetwork: [ReLU]\n")
    os.symlink(outside, conf / "model" / "linked.yaml")
    with pytest.raises(mf.ModelFactoryError, match="leads outside"):
        mf.validate(write(conf, "user", "defaults: [linked, _self_]\n"))


def test_merge_follows_omegaconf():
    for base, over in [
        ({"a": {"p": 1, "q": 2}, "x": 1}, {"a": {"q": 3, "r": 4}, "b": [1]}),
        ({"a": [1, 2]}, {"a": [3]}),
        ({"a": {"b": 1}}, {"a": None}),
        ({"a": None}, {"a": {"b": 1}}),
        ({"a": 3}, {"a": {"b": 1}}),
    ]:
        assert merge_configs(base, over) == OmegaConf.to_container(OmegaConf.merge(base, over))


def test_zoo_models_and_init_presets_by_name():
    model = mf.build("resnet18", init="xavier")
    assert model.modelfactory_info.init[0]["scheme"] == "xavier_uniform"
    assert mf.check(str(CONF / "model" / "resnet18.yaml")).counts["unique"] == 11_689_512
    assert mf.check(CONF / "model" / "resnet18.yaml").output_shapes == [[1, 1000]]
    with pytest.raises(mf.ModelFactoryError, match="Did you mean 'resnet18'"):
        mf.build("resnet19")
    with pytest.raises(mf.ModelFactoryError, match="Did you mean 'xavier'"):
        mf.build("mlp", init="xavir")
