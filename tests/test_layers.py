"""Every public nn.Module subclass of torch.nn is a layer a model file can name, or is listed as not.

Each registered torch.nn layer is built through the whole pipeline from an
example generated from its argument schema (required arguments only; sizes
that shape inference can fill are left out), and run on a small input. The
classes that are not layers are in ``registry.layers.NOT_LAYERS`` with the
reason, and docs/language.md lists them.
"""

from __future__ import annotations

import inspect
import typing
import warnings
from typing import Any

import pytest
import torch
from conftest import ROOT
from torch import nn

import modelfactory as mf
from modelfactory.registry import LAYERS
from modelfactory.registry.layers import NOT_LAYERS

TORCH_MODULES = sorted(
    name
    for name, obj in vars(nn).items()
    if inspect.isclass(obj) and issubclass(obj, nn.Module) and not name.startswith("_")
)
TORCH_LAYERS = [name for name in TORCH_MODULES if name not in NOT_LAYERS]

# Required arguments by name: the generic example values (channels and features 4).
BY_NAME: dict[str, Any] = {
    "in_features": 4,
    "in1_features": 4,
    "in2_features": 4,
    "out_features": 3,
    "in_channels": 4,
    "out_channels": 4,
    "num_features": 4,
    "num_channels": 4,
    "num_groups": 2,
    "normalized_shape": 4,
    "embed_dim": 4,
    "num_heads": 2,
    "d_model": 4,
    "nhead": 2,
    "input_size": 4,
    "hidden_size": 4,
    "num_embeddings": 10,
    "embedding_dim": 4,
    "kernel_size": 2,
    "output_size": 2,
    "size": 2,
    "padding": 1,
    "upscale_factor": 2,
    "downscale_factor": 2,
    "groups": 2,
    "value": 0.5,
    "threshold": 0.1,
    "norm_type": 2.0,
    "n_classes": 4,
    "num_classes": 4,
    "cutoffs": [2],
    "dim": 1,
    "unflattened_size": [2, 2],
    "num_layers": 1,
}

# Layers whose example needs more than their required arguments.
EXTRA: dict[str, dict[str, Any]] = {
    "Transformer": {
        "d_model": 8,
        "nhead": 2,
        "num_encoder_layers": 1,
        "num_decoder_layers": 1,
        "dim_feedforward": 16,
    },
    "TransformerEncoder": {
        "encoder_layer": {"type": "TransformerEncoderLayer", "d_model": 4, "nhead": 2},
        "norm": {"type": "LayerNorm", "normalized_shape": 4},
    },
    "TransformerDecoder": {
        "decoder_layer": {"type": "TransformerDecoderLayer", "d_model": 4, "nhead": 2},
    },
    "FractionalMaxPool2d": {"output_size": 2},
    "FractionalMaxPool3d": {"output_size": 2},
    "Upsample": {"scale_factor": 2.0},
    "UpsamplingNearest2d": {"scale_factor": 2.0},
    "UpsamplingBilinear2d": {"scale_factor": 2.0},
    "Fold": {"output_size": 4},
}


