"""Learned tensors (parameters:) and non-persistent, triangular constants."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

import modelfactory as mf
from modelfactory.builder.streams import learned_stream, make_generator
from modelfactory.errors import LimitError, SpecError

TOKENS = {
    "input": {"shape": [2, 4, 8], "dist": "randn"},
    "network": {
        "name": "Tokens",
        "parameters": {
            "cls_token": {"shape": [1, 1, 8], "fill": "zeros"},
            "pos_embedding": {"shape": [1, 4, 8], "fill": "randn"},
        },
        "constants": {
            "causal": {
                "shape": [4, 4],
                "fill": "ones",
                "dtype": "bool",
                "tril": 0,
                "persistent": False,
            },
            "scale": {"shape": [8], "fill": "rand"},
        },
        "children": {"proj": {"type": "Linear", "in_features": 8, "out_features": 8}},
        "forward": [
            {"call": "proj", "out": "h"},
            {"op": "mul", "in": ["h", "scale"], "out": "s"},
            {"op": "add", "in": ["s", "pos_embedding", "cls_token"]},
        ],
    },
}


def tokens_spec():
    return copy.deepcopy(TOKENS)


class Reference(nn.Module):
    """The hand-written module the spec describes (same keys, same order)."""

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.pos_embedding = nn.Parameter(torch.randn(1, 4, 8))
        self.register_buffer("causal", torch.ones(4, 4, dtype=torch.bool).tril(), persistent=False)
        self.register_buffer("scale", torch.rand(8))
        self.proj = nn.Linear(8, 8)


def test_parameters_are_nn_parameters_under_exactly_their_keys():
    model = mf.build(tokens_spec())
    assert isinstance(model.cls_token, nn.Parameter) and model.cls_token.requires_grad
    assert isinstance(model.pos_embedding, nn.Parameter)
    assert list(model.state_dict()) == list(Reference().state_dict())
    assert [n for n, _ in model.named_parameters()] == [
        "cls_token",
        "pos_embedding",
        "proj.weight",
        "proj.bias",
    ]
    assert torch.equal(model.cls_token, torch.zeros(1, 1, 8))
    # drawn from its own named stream
    expected = torch.randn(1, 4, 8, generator=make_generator(0, learned_stream("pos_embedding")))
    assert torch.equal(model.pos_embedding, expected)
    # and trained: a backward pass reaches them
    model(torch.randn(2, 4, 8)).sum().backward()
    assert model.cls_token.grad is not None and model.pos_embedding.grad is not None


def test_init_rules_reach_parameters_by_name():
    rules = [{"param": "pos_embedding", "scheme": "normal", "std": 0.02}]
    model = mf.build(tokens_spec(), init=rules, seed=5)
    report = {row["param"]: row for row in model.modelfactory_info.init_report}
    assert report["pos_embedding"]["rule"] == "init.rules[0]"
    assert report["cls_token"]["scheme"] == "Tokens parameters: fill zeros"
    assert model.pos_embedding.std().item() < 0.1
    in_file = tokens_spec() | {"init": [{"module": "", "param": "cls_*", "scheme": "ones"}]}
    assert torch.equal(mf.build(in_file).cls_token, torch.ones(1, 1, 8))


@pytest.mark.parametrize(
    "init",
    [
        None,
        [{"param": "pos_embedding", "scheme": "trunc_normal", "std": 0.02}],
        [{"scheme": "zeros"}],
    ],
    ids=["default", "one-rule", "every-parameter"],
)
def test_meta_path_gives_the_same_values_as_the_direct_path(init):
    direct = mf.build(tokens_spec(), init=init, seed=11, strategy="direct")
    meta = mf.build(tokens_spec(), init=init, seed=11, strategy="meta")
    assert meta.modelfactory_info.facts["strategy"] == "meta"
    for key, value in direct.state_dict().items():
        assert torch.equal(value, meta.state_dict()[key]), key
    assert torch.equal(direct.causal, meta.causal)


def test_a_tied_parameter_stays_tied_on_both_paths():
    data = {
        "input": {"shape": [2, 8]},
        "network": {
            "name": "Tied",
            "parameters": {"a": {"shape": [8, 8], "fill": "randn"}, "b": {"shape": [8, 8]}},
            "forward": [
                {"op": "matmul", "in": ["x", "a"], "out": "h"},
                {"op": "matmul", "in": ["h", "b"]},
            ],
        },
        "ties": {"b": "a"},
    }
    direct, meta = (mf.build(data, strategy=s) for s in ("direct", "meta"))
    assert direct.a is direct.b and meta.a is meta.b
    assert torch.equal(direct.a, meta.a)


def test_non_persistent_constants_stay_out_of_the_state_dict_and_come_back_on_load(tmp_path):
    model = mf.build(tokens_spec(), seed=2)
    assert "causal" not in model.state_dict()
    assert torch.equal(model.causal, torch.ones(4, 4, dtype=torch.bool).tril())
    assert model.to(torch.float64).causal.dtype == torch.bool  # moved with the module, kept bool
    path = mf.save(mf.build(tokens_spec(), seed=2), tmp_path / "m.safetensors")
    for strict in (True, False):
        loaded = mf.load(path, strict=strict)
        assert torch.equal(loaded.causal, model.causal)
        assert torch.equal(loaded.pos_embedding, mf.build(tokens_spec(), seed=2).pos_embedding)
    # the hand-written module's state_dict loads as is (same keys)
    mf.build(tokens_spec()).load_state_dict(Reference().state_dict())


@pytest.mark.parametrize(
    ("fill", "expected"),
    [
        ({"fill": "ones", "dtype": "bool", "tril": 0}, torch.ones(4, 4, dtype=torch.bool).tril()),
        (
            {"fill": "full", "value": float("-inf"), "triu": 1},
            torch.full((4, 4), float("-inf")).triu(1),  # nn.Transformer's causal mask
        ),
        ({"fill": "ones", "tril": 1, "triu": -1}, torch.ones(4, 4).tril(1).triu(-1)),  # a band
    ],
    ids=["tril", "triu-full", "band"],
)
def test_masks_come_from_a_fill_and_a_triangle(fill, expected):
    data = {
        "input": {"shape": [2, 4]},
        "network": {
            "name": "Masked",
            "constants": {"mask": {"shape": [4, 4], **fill}},
            "forward": [{"op": "relu"}],
        },
    }
    assert torch.equal(mf.build(data).mask, expected)


def test_tensor_spec_problems():
    data = {
        "input": {"shape": [2, 4]},
        "network": {
            "name": "Bad",
            "parameters": {
                "ints": {"shape": [2], "dtype": "int64"},
                "vector": {"shape": [4], "tril": 0},
                "clash": {"shape": [1]},
                "flag": {"shape": [2, 2], "tril": True},
            },
            "constants": {"clash": {"shape": [1]}},
            "forward": [{"op": "relu"}],
        },
    }
    with pytest.raises(SpecError) as info:
        mf.validate(data)
    found = {p.path: p.message for p in info.value.problems}
    assert "network.parameters.ints.dtype" in found
    assert "shape needs at least two" in found["network.parameters.vector.shape"]
    assert "Input should be a valid integer" in found["network.parameters.flag.tril"]
    assert (
        "parameter 'clash' clashes with a child or constant name"
        in found["network.parameters.clash"]
    )


def test_parameters_count_against_the_budget_before_anything_is_allocated():
    data = copy.deepcopy(tokens_spec())
    data["network"]["parameters"]["huge"] = {"shape": [100000, 100000]}
    with pytest.raises(LimitError, match="the parameter has 10,000,000,000 elements"):
        mf.validate(data)


def test_parameter_shapes_take_block_parameters():
    data = {
        "input": {"shape": [2, 3, 8], "dist": "randn"},
        "blocks": {
            "Pos": {
                "params": {"n": None, "dim": None},
                "body": {
                    "name": "Pos",
                    "parameters": {
                        "pos": {"shape": [1, {"param": "n"}, {"param": "dim"}], "fill": "randn"}
                    },
                    "forward": [{"op": "add", "in": ["x", "pos"]}],
                },
            }
        },
        "network": {"block": "Pos", "with": {"n": 3, "dim": 8}},
    }
    model = mf.build(data)
    assert model.pos.shape == (1, 3, 8)
    bad = copy.deepcopy(data)
    bad["network"]["with"]["n"] = 10**9
    mf.validate(bad)  # the size is computed from parameters: known once the block is expanded
    with pytest.raises(LimitError, match="the parameter has 8,000,000,000 elements"):
        mf.build(bad)


def test_models_with_parameters_pickle():
    model = mf.build(tokens_spec())
    clone = pickle.loads(pickle.dumps(model))
    x = torch.randn(2, 4, 8)
    assert torch.equal(clone(x), model(x))
    assert torch.equal(clone.causal, model.causal) and "causal" not in clone.state_dict()


def test_a_sharded_build_fills_parameters_as_a_plain_build_does():
    from modelfactory.builder.sharded import build_sharded, full_state_dict
    from modelfactory.distributed import process_group

    data = tokens_spec()
    data["network"]["parameters"]["table"] = {"shape": [6, 8], "fill": "randn"}
    data["network"]["parameters"]["b"] = {"shape": [1, 4, 8]}
    data["ties"] = {"b": "pos_embedding"}
    with process_group(torch.device("cpu")):
        for init in (None, [{"param": "table", "scheme": "normal", "std": 0.02}]):
            sharded = full_state_dict(build_sharded(data, shard=["*"], seed=7, init=init))
            plain = mf.build(data, seed=7, init=init).state_dict()
            assert sorted(sharded) == sorted(plain)
            for key, value in plain.items():
                assert torch.equal(sharded[key], value), key
