"""Layout: repeats flattened into their list, and lists that print under a class name."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import modelfactory as mf
from modelfactory.errors import SpecError

CONV = {"type": "Conv2d", "in_channels": 8, "out_channels": 8, "kernel_size": 3, "padding": 1}
CONV_BN = {
    "sequential": [CONV, {"type": "BatchNorm2d", "num_features": 8}, "ReLU6"],
    "name": "Conv2dNormActivation",
}


def features(**extra):
    return {
        "input": {"shape": [1, 3, 8, 8]},
        "network": {
            "name": "Net",
            "children": {
                "features": [
                    {"type": "Conv2d", "in_channels": 3, "out_channels": 8, "kernel_size": 1},
                    {"repeat": 3, "flatten": True, "body": CONV_BN},
                    {"repeat": 2, "flatten": True, "body": "Identity"},
                    {"type": "AdaptiveAvgPool2d", "output_size": 1},
                ]
            },
        },
        **extra,
    }


def test_a_flattened_repeat_numbers_its_copies_on_in_the_list():
    model = mf.build(features())
    names = [name for name, _ in model.features.named_children()]
    assert names == [str(i) for i in range(7)]
    assert type(model.features) is nn.Sequential
    assert [type(m).__name__ for m in model.features] == [
        "Conv2d",
        "Conv2dNormActivation",
        "Conv2dNormActivation",
        "Conv2dNormActivation",
        "Identity",
        "Identity",
        "AdaptiveAvgPool2d",
    ]
    assert "features.3.0.weight" in model.state_dict()
    assert model.features[1] is not model.features[2]  # fresh copies
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 8, 1, 1)


def test_a_named_list_prints_as_its_class_and_is_still_a_sequential():
    model = mf.build(features())
    block = model.features[1]
    assert isinstance(block, nn.Sequential)
    assert type(block).__name__ == "Conv2dNormActivation"
    assert type(block).__module__ == "modelfactory.sequentials"
    assert str(block).startswith("Conv2dNormActivation(\n  (0): Conv2d(8, 8")
    assert isinstance(block[0], nn.Conv2d) and len(block) == 3
    assert [type(m).__name__ for m in block[1:]] == ["BatchNorm2d", "ReLU6"]


def test_named_lists_pickle_deepcopy_and_torch_save():
    model = mf.build(features(), seed=3)
    x = torch.rand(1, 3, 8, 8)
    expected = model.eval()(x)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for clone in (
        pickle.loads(pickle.dumps(model)),
        copy.deepcopy(model),
        torch.load(buffer, weights_only=False),
    ):
        assert type(clone.features[1]) is type(model.features[1])
        assert str(clone) == str(model)
        assert torch.equal(clone(x), expected)


def test_a_named_mapping_sequential_takes_a_class_name_too():
    data = {
        "input": {"shape": [2, 4]},
        "network": {
            "sequential": {
                "fc": {"type": "Linear", "in_features": 4, "out_features": 2},
                "act": "ReLU",
            },
            "name": "Head",
        },
    }
    model = mf.build(data)
    assert type(model).__name__ == "Head" and isinstance(model, nn.Sequential)
    assert list(model.state_dict()) == ["fc.weight", "fc.bias"]
    assert mf.build(data, init=[{"module": "fc", "scheme": "zeros"}]).fc.weight.abs().sum() == 0


def test_a_named_list_and_a_composite_may_share_a_name():
    data = {
        "input": {"shape": [2, 4]},
        "blocks": {
            "Head": {"children": {"fc": {"type": "Linear", "in_features": 4, "out_features": 4}}}
        },
        "network": {"sequential": ["Head", "ReLU"], "name": "Head"},
    }
    model = mf.build(data)
    assert type(model).__name__ == type(model[0]).__name__ == "Head"
    assert isinstance(model, nn.Sequential) and not isinstance(model[0], nn.Sequential)
    assert str(pickle.loads(pickle.dumps(model))) == str(model)


def test_flattened_copies_infer_their_sizes_one_by_one():
    data = {
        "input": {"shape": [2, 4]},
        "network": [
            {"repeat": 2, "flatten": True, "body": {"type": "Linear", "out_features": 6}},
            {"type": "Linear", "out_features": 3},
        ],
    }
    model = mf.build(data)
    assert [m.in_features for m in model] == [4, 6, 6]


def test_flatten_problems():
    data = {
        "input": {"shape": [2, 4]},
        "network": {
            "sequential": {"a": {"repeat": 2, "flatten": True, "body": "ReLU"}},
        },
    }
    with pytest.raises(SpecError) as info:
        mf.validate(data)
    (problem,) = info.value.problems
    assert problem.path == "network.sequential.a.flatten"
    assert "the repeat must be an item of a list" in problem.message
    data = {
        "input": {"shape": [2, 4]},
        "network": [{"repeat": 2, "flatten": True, "names": "b{i}", "body": "ReLU"}],
    }
    with pytest.raises(SpecError, match="a flattened repeat is numbered by its enclosing list"):
        mf.validate(data)


def test_conditions_on_flattened_repeats_and_their_bodies(tmp_path):
    data = {
        "input": {"shape": [2, 4]},
        "blocks": {
            "Stack": {
                "params": {"extra": True, "act": False},
                "body": [
                    {"type": "Linear", "in_features": 4, "out_features": 4},
                    {"repeat": 2, "flatten": True, "when": "extra", "body": "Identity"},
                    {"repeat": 2, "flatten": True, "body": {"type": "ReLU", "when": "act"}},
                    {"type": "Linear", "in_features": 4, "out_features": 4},
                ],
            }
        },
        "network": [{"block": "Stack"}, {"block": "Stack", "with": {"extra": False, "act": True}}],
    }
    first, second = mf.build(data)
    assert [type(m).__name__ for m in first] == ["Linear", "Identity", "Identity", "Linear"]
    assert [type(m).__name__ for m in second] == ["Linear", "ReLU", "ReLU", "Linear"]
    assert list(second.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]