def _by_annotation(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return typing.get_args(annotation)[0]
    if origin is typing.Annotated:
        return _by_annotation(typing.get_args(annotation)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return _by_annotation(next(a for a in typing.get_args(annotation) if a is not type(None)))
    if origin in (list, tuple):
        return [2]
    return {int: 2, float: 0.5, bool: False, str: "x"}.get(annotation, 2)


def example(name: str, *, infer: bool) -> dict[str, Any]:
    """The example node for ``name``: required arguments from its schema (inferable ones left out)."""
    entry = LAYERS.get(name)
    node: dict[str, Any] = {"type": name}
    for field, info in entry.args_model.model_fields.items():
        if not info.is_required() or (infer and field in entry.shape_rule):
            continue
        node[field] = BY_NAME[field] if field in BY_NAME else _by_annotation(info.annotation)
    node.update(EXTRA.get(name, {}))
    if infer:
        for field in entry.shape_rule:
            node.pop(field, None)
    return node


def _f(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


def _classes(*shape: int, high: int = 4) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(0))


def _unpool_inputs(nd: int) -> tuple[torch.Tensor, torch.Tensor]:
    pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[nd](2, return_indices=True)
    return pool(_f(2, 4, *([4] * nd)))


# The inputs of a forward, by layer (default: one float tensor, by the name's dimensionality).
def inputs_for(name: str) -> tuple[Any, ...]:
    seq = (_f(3, 2, 4),)  # (L, N, E)
    pair = (_f(2, 4), _f(2, 4))
    special: dict[str, tuple[Any, ...]] = {
        "Bilinear": pair,
        "CosineSimilarity": pair,
        "PairwiseDistance": pair,
        "MultiheadAttention": seq * 3,
        "Transformer": (_f(3, 2, 8), _f(3, 2, 8)),
        "TransformerDecoder": seq * 2,
        "TransformerDecoderLayer": seq * 2,
        "TransformerEncoder": seq,
        "TransformerEncoderLayer": seq,
        "RNN": seq,
        "LSTM": seq,
        "GRU": seq,
        "Embedding": (_classes(2, 3, high=10),),
        "EmbeddingBag": (_classes(2, 3, high=10),),
        "AdaptiveLogSoftmaxWithLoss": (_f(2, 4), _classes(2)),
        "LinearCrossEntropyLoss": (_f(2, 4), _classes(2)),
        "CrossEntropyLoss": (_f(2, 4), _classes(2)),
        "NLLLoss": (_f(2, 4), _classes(2)),
        "NLLLoss2d": (_f(2, 4, 3, 3), _classes(2, 3, 3)),
        "MultiMarginLoss": (_f(2, 4), _classes(2)),
        "MultiLabelMarginLoss": (_f(2, 4), _classes(2, 4)),
        "MarginRankingLoss": (_f(2), _f(2), torch.tensor([1.0, -1.0])),
        "CosineEmbeddingLoss": (_f(2, 4), _f(2, 4), torch.tensor([1.0, -1.0])),
        "TripletMarginLoss": (_f(2, 4), _f(2, 4), _f(2, 4)),
        "TripletMarginWithDistanceLoss": (_f(2, 4), _f(2, 4), _f(2, 4)),
        "GaussianNLLLoss": (_f(2, 4), _f(2, 4), _f(2, 4) + 0.1),
        "CTCLoss": (
            _f(5, 2, 4).log_softmax(-1),
            _classes(2, 2, high=3) + 1,
            torch.tensor([5, 5]),
            torch.tensor([2, 2]),
        ),
        "Fold": (_f(2, 16, 9),),  # C * prod(kernel) = 4 * 4, L = 3 * 3 blocks of a 4x4 output
        "MaxUnpool1d": _unpool_inputs(1),
        "MaxUnpool2d": _unpool_inputs(2),
        "MaxUnpool3d": _unpool_inputs(3),
        "Softmax2d": (_f(2, 4, 3, 3),),
        "LocalResponseNorm": (_f(2, 4, 3, 3),),
        "CrossMapLRN2d": (_f(2, 4, 3, 3),),
        "ChannelShuffle": (_f(2, 4, 3, 3),),
        "PixelShuffle": (_f(2, 4, 3, 3),),
        "PixelUnshuffle": (_f(2, 4, 4, 4),),
        "GroupNorm": (_f(2, 4, 3),),
        "Unfold": (_f(2, 4, 4, 4),),
        "UpsamplingNearest2d": (_f(2, 4, 3, 3),),
        "UpsamplingBilinear2d": (_f(2, 4, 3, 3),),
        "Upsample": (_f(2, 4, 3, 3),),
    }
    if name in special:
        return special[name]
    if name.endswith("Loss"):
        return pair
    if name.endswith("1d"):
        return (_f(2, 4, 6),)
    if name.endswith("2d"):
        return (_f(2, 4, 6, 6),)
    if name.endswith("3d"):
        return (_f(2, 4, 4, 4, 4),)
    return (_f(2, 4),)


# Built, but not run: the forward needs what a CPU test process does not have.
NO_FORWARD = {
    "SyncBatchNorm": "its forward needs a GPU or a distributed process group",
}


def test_every_torch_module_is_a_layer_or_listed_as_not():
    unaccounted = [n for n in TORCH_MODULES if n not in LAYERS and n not in NOT_LAYERS]
    assert not unaccounted, f"neither registered nor in NOT_LAYERS: {unaccounted}"
    both = [n for n in NOT_LAYERS if n in LAYERS]
    assert not both, f"registered although listed as not a layer: {both}"
    stale = [n for n in NOT_LAYERS if not hasattr(nn, n)]
    assert not stale, f"NOT_LAYERS names classes torch.nn does not have: {stale}"
    assert all(reason.strip() for reason in NOT_LAYERS.values())


def test_the_docs_list_every_class_that_is_not_a_layer():
    text = (ROOT / "docs" / "language.md").read_text()
    section = text[text.index("## torch.nn classes that are not layers") :]
    for name in NOT_LAYERS:
        assert f"`{name}`" in section, name


@pytest.mark.parametrize("name", TORCH_LAYERS)
def test_every_torch_layer_builds_from_its_schema_and_runs(name):
    inputs = inputs_for(name)
    single = len(inputs) == 1 and inputs[0].is_floating_point()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. enable_nested_tensor with norm_first
        if single:
            # the whole pipeline: sizes left out are inferred by the shape check
            spec = {"input": {"shape": list(inputs[0].shape)}, "network": example(name, infer=True)}
            model = mf.build(spec)
        else:
            model = mf.build(
                {"input": {"shape": [2, 4]}, "network": example(name, infer=False)}, check=False
            )
        assert type(model) is getattr(nn, name)
        if name in NO_FORWARD:
            return
        model.eval()
        out = model(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    assert any(isinstance(o, torch.Tensor) for o in outs), name


def test_recurrent_layers_take_their_documented_arguments():
    for name in ("RNN", "LSTM", "GRU"):
        fields = set(LAYERS.get(name).args_model.model_fields)
        assert {"input_size", "hidden_size", "num_layers", "batch_first", "bidirectional"} <= fields
    assert "proj_size" in LAYERS.get("LSTM").args_model.model_fields
    assert "nonlinearity" in LAYERS.get("RNN").args_model.model_fields
    spec = {
        "input": {"shape": [2, 5, 4]},
        "network": {
            "type": "LSTM",
            "hidden_size": 8,
            "num_layers": 2,
            "batch_first": True,
            "proj_size": 3,
        },
    }
    checked = mf.check(spec)
    assert checked.inferred == {"network": {"input_size": 4}}
    model = mf.build(checked)
    reference = nn.LSTM(4, 8, num_layers=2, batch_first=True, proj_size=3)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LSTM with projections is not supported with oneDNN
        out, (h, c) = model(_f(2, 5, 4))
    assert out.shape == (2, 5, 3) and h.shape == (2, 2, 3) and c.shape == (2, 2, 8)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (
            {"hidden_size": 0},
            "network.hidden_size: invalid value for LSTM argument 'hidden_size': must be a positive size",
        ),
        (
            {"hidden_size": 8, "num_layers": 0},
            "network.num_layers: invalid value for LSTM argument 'num_layers': must be a positive size",
        ),
        (
            {"hidden_size": 8, "dropout": 2.0},
            "network.dropout: invalid value for LSTM argument 'dropout'",
        ),
        (
            {"hidden_size": 8, "hiden": 2},
            "unknown argument 'hiden' for LSTM. Did you mean 'hidden_size'?",
        ),
        ({"hidden_size": 8, "nonlinearity": "relu"}, "unknown argument 'nonlinearity' for LSTM"),
    ],
)
def test_recurrent_arguments_are_validated(args, fragment):
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.validate({"input": {"shape": [2, 5, 4]}, "network": {"type": "LSTM", **args}})
    assert fragment in str(info.value)


def test_transformer_encoder_takes_a_nested_layer_node():
    layer = {"type": "TransformerEncoderLayer", "d_model": 16, "nhead": 2, "batch_first": True}
    spec = {
        "input": {"shape": [2, 5, 16]},
        "network": {"type": "TransformerEncoder", "encoder_layer": layer, "num_layers": 2},
    }
    model = mf.build(spec, seed=0)
    torch.manual_seed(0)
    reference = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 2, batch_first=True), num_layers=2
    )
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
    reference.load_state_dict(model.state_dict())
    x = _f(2, 5, 16)
    model.eval(), reference.eval()
    assert torch.equal(model(x), reference(x))
    # the resolved spec stays plain data
    assert model.modelfactory_info.spec.model_dump()["network"]["encoder_layer"] == layer


