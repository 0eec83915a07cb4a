"""Argument models that torch.nn signatures cannot give: recurrent layers, and layers nested as arguments.

- ``RNN``, ``LSTM`` and ``GRU`` declare ``__init__(self, *args, **kwargs)``, so
  their signature says nothing; their documented arguments are written out
  here as plain signatures and derived like any other.
- ``TransformerEncoder`` and ``TransformerDecoder`` take a *layer* as an
  argument (``encoder_layer``, ``norm``). In a model file that argument is a
  layer node, plain data: ``{type: TransformerEncoderLayer, d_model: 16,
  nhead: 2}``. It is validated as a layer node (every problem located under
  the argument) and built just before the outer layer, by the entry's
  ``factory``; the entry's ``target`` stays the torch class, so printing,
  ``state_dict`` keys and init rules (``type: TransformerEncoder``) are
  torch's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, WithJsonSchema, create_model
from torch import nn

from .signatures import SignatureModel, args_model_from_signature
from .table import LAYERS, Constraint

__all__ = ["RECURRENT_ARGS", "NESTED_LAYER_ARGS", "build_nested"]

_P: Constraint = "positive"
_N: Constraint = "non_negative"
_RECURRENT_SIZES: dict[str, Constraint] = {
    "input_size": _P,
    "hidden_size": _P,
    "num_layers": _P,
    "proj_size": _N,
}
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


# --- recurrent layers: their documented signatures -----------------------------------
def _rnn(
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    nonlinearity: Literal["tanh", "relu"] = "tanh",
    bias: bool = True,
    batch_first: bool = False,
    dropout: Probability = 0.0,
    bidirectional: bool = False,
) -> None:
    """``nn.RNN``'s documented arguments (its ``__init__`` is ``*args, **kwargs``)."""


def _lstm(
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = False,
    dropout: Probability = 0.0,
    bidirectional: bool = False,
    proj_size: int = 0,
) -> None:
    """``nn.LSTM``'s documented arguments (``proj_size`` must be smaller than ``hidden_size``)."""


def _gru(
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = False,
    dropout: Probability = 0.0,
    bidirectional: bool = False,
) -> None:
    """``nn.GRU``'s documented arguments."""


def _recurrent(name: str, signature: Callable[..., None]) -> Callable[[], type[BaseModel]]:
    def make() -> type[BaseModel]:
        return args_model_from_signature(
            signature, model_name=f"{name}Args", constraints=_RECURRENT_SIZES
        )

    return make


# layer name -> makes its argument model on first use
RECURRENT_ARGS: dict[str, Callable[[], type[BaseModel]]] = {
    "RNN": _recurrent("RNN", _rnn),
    "LSTM": _recurrent("LSTM", _lstm),
    "GRU": _recurrent("GRU", _gru),
}


# --- layers nested as arguments ----------------------------------------------------------
_NESTED_SCHEMA = {
    "type": "object",
    "description": "a layer node, e.g. {type: TransformerEncoderLayer, d_model: 16, nhead: 2}",
    "properties": {"type": {"type": "string"}},
    "required": ["type"],
}


def _layer_node_data(value: Any) -> Any:
    if isinstance(value, str):  # a bare layer name, as in a network
        return {"type": value}
    if not isinstance(value, dict) or "type" not in value:
        raise ValueError(
            "must be a layer node such as {type: TransformerEncoderLayer, d_model: 16, nhead: 2} "
            "(a registered layer with 'type': blocks and composites cannot be passed to a layer)"
        )
    return value


def _sizes_given(node: Any) -> Any:
    missing = node.missing_inferable()
    if missing:
        raise ValueError(
            f"{node.type} nested in another layer must give {', '.join(missing)}: "
            "sizes are only inferred for layers in the network itself"
        )
    return node


def _nested_layer_type() -> Any:
    # imported here: the spec package imports the registry, not the other way round
    from ..spec.nodes import LayerNode

    return Annotated[
        LayerNode,
        BeforeValidator(_layer_node_data),
        AfterValidator(_sizes_given),
        WithJsonSchema(_NESTED_SCHEMA),
    ]


def _transformer_args(name: str, layer_arg: str, *extra: tuple[str, Any]) -> type[BaseModel]:
    Layer = _nested_layer_type()
    fields: dict[str, Any] = {
        layer_arg: (Layer, ...),
        "num_layers": (Annotated[int, Field(ge=0)], ...),
        "norm": (Layer | None, None),
    }
    fields.update(dict(extra))
    return create_model(f"{name}Args", __base__=SignatureModel, **fields)


def _transformer_encoder_args() -> type[BaseModel]:
    """``nn.TransformerEncoder``'s arguments, its layer (and optional norm) as layer nodes."""
    return _transformer_args(
        "TransformerEncoder",
        "encoder_layer",
        ("enable_nested_tensor", (bool, True)),
        ("mask_check", (bool, True)),
    )


def _transformer_decoder_args() -> type[BaseModel]:
    """``nn.TransformerDecoder``'s arguments, its layer (and optional norm) as layer nodes."""
    return _transformer_args("TransformerDecoder", "decoder_layer")


def build_nested(node: Mapping[str, Any] | None, device: Any) -> nn.Module | None:
    """Build a validated nested layer node (``{type: ..., **args}``) on ``device``; ``None`` stays."""
    if node is None:
        return None
    args = dict(node)
    return LAYERS.get(args.pop("type")).make(args, device)


def _transformer_encoder(args: dict[str, Any], device: Any) -> nn.TransformerEncoder:
    rest = dict(args)
    layer = build_nested(rest.pop("encoder_layer"), device)
    norm = build_nested(rest.pop("norm", None), device)
    return nn.TransformerEncoder(layer, norm=norm, **rest)


def _transformer_decoder(args: dict[str, Any], device: Any) -> nn.TransformerDecoder:
    rest = dict(args)
    layer = build_nested(rest.pop("decoder_layer"), device)
    norm = build_nested(rest.pop("norm", None), device)
    return nn.TransformerDecoder(layer, norm=norm, **rest)


# layer name -> (makes its argument model, builds the module from validated args)
NESTED_LAYER_ARGS: dict[
    str, tuple[Callable[[], type[BaseModel]], Callable[[dict[str, Any], Any], nn.Module]]
] = {
    "TransformerEncoder": (_transformer_encoder_args, _transformer_encoder),
    "TransformerDecoder": (_transformer_decoder_args, _transformer_decoder),
}
