"""What the shape check learns by instantiating a layer on the meta device, cached: its cost, and its output when no rule says.

A layer's parameter count and module count depend only on its type and
arguments, so each distinct (type, arguments) is constructed once on ``meta``
(no memory) and remembered. Layers and ops without a symbolic shape rule (user
layers, rare ``torch.nn`` classes) are run on meta tensors of the incoming
shapes; the result is cached per (type, arguments, input shapes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..builder.streams import TORCH_DTYPES
from ..registry import LAYERS
from ..registry.symbolic import TensorMeta, Value
from ..sharing import unique_tensors

__all__ = ["LayerCost", "layer_cost", "meta_layer", "run_on_meta", "args_key", "to_values"]

_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class LayerCost:
    """Parameter and buffer elements (each tensor once) and modules of one layer instance."""

    elements: int
    modules: int


def args_key(type_name: str, args: dict[str, Any]) -> str:
    """A hashable key of a layer's type and arguments (plain config data)."""
    return type_name + json.dumps(args, sort_keys=True, default=repr)


_COSTS: dict[str, LayerCost] = {}
_LAYERS: dict[str, nn.Module] = {}
_OUTPUTS: dict[tuple[str, tuple[Any, ...]], Value] = {}


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def meta_layer(type_name: str, args: dict[str, Any]) -> nn.Module:
    """The layer built on the meta device (cached; shapes only, no storage)."""
    key = args_key(type_name, args)
    layer = _LAYERS.get(key)
    if layer is None:
        layer = _remember(_LAYERS, key, LAYERS.get(type_name).make(args, "meta"))
    return layer


def layer_cost(type_name: str, args: dict[str, Any]) -> LayerCost:
    """The elements and modules one instance of the layer holds (cached per arguments)."""
    key = args_key(type_name, args)
    cost = _COSTS.get(key)
    if cost is None:
        layer = meta_layer(type_name, args)
        elements = sum(t.numel() for t in unique_tensors(layer))
        cost = _remember(_COSTS, key, LayerCost(elements, sum(1 for _ in layer.modules())))
    return cost


def _meta_tensor(value: Value) -> Any:
    if isinstance(value, TensorMeta):
        dtype = TORCH_DTYPES.get(value.dtype) or getattr(torch, value.dtype)
        return torch.empty(value.shape, dtype=dtype, device="meta")
    if isinstance(value, tuple):
        return tuple(_meta_tensor(v) for v in value)
    return value


def to_values(result: Any) -> Value:
    """Meta tensors (nested in tuples or lists) as symbolic values."""
    if isinstance(result, torch.Tensor):
        return TensorMeta(tuple(result.shape), str(result.dtype))
    if isinstance(result, (tuple, list)):
        return tuple(to_values(r) for r in result)
    return None


def run_on_meta(key: str, call: Callable[..., Any], inputs: tuple[Value, ...]) -> Value:
    """``call`` applied to meta tensors of ``inputs``; cached per ``key`` and input shapes.

    Exceptions are torch's own (the caller turns them into located problems).
    """
    cache_key = (key, inputs)
    found = _OUTPUTS.get(cache_key, _MISSING)
    if found is not _MISSING:
        return found
    with torch.no_grad():
        result = call(*(_meta_tensor(v) for v in inputs))
    return _remember(_OUTPUTS, cache_key, to_values(result))


_MISSING = object()