@pytest.mark.parametrize(
    "nested, path, fragment",
    [
        (
            {"type": "TransformerEncoderLayer", "d_model": 16},
            "network.encoder_layer.nhead",
            "missing required argument 'nhead' for TransformerEncoderLayer",
        ),
        (
            {"type": "TransformerEncoderLayr", "d_model": 16, "nhead": 2},
            "network.encoder_layer",
            "unknown layer type 'TransformerEncoderLayr'. Did you mean 'TransformerEncoderLayer'?",
        ),
        (
            {"type": "TransformerEncoderLayer", "d_model": 16, "nhead": 2, "dropot": 0.1},
            "network.encoder_layer.dropot",
            "unknown argument 'dropot' for TransformerEncoderLayer. Did you mean 'dropout'?",
        ),
        (
            {"type": "TransformerEncoderLayer", "nhead": 2},
            "network.encoder_layer",
            "must give d_model: sizes are only inferred for layers in the network itself",
        ),
        ({"block": "enc"}, "network.encoder_layer", "must be a layer node such as"),
    ],
)
def test_nested_layer_problems_are_located_inside_the_argument(nested, path, fragment):
    spec = {
        "input": {"shape": [2, 5, 16]},
        "network": {"type": "TransformerEncoder", "encoder_layer": nested, "num_layers": 2},
    }
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.validate(spec)
    problems = info.value.problems
    assert len(problems) == 1 and problems[0].path == path, str(info.value)
    assert fragment in problems[0].message


