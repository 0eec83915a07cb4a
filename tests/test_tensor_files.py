"""The text's file workflow: tensors, lists, dicts and plain PyTorch state_dict files."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import modelfactory as mf


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(torch.arange(4.0), id="x-file"),
        pytest.param([torch.arange(4.0), torch.zeros(4, dtype=torch.int64)], id="x-files"),
        pytest.param((torch.ones(2, 3),), id="tuple"),
        pytest.param(
            {"x": torch.arange(4.0), "y": torch.zeros(4, dtype=torch.float64)}, id="mydict"
        ),
        pytest.param([], id="empty-list"),
    ],
)
def test_save_tensors_round_trips_the_container(obj, tmp_path):
    path = mf.save_tensors(obj, tmp_path / "t.safetensors")
    back = mf.load_tensors(path)
    if isinstance(obj, torch.Tensor):
        assert isinstance(back, torch.Tensor) and torch.equal(back, obj)
    elif isinstance(obj, dict):
        assert isinstance(back, dict) and back.keys() == obj.keys()
        assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in obj.items())
    else:
        assert isinstance(back, list) and len(back) == len(obj)
        assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(back, obj, strict=True))
    with safe_open(str(path), framework="pt") as handle:  # the file is plain safetensors
        assert handle.metadata()["modelfactory.container"] in {"tensor", "list", "dict"}


def test_save_tensors_stores_views_and_repeats_as_copies(tmp_path):
    x = torch.arange(6.0)
    back = mf.load_tensors(mf.save_tensors({"a": x, "b": x[2:4], "c": x}, tmp_path / "t.st"))
    assert (
        torch.equal(back["a"], x) and torch.equal(back["b"], x[2:4]) and torch.equal(back["c"], x)
    )


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        pytest.param(3.0, "found float", id="scalar"),
        pytest.param([torch.ones(1), "text"], "not so at '1'", id="list-item"),
        pytest.param({1: torch.ones(1)}, "not so at 1", id="dict-key"),
    ],
)
def test_save_tensors_rejects_what_it_cannot_store(obj, match, tmp_path):
    with pytest.raises(mf.CheckpointError, match=match):
        mf.save_tensors(obj, tmp_path / "t.safetensors")
    assert not (tmp_path / "t.safetensors").exists()


def test_plain_safetensors_file_reads_as_a_dict(tmp_path):
    save_file({"w": torch.ones(2)}, str(tmp_path / "plain.safetensors"))
    assert mf.load_tensors(tmp_path / "plain.safetensors").keys() == {"w"}


def test_container_kind_that_does_not_match_the_names_is_an_error(tmp_path):
    save_file(
        {"a": torch.ones(1)},
        str(tmp_path / "t.safetensors"),
        metadata={"modelfactory.container": "list"},
    )
    with pytest.raises(mf.CheckpointError, match="says it holds a 'list'"):
        mf.load_tensors(tmp_path / "t.safetensors")


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(torch.arange(4.0), id="x-file"),
        pytest.param([torch.arange(4.0), torch.zeros(4)], id="x-files"),
        pytest.param({"x": torch.arange(4.0)}, id="mydict"),
    ],
)
def test_load_tensors_reads_the_texts_torch_save_files(obj, tmp_path):
    torch.save(obj, tmp_path / "x-file.pt")
    back = mf.load_tensors(tmp_path / "x-file.pt")
    assert type(back) is type(obj)


def test_load_tensors_rejects_a_pt_file_of_other_data(tmp_path):
    torch.save({"x": 1}, tmp_path / "n.pt")
    with pytest.raises(mf.CheckpointError, match="not a tensor, a list of tensors or a dict"):
        mf.load_tensors(tmp_path / "n.pt")


# --- state_dict .pt files -----------------------------------------------------------------------


def test_state_dict_written_by_torch_loads_into_a_built_model(zoo_path, tmp_path):
    source = mf.build(zoo_path("mlp_block"), seed=1)
    torch.save(source.state_dict(), tmp_path / "mlp.params.pt")  # as the text does
    model = mf.build(zoo_path("mlp_block"), seed=2)
    assert mf.load_weights(model, tmp_path / "mlp.params.pt") == []
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_save_state_dict_writes_what_torch_load_reads(zoo_path, tmp_path):
    model = mf.build(zoo_path("shared"), seed=1)
    path = mf.save_state_dict(model, tmp_path / "shared.pt")
    plain = torch.load(path, weights_only=True)
    assert plain.keys() == model.state_dict().keys()
    assert plain["2.weight"].data_ptr() == plain["4.weight"].data_ptr()  # one tensor, as torch.save
    assert mf.load_state_dict(path).keys() == plain.keys()
    fresh = mf.build(zoo_path("shared"), seed=2)
    fresh.load_state_dict(plain)
    assert torch.equal(fresh[2].weight, model[2].weight)


def test_state_dict_mismatch_in_a_pt_file_is_explicit(zoo_path, tmp_path):
    torch.save(mf.build(zoo_path("mlp")).state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(mf.CheckpointError, match="does not match the model") as info:
        mf.load_weights(mf.build(zoo_path("mlp_block")), tmp_path / "mlp.pt")
    paths = {p.path for p in info.value.problems}
    assert {"hidden.weight", "0.weight"} <= paths


def test_load_state_dict_rejects_a_pt_file_that_is_not_a_state_dict(tmp_path):
    torch.save([torch.ones(1)], tmp_path / "l.pt")
    with pytest.raises(mf.CheckpointError, match="holds a list, not a state_dict"):
        mf.load_state_dict(tmp_path / "l.pt")
    torch.save({"a": torch.ones(1), "b": 2}, tmp_path / "d.pt")
    with pytest.raises(mf.CheckpointError, match=r"not name -> tensor: 'b' \(int\)"):
        mf.load_state_dict(tmp_path / "d.pt")


def test_save_state_dict_rejects_other_objects(tmp_path):
    with pytest.raises(mf.CheckpointError, match="expected an nn.Module or a mapping"):
        mf.save_state_dict([torch.ones(1)], tmp_path / "x.pt")
