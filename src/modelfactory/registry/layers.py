"""Layer types: every buildable ``torch.nn`` layer, plus the project's own, with their declarations.

``torch.nn`` layers are registered from the classes themselves; their argument
models come from the constructor signatures. What a signature cannot say sits
here, beside the registration, per layer family: which arguments are sizes
(``positive`` or ``non_negative``, refused at validation before torch sees
them) and which omitted size is read from which input dimension (the shape
rule), rather than in name-matching tables or a central chain of ``if`` s.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

from .layer_rules import LAYER_RULES
from .table import LAYERS, Constraint, LayerEntry, register_layer

__all__ = ["CenteredLayer", "MyLinear", "register_torch_layers", "NOT_LAYERS"]

# torch.nn classes that are not layers a model file can name, and why.
NOT_LAYERS = {
    "Module": "the base class; a model file names concrete layers",
    "Sequential": "written as a list (or {sequential: {...}}) in the language",
    "ModuleList": "written as a list in the language",
    "ModuleDict": "written as {sequential: {...}} or a composite's children",
    "ParameterList": "a composite declares its tensors under constants:",
    "ParameterDict": "a composite declares its tensors under constants:",
    "Container": "a deprecated base class",
    "LazyModuleMixin": "a mixin, not a layer",
}

_P: Constraint = "positive"
_N: Constraint = "non_negative"


def _sizes(positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = ()) -> dict:
    return {name: _P for name in positive} | {name: _N for name in non_negative}


_CONV = _sizes(
    ("in_channels", "out_channels", "kernel_size", "stride", "dilation", "groups"),
    ("padding", "output_padding"),
)
_POOL = _sizes(("kernel_size", "stride", "dilation"), ("padding",))
_NORM = _sizes(("num_features",))
_RECURRENT = _sizes(("input_size", "hidden_size"), ("num_layers", "proj_size"))
_TRANSFORMER = _sizes(
    ("d_model", "nhead", "dim_feedforward"), ("num_encoder_layers", "num_decoder_layers")
)
_PAD = _sizes((), ("padding",))

# (layer names, size constraints, shape rule: omitted size -> input dim it is read from)
_TORCH_FAMILIES: list[tuple[tuple[str, ...], dict[str, Constraint], dict[str, int]]] = [
    (("Linear",), _sizes(("in_features", "out_features")), {"in_features": -1}),
    (
        ("Bilinear",),
        _sizes(("in1_features", "in2_features", "out_features")),
        {"in1_features": -1},
    ),
    (("Conv1d", "Conv2d", "Conv3d"), _CONV, {"in_channels": 1}),
    (("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"), _CONV, {"in_channels": 1}),
    (("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"), _NORM, {"num_features": 1}),
    (("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"), _NORM, {"num_features": 1}),
    (("SyncBatchNorm",), _NORM, {}),
    (("GroupNorm",), _sizes(("num_groups", "num_channels")), {"num_channels": 1}),
    (("LayerNorm",), _sizes(("normalized_shape",)), {"normalized_shape": -1}),
    (("RMSNorm",), _sizes(("normalized_shape",)), {"normalized_shape": -1}),
    (("LocalResponseNorm",), _sizes(("size",)), {}),
    (("Embedding",), _sizes(("num_embeddings", "embedding_dim")), {}),
    (("EmbeddingBag",), _sizes(("num_embeddings", "embedding_dim")), {}),
    (
        ("MultiheadAttention",),
        _sizes(("embed_dim", "num_heads", "kdim", "vdim")),
        {"embed_dim": -1},
    ),
    (("TransformerEncoderLayer", "TransformerDecoderLayer"), _TRANSFORMER, {"d_model": -1}),
    (("Transformer",), _TRANSFORMER, {}),
    (("TransformerEncoder", "TransformerDecoder"), _sizes((), ("num_layers",)), {}),
    (("RNN", "LSTM", "GRU"), _RECURRENT, {"input_size": -1}),
    (("RNNCell", "LSTMCell", "GRUCell"), _sizes(("input_size", "hidden_size")), {}),
    (("MaxPool1d", "MaxPool2d", "MaxPool3d"), _POOL, {}),
    (("AvgPool1d", "AvgPool2d", "AvgPool3d"), _POOL, {}),
    (("MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d"), _POOL, {}),
    (("LPPool1d", "LPPool2d", "LPPool3d"), _POOL, {}),
    (
        ("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d")
        + ("AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d"),
        _sizes(("output_size",)),
        {},
    ),
    (("FractionalMaxPool2d", "FractionalMaxPool3d"), _sizes(("kernel_size", "output_size")), {}),
    (
        ("Fold", "Unfold"),
        _sizes(("output_size", "kernel_size", "stride", "dilation"), ("padding",)),
        {},
    ),
    (("PixelShuffle",), _sizes(("upscale_factor",)), {}),
    (("PixelUnshuffle",), _sizes(("downscale_factor",)), {}),
    (("ChannelShuffle",), _sizes(("groups",)), {}),
    (("PReLU",), _sizes(("num_parameters",)), {}),
    (("Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d"), _sizes(("size",)), {}),
    (
        ("ZeroPad1d", "ZeroPad2d", "ZeroPad3d")
        + ("ConstantPad1d", "ConstantPad2d", "ConstantPad3d")
        + ("ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d")
        + ("ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d")
        + ("CircularPad1d", "CircularPad2d", "CircularPad3d"),
        _PAD,
        {},
    ),
    (
        ("AdaptiveLogSoftmaxWithLoss",),
        _sizes(("in_features", "n_classes")),
        {"in_features": -1},
    ),
]


# Arguments that make a constructor build that many submodules, counted against
# the module limit before the layer is built (AdaptiveLogSoftmaxWithLoss with
# 900,000 cutoffs took 472 s and 7.4 GB to construct).
_BUILDS_PER: dict[str, tuple[str, ...]] = {
    "RNN": ("num_layers",),
    "LSTM": ("num_layers",),
    "GRU": ("num_layers",),
    "TransformerEncoder": ("num_layers",),
    "TransformerDecoder": ("num_layers",),
    "Transformer": ("num_encoder_layers", "num_decoder_layers"),
    "AdaptiveLogSoftmaxWithLoss": ("cutoffs",),
}


def register_torch_layers() -> None:
    """Register every public ``torch.nn`` module class that config data can build."""
    declared = {
        name: (constraints, rule) for names, constraints, rule in _TORCH_FAMILIES for name in names
    }
    for name, obj in sorted(vars(nn).items()):
        if (
            not inspect.isclass(obj)
            or not issubclass(obj, nn.Module)
            or name.startswith("_")
            or name in NOT_LAYERS
            or name.startswith("Lazy")  # lazy modules defeat meta-device shape checks
            or name in LAYERS
        ):
            continue
        constraints, rule = declared.get(name, ({}, {}))
        LAYERS.add(
            LayerEntry(
                name,
                obj,
                constraints=constraints,
                shape_rule=dict(rule),
                builds_per=_BUILDS_PER.get(name, ()),
                infer=LAYER_RULES.get(name),
            )
        )


@register_layer
class CenteredLayer(nn.Module):
    """The text's custom layer without parameters: subtracts the mean."""

    def forward(self, X: Tensor) -> Tensor:
        return X - X.mean()


@register_layer(shape_rule={"in_units": -1}, constraints={"in_units": _P, "units": _P})
class MyLinear(nn.Module):
    """The text's custom layer with its own parameters: ``relu(X @ weight + bias)``."""

    def __init__(self, in_units: int, units: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_units, units))
        self.bias = nn.Parameter(torch.empty(units))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Standard-normal weight and bias, as the text's ``torch.randn``."""
        nn.init.normal_(self.weight)
        nn.init.normal_(self.bias)

    def forward(self, X: Tensor) -> Tensor:
        return torch.relu(X @ self.weight + self.bias)


register_torch_layers()
