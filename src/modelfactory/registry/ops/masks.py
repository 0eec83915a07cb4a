"""Mask ops: masked_fill, tril, triu, where."""

from __future__ import annotations

import torch
from torch import Tensor

from ..symbolic import ShapeMismatch, TensorMeta
from .common import (
    Args,
    Inputs,
    Int64,
    broadcast_shapes,
    builtin_op,
    fits,
    need_ndim,
    result_type,
    same,
)

__all__: list[str] = []


def _masked_fill_rule(a: Args, inputs: Inputs) -> TensorMeta:
    x, mask = inputs
    if mask.dtype != "bool":
        raise ShapeMismatch(f"mask must be a bool tensor, got {mask.dtype}")
    shape = broadcast_shapes(x.shape, mask.shape)
    if not fits(a["value"], x.dtype):
        raise ShapeMismatch(f"value {a['value']} cannot be stored in a {x.dtype} tensor")
    return TensorMeta(shape, x.dtype)


@builtin_op("masked_fill", rule=_masked_fill_rule)
def masked_fill(input: Tensor, mask: Tensor, *, value: float) -> Tensor:
    """``input.masked_fill(mask, value)``: the result broadcasts input with mask and keeps input's dtype."""
    return input.masked_fill(mask, value)


def _tri_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    need_ndim(x, 2)
    return same(x)


@builtin_op("tril", rule=_tri_rule)
def tril(input: Tensor, *, diagonal: Int64 = 0) -> Tensor:
    """``torch.tril(input, diagonal)`` on the last two dims."""
    return torch.tril(input, diagonal)


@builtin_op("triu", rule=_tri_rule)
def triu(input: Tensor, *, diagonal: Int64 = 0) -> Tensor:
    """``torch.triu(input, diagonal)`` on the last two dims."""
    return torch.triu(input, diagonal)


def _where_rule(a: Args, inputs: Inputs) -> TensorMeta:
    cond, x, y = inputs
    if cond.dtype not in ("bool", "uint8"):
        raise ShapeMismatch(f"condition must be a bool tensor, got {cond.dtype}")
    return TensorMeta(broadcast_shapes(cond.shape, x.shape, y.shape), result_type(x, y))


@builtin_op("where", rule=_where_rule)
def where(condition: Tensor, input: Tensor, other: Tensor) -> Tensor:
    """``torch.where(condition, input, other)``, all three broadcast."""
    return torch.where(condition, input, other)
