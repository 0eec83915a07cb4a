"""Indexing ops: select, narrow, slice, getitem (an element of a tuple value), arange (positions)."""

from __future__ import annotations

import builtins
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import Tensor

from ..symbolic import ShapeMismatch, TensorMeta, Value
from .common import Args, Inputs, Int64, builtin_op, same, wrap_dim

__all__: list[str] = []


def _select_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    if not x.shape:
        raise ShapeMismatch("select cannot be applied to a 0-d input")
    d = wrap_dim(a["dim"], x.ndim)
    n = x.shape[d]
    index = a["index"]
    if not -n <= index < n:
        raise ShapeMismatch(f"index {index} is out of range for dim {d} of size {n}")
    return same(x, x.shape[:d] + x.shape[d + 1 :])


@builtin_op("select", rule=_select_rule)
def select(input: Tensor, *, dim: Int64, index: Int64) -> Tensor:
    """``torch.select(input, dim, index)``: drops ``dim`` (``x[:, -1]`` is dim 1, index -1)."""
    return torch.select(input, dim, index)


def _narrow_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    if not x.shape:
        raise ShapeMismatch("narrow cannot be applied to a 0-d input")
    d = wrap_dim(a["dim"], x.ndim)
    n = x.shape[d]
    start, length = a["start"], a["length"]
    if not -n <= start <= n:
        raise ShapeMismatch(
            f"start {start} is out of range for dim {d} of size {n} (valid: {-n}..{n})"
        )
    if start < 0:
        start += n
    if length < 0:
        raise ShapeMismatch(f"length must be non-negative, got {length}")
    if start + length > n:
        raise ShapeMismatch(
            f"start ({start}) + length ({length}) exceeds the size ({n}) of dim {d}"
        )
    return same(x, x.shape[:d] + (length,) + x.shape[d + 1 :])


@builtin_op("narrow", rule=_narrow_rule)
def narrow(input: Tensor, *, dim: Int64, start: Int64, length: Int64) -> Tensor:
    """``torch.narrow(input, dim, start, length)``."""
    return torch.narrow(input, dim, start, length)


def _slice_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    if not x.shape:
        raise ShapeMismatch("slice cannot be applied to a 0-d input")
    d = wrap_dim(a["dim"], x.ndim)
    if a["step"] <= 0:
        raise ShapeMismatch(f"step must be positive, got {a['step']}")
    n = len(range(*builtins.slice(a["start"], a["end"], a["step"]).indices(x.shape[d])))
    return same(x, x.shape[:d] + (n,) + x.shape[d + 1 :])


@builtin_op("slice", rule=_slice_rule)
def slice_(
    input: Tensor,
    *,
    dim: Int64 = 0,
    start: Int64 | None = None,
    end: Int64 | None = None,
    step: Annotated[int, Field(ge=1, le=2**63 - 1)] = 1,
) -> Tensor:
    """``input[..., start:end:step]`` on dimension ``dim`` (Python slice semantics, positive step)."""
    nd = input.dim()
    if nd == 0:
        raise IndexError("slice cannot be applied to a 0-d tensor")
    if not -nd <= dim < nd:
        raise IndexError(f"dim {dim} is out of range for a {nd}-d tensor")
    index = (builtins.slice(None),) * (dim % nd) + (builtins.slice(start, end, step),)
    return input[index]


def _getitem_rule(a: Args, inputs: Inputs) -> Value:
    (value,) = inputs
    n = len(value)
    index = a["index"]
    if not -n <= index < n:
        raise ShapeMismatch(f"index {index} is out of range for a tuple of {n} values")
    return value[index]


@builtin_op("getitem", rule=_getitem_rule, takes_tuple=True)
def getitem(value: tuple[Tensor, ...], *, index: Int64) -> Any:
    """``value[index]``: one element of a tuple value (split, chunk, or a layer such as LSTM)."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"getitem picks an element of a tuple value, got {type(value).__name__}")
    return value[index]


def _arange_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    if x.ndim == 0:
        raise ShapeMismatch("arange needs an input with at least 1 dim")
    d = wrap_dim(a["dim"], x.ndim, scalar_ok=False)
    return TensorMeta((x.shape[d],), "int64")


@builtin_op("arange", rule=_arange_rule)
def arange(input: Tensor, *, dim: Int64) -> Tensor:
    """Positions along one dim: ``torch.arange(input.shape[dim])`` on input's device (int64)."""
    return torch.arange(input.shape[dim], device=input.device)
