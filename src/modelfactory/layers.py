"""Layer types: every standard ``torch.nn`` layer, plus the project's own.

``torch.nn`` layers are registered from the classes themselves; their argument
models come from the constructor signatures. Shape rules (which omitted size
argument is read from which input dimension) sit here, beside the
registration, rather than in a central chain of ``if`` statements.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

from .registry import LAYERS, LayerEntry, register_layer

__all__ = ["CenteredLayer", "MyLinear", "register_torch_layers"]

# Containers are expressed by the language itself (lists, blocks), and these
# bases cannot be built from config data.
_NOT_LAYERS = {
    "Module",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "ParameterList",
    "ParameterDict",
    "Container",
    "LazyModuleMixin",
}

# Size arguments that shape inference may fill in, and the input dimension
# each one is read from (channels-first for conv/norm layers).
_TORCH_SHAPE_RULES: dict[str, dict[str, int]] = {
    "Linear": {"in_features": -1},
    "Bilinear": {"in1_features": -1},
    "Conv1d": {"in_channels": 1},
    "Conv2d": {"in_channels": 1},
    "Conv3d": {"in_channels": 1},
    "ConvTranspose1d": {"in_channels": 1},
    "ConvTranspose2d": {"in_channels": 1},
    "ConvTranspose3d": {"in_channels": 1},
    "BatchNorm1d": {"num_features": 1},
    "BatchNorm2d": {"num_features": 1},
    "BatchNorm3d": {"num_features": 1},
    "InstanceNorm1d": {"num_features": 1},
    "InstanceNorm2d": {"num_features": 1},
    "InstanceNorm3d": {"num_features": 1},
    "GroupNorm": {"num_channels": 1},
    "LayerNorm": {"normalized_shape": -1},
    "RMSNorm": {"normalized_shape": -1},
    "MultiheadAttention": {"embed_dim": -1},
    "TransformerEncoderLayer": {"d_model": -1},
    "TransformerDecoderLayer": {"d_model": -1},
    "RNN": {"input_size": -1},
    "LSTM": {"input_size": -1},
    "GRU": {"input_size": -1},
    "PReLU": {},
}


def register_torch_layers() -> None:
    """Register every public ``torch.nn`` module class that config data can build."""
    for name, obj in sorted(vars(nn).items()):
        if (
            not inspect.isclass(obj)
            or not issubclass(obj, nn.Module)
            or name.startswith("_")
            or name in _NOT_LAYERS
            or name.startswith("Lazy")  # lazy modules defeat meta-device shape checks
            or name in LAYERS
        ):
            continue
        LAYERS.add(
            LayerEntry(
                name=name,
                target=obj,
                shape_rule=_TORCH_SHAPE_RULES.get(name, {}),
            )
        )


@register_layer
class CenteredLayer(nn.Module):
    """The text's custom layer without parameters: subtracts the mean."""

    def forward(self, X: Tensor) -> Tensor:
        return X - X.mean()


@register_layer(shape_rule={"in_units": -1})
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
