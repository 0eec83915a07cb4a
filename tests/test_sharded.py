"""Sharded builds and DCP checkpoints in this process, on a one-rank gloo group (the CPU path).

The same code runs on every rank of a larger group; ``test_sharded_dist.py``
runs it on 2 processes under torchrun, and ``test_cuda.py`` on NCCL.
"""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.distributed.checkpoint as dcp
from conftest import CONF

import modelfactory as mf
from modelfactory.builder.forward import make_input
from modelfactory.builder.sharded import (
    build_sharded,
    full_state_dict,
    is_sharded,
    local_parameter_bytes,
)
from modelfactory.distributed import process_group
from modelfactory.errors import CheckpointError, ModelFactoryError
from modelfactory.io.dcp import (
    dcp_to_safetensors,
    load_dcp,
    load_dcp_into,
    read_dcp,
    safetensors_to_dcp,
    save_dcp,
)
from modelfactory.io.dcp_files import RECORD
from modelfactory.spec.parallel import to_parallel_spec

ZOO = CONF / "model"
XAVIER = CONF / "init" / "xavier.yaml"
HEAD_RULE = [{"module": "head", "param": "weight", "scheme": "normal", "std": 0.5}]


@pytest.fixture(scope="module", autouse=True)
def one_rank_group():
    with process_group(torch.device("cpu")):
        yield


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


CASES = [
    ("mlp", ["*"], None),
    ("big_mlp", ["*"], None),  # 134M parameters on meta; only checked on its plan here
    ("tied_lm", [["embedding", "head"]], HEAD_RULE),
    ("tied_lm", [], XAVIER),
    ("shared", ["2"], None),
    ("resnet18", ["**"], XAVIER),
    ("chimera", ["*"], XAVIER),
    ("tiny_unet", ["**"], None),
    ("inception_block", ["*"], {"cpu_generator": True, "rules": [{"param": "weight", "scheme": "kaiming_uniform"}]}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "shard", "init"), [c for c in CASES if c[0] != "big_mlp"])
def test_sharded_build_equals_build_bit_for_bit(name, shard, init):
    model = build_sharded(ZOO / f"{name}.yaml", shard=shard, seed=7, init=init)
    ref = mf.build(ZOO / f"{name}.yaml", seed=7, init=init)
    assert is_sharded(model) and not is_sharded(ref)
    assert_same(full_state_dict(model), ref.state_dict())
    x = make_input(ref.modelfactory_info.spec.input, seed=1)
    with torch.no_grad():
        out, want = model(x), ref(x)
    out, want = (out[0], want[0]) if isinstance(out, tuple) else (out, want)
    assert torch.equal(out, want)
    facts = model.modelfactory_info.facts
    assert (
        facts["strategy"] == "fsdp" and facts["world_size"] == 1 and facts["units"][-1] == "<root>"
    )
    assert model.modelfactory_info.init_report == ref.modelfactory_info.init_report


def test_ties_and_shared_modules_stay_one_tensor_on_the_shards():
    lm = build_sharded(ZOO / "tied_lm.yaml", shard=[["embedding", "head"], "body"])
    assert lm.head.weight is lm.embedding.weight
    net = build_sharded(ZOO / "shared.yaml", shard=["2"])
    assert net[2] is net[4]
    net(torch.rand(2, 4)).sum().backward()  # a shared unit runs twice per forward
    assert net[2].weight.grad is not None


def test_check_false_and_a_parallel_spec_build_the_same():
    spec = to_parallel_spec({"strategy": "fsdp", "shard": ["*"], "reshard_after_forward": False})
    a = build_sharded(ZOO / "mlp.yaml", shard=spec, seed=2, check=False)
    assert a.modelfactory_info.facts["reshard_after_forward"] is False
    assert_same(full_state_dict(a), mf.build(ZOO / "mlp.yaml", seed=2).state_dict())


def test_local_parameter_bytes_at_world_one_is_the_whole_model():
    model = build_sharded(ZOO / "mlp.yaml", shard=["*"])
    assert local_parameter_bytes(model) == sum(p.numel() * 4 for p in model.parameters())


def test_bad_seed_and_device_are_model_factory_errors():
    with pytest.raises(ModelFactoryError, match="seed"):
        build_sharded(ZOO / "mlp.yaml", seed=-1)
    with pytest.raises(ModelFactoryError, match="needs real memory"):
        build_sharded(ZOO / "mlp.yaml", device="meta")


def test_single_file_save_refuses_a_sharded_model(tmp_path):
    model = build_sharded(ZOO / "mlp.yaml", shard=["*"])
    with pytest.raises(CheckpointError, match="save_dcp"):
        mf.save(model, tmp_path / "m.safetensors")


# ----------------------------------------------------------------- DCP checkpoints


@pytest.fixture(scope="module")
def tied_dir(tmp_path_factory):
    model = build_sharded(
        ZOO / "tied_lm.yaml", shard=[["embedding", "head"]], seed=3, init=HEAD_RULE
    )
    return save_dcp(model, tmp_path_factory.mktemp("dcp") / "tied.dcp")


def reference():
    return mf.build(ZOO / "tied_lm.yaml", seed=3, init=HEAD_RULE).state_dict()


