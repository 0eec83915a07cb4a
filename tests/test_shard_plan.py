"""Shard plans on meta models (no process group): units from globs, and every refusal with its fix."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF

import modelfactory as mf
from modelfactory.builder.construct import construct
from modelfactory.builder.shard_plan import ShardError, plan_shards
from modelfactory.builder.ties import apply_ties
from modelfactory.distributed import launch_env, rank_device
from modelfactory.errors import DeviceError, ModelFactoryError
from modelfactory.spec.parallel import ParallelSpec, to_parallel_spec


def meta_model(name_or_data):
    spec = mf.check(
        CONF / "model" / f"{name_or_data}.yaml" if isinstance(name_or_data, str) else name_or_data
    ).spec
    model, _ = construct(spec, device=torch.device("meta"), seed=0)
    apply_ties(model, spec.ties)
    return model


def refusal(model, rules) -> ShardError:
    with pytest.raises(ShardError) as caught:
        plan_shards(model, rules)
    return caught.value


def test_each_match_is_a_unit_and_the_root_comes_last():
    plan = plan_shards(meta_model("big_mlp"), ["*"])
    assert plan.labels == [str(i) for i in range(8)] + ["<root>"]
    assert plan.unit_of["3.0"] == "3" and plan.unit_of[""] == "<root>"


def test_no_rules_is_the_root_alone_and_modules_without_parameters_are_passed_over():
    model = meta_model("mlp")  # Linear, ReLU, Linear
    assert plan_shards(model, []).labels == ["<root>"]
    assert plan_shards(model, ["*"]).labels == ["0", "2", "<root>"]


def test_inner_units_are_sharded_before_the_units_around_them():
    plan = plan_shards(meta_model("resnet18"), ["layer1", "layer1.*"])
    labels = plan.labels
    assert labels.index("layer1.0") < labels.index("layer1")
    assert labels.index("layer1.1") < labels.index("layer1")


def test_a_group_rule_makes_one_unit_and_keeps_a_tie_together():
    plan = plan_shards(meta_model("tied_lm"), [["embedding", "head"], "body"])
    assert plan.labels == ["embedding+head", "body", "<root>"]
    assert plan.unit_of["head"] == plan.unit_of["embedding"] == "embedding+head"


def test_a_tie_left_to_the_root_works():
    assert plan_shards(meta_model("tied_lm"), ["body"]).labels == ["body", "<root>"]


@pytest.mark.parametrize("rules", [["embedding"], ["head"], ["embedding", "head"], ["*"]], ids=str)
def test_a_tie_split_across_units_is_refused_with_the_fix(rules):
    err = refusal(meta_model("tied_lm"), rules)
    (problem,) = err.problems
    assert problem.path.startswith("parallel.shard[")
    assert "tied parameter 'embedding.weight' = 'head.weight' would be split" in problem.message
    assert "group rule (['embedding', 'head']" in problem.message
    assert "enclosing unit" in problem.message


def test_a_shared_module_may_be_its_own_unit_under_either_path():
    model = meta_model("shared")  # net[2] is net[4]
    assert plan_shards(model, ["2"]).labels == ["2", "<root>"]
    assert plan_shards(model, ["4"]).labels == ["2", "<root>"]
    plan = plan_shards(model, ["*"])  # the shared module matched twice is one unit
    assert plan.labels == ["0", "2", "6", "<root>"]
    assert plan.unit_of["4"] == "2"


def test_a_shared_module_split_across_enclosing_units_is_refused():
    data = {
        "input": {"shape": [2, 4]},
        "shared": {"s": {"type": "Linear", "in_features": 4, "out_features": 4}},
        "network": [[{"shared": "s"}, "ReLU"], [{"shared": "s"}, "ReLU"]],
    }
    err = refusal(meta_model(data), ["*"])
    assert "shared module '0.0' is used in several FSDP units" in str(err)
    assert "its own unit (a rule '0.0')" in str(err)
    assert plan_shards(meta_model(data), ["*.0"]).labels == ["0.0", "<root>"]


def test_every_rule_problem_is_reported_at_once_with_its_config_path():
    err = refusal(meta_model("tied_lm"), ["embeding", "body.1", "body", ["body", "head"]])
    paths = [p.path for p in err.problems]
    assert paths == ["parallel.shard[0]", "parallel.shard[1]", "parallel.shard[3]"]
    assert (
        "matched no module" in err.problems[0].message and "'embedding'" in err.problems[0].message
    )
    assert "only modules without parameters (Tanh)" in err.problems[1].message
    assert "already in a unit from parallel.shard[2]" in err.problems[2].message


def test_a_group_listing_a_module_inside_another_is_refused():
    err = refusal(meta_model("resnet18"), [["layer1", "layer1.0"]])
    assert "'layer1.0', which is inside 'layer1'" in str(err)


def test_units_enclosing_each_other_in_a_cycle_are_refused():
    err = refusal(meta_model("resnet18"), [["layer1.0", "layer2"], ["layer2.0", "layer1"]])
    assert "cycle" in str(err)


def test_parallel_config_is_validated_with_paths():
    spec = to_parallel_spec({"strategy": "fsdp", "shard": ["layers.*", ["a", "b"]]})
    assert spec.shard == ("layers.*", ("a", "b")) and spec.reshard_after_forward
    assert to_parallel_spec(None) == ParallelSpec()
    with pytest.raises(ModelFactoryError) as caught:
        to_parallel_spec({"strategy": "ddp", "shard": ["a..b", []], "shards": 1})
    text = str(caught.value)
    assert "parallel.strategy" in text and "parallel.shard[0]: malformed glob 'a..b'" in text
    assert "parallel.shard[1]: an empty group" in text and "Did you mean 'shard'?" in text


def test_launch_env_reads_torchrun_and_slurm_variables():
    assert launch_env({}).world_size == 1
    env = launch_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.launcher) == (1, 2, 1, "torchrun")
    slurm = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "MASTER_ADDR": "n1"}
    env = launch_env(slurm)
    assert (env.rank, env.world_size, env.local_rank, env.launcher) == (5, 8, 1, "slurm")
    assert env.variables["MASTER_PORT"] == "29500" and env.variables["RANK"] == "5"
    assert launch_env({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}).launcher == "single"
    with pytest.raises(ModelFactoryError, match="MASTER_ADDR is not set"):
        launch_env({k: v for k, v in slurm.items() if k != "MASTER_ADDR"})
    with pytest.raises(ModelFactoryError, match="RANK='x'"):
        launch_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_rank_devices():
    assert rank_device("cpu", 1, 2) == torch.device("cpu")
    with pytest.raises(DeviceError, match="names one GPU"):
        rank_device("cuda:1", 0, 2)
    with pytest.raises(DeviceError, match="needs real memory"):
        rank_device("meta", 0, 1)
    if not torch.cuda.is_available():
        assert rank_device("auto", 0, 2) == torch.device("cpu")
        with pytest.raises(DeviceError, match="not available"):
            rank_device("cuda", 0, 2)


def test_build_sharded_without_a_process_group_says_how_to_start_one():
    import torch.distributed as dist

    from modelfactory.builder.sharded import build_sharded

    if dist.is_initialized():
        pytest.skip("a process group exists in this process")
    with pytest.raises(ModelFactoryError, match="Run under torchrun"):
        build_sharded(CONF / "model" / "mlp.yaml")
