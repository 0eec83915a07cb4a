"""Calls and values: keyword arguments of a child call, dropped outputs (_), nested unpacking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import modelfactory as mf
from modelfactory.errors import ShapeError, SpecError

MHA = {"type": "MultiheadAttention", "embed_dim": 16, "num_heads": 2, "batch_first": True}


def attention(forward, children=None, **extra):
    return {
        "input": {"shape": [2, 5, 16], "dist": "randn"},
        "network": {"name": "Attn", "children": children or {"attn": MHA}, "forward": forward}
        | extra,
    }


def problems(data, error=SpecError):
    with pytest.raises(error) as info:
        mf.build(data)
    return [str(p) for p in info.value.problems]


@pytest.fixture
def recurrent(registrations):
    """A layer returning ``(out, (h, c))`` like ``nn.LSTM`` (whose arguments are another issue's)."""

    @mf.register_layer(name="TinyLSTM")
    class TinyLSTM(nn.Module):
        def __init__(self, size: int) -> None:
            super().__init__()
            self.lstm = nn.LSTM(size, size, batch_first=True)

        def reset_parameters(self) -> None:
            self.lstm.reset_parameters()

        def forward(
            self, x: torch.Tensor
        ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
            return self.lstm(x)

    return TinyLSTM


# --- keyword arguments ---------------------------------------------------------------------
def test_a_call_takes_keyword_arguments_and_drops_an_output():
    model = mf.build(
        attention(
            [
                {
                    "call": "attn",
                    "in": ["x", "x", "x"],
                    "kwargs": {"need_weights": False},
                    "out": ["y", "_"],
                }
            ]
        )
    )
    x = torch.randn(2, 5, 16)
    expected, weights = model.attn(x, x, x, need_weights=False)
    assert weights is None
    assert torch.equal(model(x), expected)  # an unpacked last step ends the forward


def test_a_keyword_argument_may_pass_a_named_value():
    data = attention(
        [
            {
                "call": "attn",
                "in": ["x", "x", "x"],
                "kwargs": {"attn_mask": {"value": "causal"}, "need_weights": False},
                "out": ["y", "_"],
            }
        ],
        constants={
            "causal": {"shape": [5, 5], "fill": "ones", "dtype": "bool", "triu": 1},
        },
    )
    model = mf.build(data)
    x = torch.randn(2, 5, 16)
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
    assert torch.equal(model.causal, mask)
    assert torch.equal(model(x), model.attn(x, x, x, attn_mask=mask, need_weights=False)[0])


def test_keyword_problems_name_the_forward_arguments():
    found = problems(
        attention(
            [
                {
                    "call": "attn",
                    "in": ["x", "x", "x"],
                    "kwargs": {"need_weight": False, "query": 1, "attn_mask": {"value": "mask"}},
                    "out": ["y", "_"],
                }
            ]
        )
    )
    assert any(
        p.startswith(
            "network.forward[0].kwargs.need_weight: MultiheadAttention.forward takes no "
            "argument 'need_weight'. Did you mean 'need_weights'?"
        )
        for p in found
    ), found
    assert any("'query' is already passed by 'in'" in p for p in found), found
    assert any("keyword value 'mask' is not defined before this step" in p for p in found), found


def test_keywords_beside_the_call_say_where_they_go():
    (found,) = problems(
        attention([{"call": "attn", "in": ["x", "x", "x"], "need_weights": False, "out": "y"}])
    )
    assert found.startswith(
        "network.forward[0].need_weights: unknown key 'need_weights' in a child"
    )
    assert "go under 'kwargs': {call: attn, kwargs: {need_weights: ...}}" in found


def test_keywords_cannot_go_to_a_composite_or_an_op():
    inner = {"inner": {"children": {"act": "ReLU"}}}
    (found,) = problems(attention([{"call": "inner", "kwargs": {"k": 1}}], children=inner))
    assert "child 'inner' is a composite: it takes its inputs through 'in'" in found
    (found,) = problems(attention([{"op": "relu", "kwargs": {"k": 1}}], children=inner))
    assert found == (
        "network.forward[0]: 'kwargs' is for child calls; an op's arguments are written beside 'op'"
    )


# --- dropping and unpacking ----------------------------------------------------------------
def test_nested_tuples_unpack_and_several_outputs_drop(recurrent):
    data = {
        "input": {"shape": [2, 5, 4], "dist": "randn"},
        "network": {
            "name": "Classifier",
            "children": {
                "rnn": {"type": "TinyLSTM", "size": 4},
                "head": {"type": "Linear", "in_features": 4, "out_features": 3},
            },
            "forward": [
                {"call": "rnn", "out": ["_", ["h", "_"]]},
                {"op": "sum", "in": "h", "dim": 0},
                "head",
            ],
        },
    }
    model = mf.build(data)
    x = torch.randn(2, 5, 4)
    _, (h, _) = model.rnn(x)
    torch.testing.assert_close(model(x), model.head(h.sum(0)))


def test_a_last_step_that_unpacks_returns_what_it_keeps(recurrent):
    data = {
        "input": {"shape": [2, 5, 4], "dist": "randn"},
        "network": {
            "name": "Keep",
            "children": {"rnn": {"type": "TinyLSTM", "size": 4}},
            "forward": [{"call": "rnn", "out": ["y", ["h", "c"]]}],
        },
    }
    model = mf.build(data)
    x = torch.randn(2, 5, 4)
    y, (h, c) = model.rnn(x)
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 3
    for ours, theirs in zip(out, (y, h, c), strict=True):
        assert torch.equal(ours, theirs)


def test_discard_problems():
    found = problems(
        attention(
            [
                {"call": "attn", "in": ["x", "x", "x"], "out": ["y", "_"]},
                {"op": "relu", "in": "_"},
            ]
        )
    )
    assert any(
        p.startswith("network.forward[1].in: '_' drops a value and cannot be read") for p in found
    )
    (found,) = problems(attention([{"call": "attn", "in": ["x", "x", "x"], "out": ["_", "_"]}]))
    assert "the last step drops its whole result ('_'), so the forward returns nothing" in found
    found = problems(
        attention([{"call": "attn", "in": ["x", "x", "x"], "out": ["y", "w"]}, {"op": "relu"}])
    )
    assert any("this step has no 'in' and step 0 keeps no single value" in p for p in found), found


def test_several_discards_are_neither_defined_twice_nor_unused(recurrent):
    data = {
        "input": {"shape": [2, 5, 4]},
        "network": {
            "name": "Drop",
            "children": {"rnn": {"type": "TinyLSTM", "size": 4}},
            "forward": [{"call": "rnn", "out": ["y", ["_", "_"]]}, {"op": "relu"}],
        },
    }
    assert mf.build(data)(torch.rand(2, 5, 4)).shape == (2, 5, 4)


def test_an_unpacking_mismatch_is_located_at_the_step(recurrent):
    data = {
        "input": {"shape": [2, 5, 4]},
        "network": {
            "name": "Bad",
            "children": {"rnn": {"type": "TinyLSTM", "size": 4}},
            "forward": [
                {"call": "rnn", "out": ["y", ["h", ["c"]]]},
                {"op": "add", "in": ["y", "h", "c"]},
            ],
        },
    }
    (found,) = problems(data, ShapeError)
    assert found.startswith(
        "network.forward[0].out: step unpacks 1 values ['c'], got one tensor; match 'out'"
    ), found


def test_steps_dump_and_read_back():
    data = attention(
        [
            {
                "call": "attn",
                "in": ["x", "x", "x"],
                "kwargs": {"need_weights": False},
                "out": ["y", ["_"]],
            },
            {"op": "relu", "in": "y"},
        ]
    )
    spec = mf.validate(data)
    dumped = spec.model_dump(mode="json", by_alias=True)
    assert dumped["network"]["forward"][0] == {
        "call": "attn",
        "in": ["x", "x", "x"],
        "out": ["y", ["_"]],
        "kwargs": {"need_weights": False},
    }
    assert mf.validate(dumped) == spec
