"""Symbolic shapes equal real ones: the zoo, every docs example, and random stacks of layers.

The shape check computes shapes from the rules beside each registration
without running anything; these tests run the real model on small inputs and
compare. Invalid stacks must be refused by both.
"""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import CONF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_docs import EXAMPLES
from torch import nn

import modelfactory as mf
from modelfactory.builder.forward import make_input
from modelfactory.errors import ShapeError
from modelfactory.registry import LAYERS
from modelfactory.sharing import unique_tensors

ZOO = [p for p in sorted((CONF / "model").glob("*.yaml")) if p.stem != "big_mlp"]


def real_shapes(model: nn.Module, spec: mf.ModelSpec) -> list[list[int]]:
    with torch.no_grad():
        out = model(make_input(spec.input, seed=0))
    outs = out if isinstance(out, tuple) else (out,)
    return [list(o.shape) for o in outs]


def assert_symbolic_equals_real(source) -> None:
    checked = mf.check(source)
    model = mf.build(checked)
    assert checked.output_shapes == real_shapes(model, checked.spec)
    assert checked.elements == sum(t.numel() for t in unique_tensors(model))


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_zoo_shapes_and_counts_match_a_real_forward(path):
    assert_symbolic_equals_real(path)


@pytest.mark.parametrize("text", [e for e in EXAMPLES if "rules:" not in e.values[0]])
def test_docs_examples_shapes_match_a_real_forward(text):
    assert_symbolic_equals_real(yaml.safe_load(text))


def test_common_layers_have_rules():
    for name in ("Linear", "Conv2d", "BatchNorm2d", "LayerNorm", "ReLU", "MaxPool2d",
                 "AdaptiveAvgPool2d", "Flatten", "Embedding", "LSTM", "MultiheadAttention",
                 "TransformerEncoderLayer", "Upsample", "PixelShuffle", "Dropout"):  # fmt: skip
        assert LAYERS.get(name).infer is not None, name


# --------------------------------------------------------------- random stacks
CHANNELS = st.integers(1, 6)


@st.composite
def conv_stack(draw):
    """A random stack over [N, C, L] inputs, valid or not (sizes drawn independently)."""
    layers = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "pool", "norm", "act", "drop", "avg"]))
        if kind == "conv":
            layers.append(
                {
                    "type": "Conv1d",
                    "in_channels": draw(CHANNELS),
                    "out_channels": draw(CHANNELS),
                    "kernel_size": draw(st.integers(1, 5)),
                    "stride": draw(st.integers(1, 3)),
                    "padding": draw(st.integers(0, 2)),
                    "dilation": draw(st.integers(1, 2)),
                }
            )
        elif kind == "pool":
            k = draw(st.integers(1, 4))
            layers.append(
                {
                    "type": "MaxPool1d",
                    "kernel_size": k,
                    "stride": draw(st.integers(1, 3)),
                    "padding": draw(st.integers(0, k // 2)),
                    "ceil_mode": draw(st.booleans()),
                }
            )
        elif kind == "avg":
            layers.append({"type": "AdaptiveAvgPool1d", "output_size": draw(st.integers(1, 4))})
        elif kind == "norm":
            layers.append({"type": "BatchNorm1d", "num_features": draw(CHANNELS)})
        elif kind == "act":
            layers.append(draw(st.sampled_from(["ReLU", "GELU", "Tanh", "Identity"])))
        else:
            layers.append({"type": "Dropout", "p": 0.1})
    layers.append("Flatten")
    layers.append({"type": "Linear", "in_features": draw(st.integers(1, 40)), "out_features": 3})
    shape = [2, draw(CHANNELS), draw(st.integers(1, 24))]
    return {"input": {"shape": shape}, "network": layers}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=conv_stack())
def test_random_stacks_agree_with_a_real_forward(spec):
    try:
        checked = mf.check(spec)
    except ShapeError:
        checked = None
    model = mf.build(spec, check=False)
    x = make_input(mf.validate(spec).input, seed=0)
    try:
        with torch.no_grad():
            real = list(model(x).shape)
    except Exception:  # noqa: BLE001 - torch refuses: the check must have refused too
        assert checked is None, f"the check accepted a stack torch refuses: {spec}"
        return
    assert checked is not None, f"the check refused a stack torch runs: {spec}"
    assert checked.output_shapes == [real]