def test_multihead_attention_builds_and_returns_its_tuple():
    spec = {
        "input": {"shape": [5, 2, 8]},
        "network": {
            "name": "SelfAttention",
            "children": {"attn": {"type": "MultiheadAttention", "num_heads": 2}},
            "forward": [
                {"call": "attn", "in": ["x", "x", "x"], "out": "both"},
                {"op": "getitem", "in": "both", "index": 0},
            ],
        },
    }
    checked = mf.check(spec)
    assert checked.inferred == {"network.children.attn": {"embed_dim": 8}}
    assert checked.output_shapes == [[5, 2, 8]]
    model = mf.build(checked)
    out, weights = model.attn(*(_f(5, 2, 8),) * 3)
    assert out.shape == (5, 2, 8) and weights.shape == (2, 5, 5)
    assert model(_f(5, 2, 8)).shape == (5, 2, 8)


def test_init_rules_reach_layers_built_from_nested_nodes():
    spec = {
        "input": {"shape": [2, 5, 8]},
        "network": {
            "type": "TransformerEncoder",
            "encoder_layer": {
                "type": "TransformerEncoderLayer",
                "d_model": 8,
                "nhead": 2,
                "batch_first": True,
            },
            "num_layers": 1,
        },
        "init": [{"type": "Linear", "param": "bias", "scheme": "zeros"}],
    }
    model = mf.build(spec)
    biases = [
        p for n, p in model.named_parameters() if n.endswith(("linear1.bias", "linear2.bias"))
    ]
    assert len(biases) == 2 and all(torch.count_nonzero(b) == 0 for b in biases)


def test_block_parameters_reach_a_nested_layer_node():
    body = {
        "type": "TransformerEncoder",
        "encoder_layer": {
            "type": "TransformerEncoderLayer",
            "d_model": {"param": "width"},
            "nhead": 2,
            "batch_first": True,
        },
        "num_layers": 1,
    }
    spec = {
        "input": {"shape": [2, 5, 16]},
        "blocks": {"Encoder": {"params": {"width": None}, "body": body}},
        "network": {"block": "Encoder", "with": {"width": 16}},
    }
    model = mf.build(spec)
    assert model.layers[0].self_attn.embed_dim == 16
    spec["network"]["with"] = {"width": -16}
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.build(spec)
    (p,) = info.value.problems
    assert p.path == "blocks.Encoder.body.encoder_layer.d_model"
    assert (
        "must be a positive size (found -16) (in the instance at network.encoder_layer.d_model)"
        in p.message
    )