def test_dcp_dir_holds_data_index_and_record(tied_dir):
    names = sorted(os.listdir(tied_dir))
    assert names == [".metadata", "__0_0.distcp", RECORD]
    checkpoint = read_dcp(tied_dir)
    assert checkpoint.world_size == 1 and checkpoint.seed == 3
    assert checkpoint.ties == [["embedding.weight", "head.weight"]]
    assert "head.weight" not in checkpoint.layout()[0]  # a tie is stored once
    assert not any(p.name.startswith(".tied.dcp.") for p in tied_dir.parent.iterdir())


def test_dcp_loads_plain_and_sharded(tied_dir):
    plain = load_dcp(tied_dir)
    assert not is_sharded(plain) and plain.head.weight is plain.embedding.weight
    assert_same(plain.state_dict(), reference())
    sharded = load_dcp(tied_dir, shard=[])
    assert sharded.head.weight is sharded.embedding.weight
    assert_same(full_state_dict(sharded), reference())


def test_dcp_converts_to_and_from_the_single_file_checkpoint(tied_dir, tmp_path):
    single = dcp_to_safetensors(tied_dir, tmp_path / "tied.safetensors")
    loaded = mf.load(single)
    assert loaded.head.weight is loaded.embedding.weight
    assert_same(loaded.state_dict(), reference())
    back = safetensors_to_dcp(single, tmp_path / "back.dcp")
    assert_same(load_dcp(back).state_dict(), reference())
    direct = mf.save(mf.build(ZOO / "shared.yaml", seed=4), tmp_path / "shared.safetensors")
    net = load_dcp(safetensors_to_dcp(direct, tmp_path / "shared.dcp"), shard=["2"])
    assert net[2] is net[4]
    assert_same(full_state_dict(net), mf.load(direct).state_dict())


def test_save_goes_into_a_fresh_directory(tied_dir, tmp_path):
    model = load_dcp(tied_dir)
    with pytest.raises(CheckpointError, match="exists"):
        save_dcp(model, tied_dir)
    target = tmp_path / "again.dcp"
    first = read_dcp(save_dcp(model, target)).save_id
    second = read_dcp(save_dcp(model, target, overwrite=True)).save_id
    assert first != second and sorted(p.name for p in tmp_path.iterdir()) == ["again.dcp"]


def test_save_dcp_needs_a_modelfactory_model(tmp_path):
    with pytest.raises(CheckpointError, match="not built by modelfactory"):
        save_dcp(torch.nn.Linear(2, 2), tmp_path / "x.dcp")


def copy_of(tied_dir, tmp_path):
    import shutil

    return shutil.copytree(tied_dir, tmp_path / "copy.dcp")


def test_a_save_that_did_not_finish_is_refused(tied_dir, tmp_path):
    broken = copy_of(tied_dir, tmp_path)
    (broken / ".metadata").unlink()
    with pytest.raises(CheckpointError, match="did not finish"):
        load_dcp(broken)
    (broken / RECORD).unlink()
    with pytest.raises(CheckpointError, match=f"no {RECORD}"):
        load_dcp(broken)


@pytest.mark.filterwarnings("ignore::UserWarning")  # DCP warns of the overwrite we test
def test_a_directory_saved_into_again_is_refused(tied_dir, tmp_path):
    mixed = copy_of(tied_dir, tmp_path)
    dcp.save(mf.build(ZOO / "tied_lm.yaml").state_dict(), checkpoint_id=mixed, no_dist=True)
    with pytest.raises(CheckpointError, match="written again after the record"):
        load_dcp(mixed)


def test_a_truncated_data_file_is_a_checkpoint_error(tied_dir, tmp_path):
    broken = copy_of(tied_dir, tmp_path)
    data = broken / "__0_0.distcp"
    os.truncate(data, data.stat().st_size // 2)
    with pytest.raises(CheckpointError, match="missing, truncated or corrupted"):
        load_dcp(broken)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["MF_MARKER"],))


def test_dcp_metadata_is_never_unpickled_with_code(tied_dir, tmp_path, monkeypatch):
    hostile = copy_of(tied_dir, tmp_path)
    marker = tmp_path / "ran"
    monkeypatch.setenv("MF_MARKER", str(marker))
    (hostile / ".metadata").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError, match="'posix.system' is not part of DCP metadata"):
        load_dcp(hostile)
    assert not marker.exists()


def test_a_checkpoint_of_another_architecture_is_refused_before_loading(tied_dir):
    other = mf.build(ZOO / "mlp.yaml")
    with pytest.raises(CheckpointError, match="does not match the model") as caught:
        load_dcp_into(other, tied_dir)
    assert any("missing from the checkpoint" in str(p) for p in caught.value.problems)


def test_an_edited_record_is_refused(tied_dir, tmp_path):
    edited = copy_of(tied_dir, tmp_path)
    (edited / RECORD).write_text('{"format": "modelfactory-dcp/1"}')
    with pytest.raises(CheckpointError, match="is not a modelfactory-dcp/1 record"):
        load_dcp(edited)
    with pytest.raises(CheckpointError, match="is not a directory"):
        load_dcp(tmp_path / "nothing.dcp")


def test_resume_sees_a_complete_dcp_checkpoint(tied_dir, tmp_path):
    import json
    import shutil

    from modelfactory.app.summary import incomplete_reason

    job = tmp_path / "job"
    shutil.copytree(tied_dir, job / "model.dcp")
    metrics = {"status": "ok", "config_sha256": "x", "strategy": "fsdp", "device": "cpu"}
    (job / "metrics.json").write_text(json.dumps(metrics))
    assert incomplete_reason(job, "x") is None
    (job / "model.dcp" / ".metadata").unlink()
    assert "did not finish" in incomplete_reason(job, "x")
