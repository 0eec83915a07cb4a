"""Reductions over one or several dims: sum, mean, amax."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..symbolic import ShapeMismatch, TensorMeta
from .common import Args, Inputs, Int64, builtin_op, dim_list, is_complex, is_float, is_integral

__all__: list[str] = []


def _reduced(
    x: TensorMeta, dim: int | Sequence[int] | None, keepdim: bool, dtype: str
) -> TensorMeta:
    nd = x.ndim
    dims = dim_list(dim, nd)
    if not dims:  # None or []: every dim
        dims = list(range(nd))
    if nd == 0:
        return TensorMeta((), dtype)
    gone = set(dims)
    if keepdim:
        shape = tuple(1 if i in gone else s for i, s in enumerate(x.shape))
    else:
        shape = tuple(s for i, s in enumerate(x.shape) if i not in gone)
    return TensorMeta(shape, dtype)


def _sum_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    dtype = "int64" if x.dtype == "bool" or is_integral(x.dtype) else x.dtype
    return _reduced(x, a["dim"], a["keepdim"], dtype)


@builtin_op("sum", rule=_sum_rule)
def sum_(input: Tensor, *, dim: Int64 | list[Int64] | None = None, keepdim: bool = False) -> Tensor:
    """``torch.sum(input, dim, keepdim)``; dim None (or []) sums everything (integer inputs give int64)."""
    return torch.sum(input, dim=dim, keepdim=keepdim)


def _mean_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    if not (is_float(x.dtype) or is_complex(x.dtype)):
        raise ShapeMismatch(f"mean needs a floating-point input, got {x.dtype}")
    return _reduced(x, a["dim"], a["keepdim"], x.dtype)


@builtin_op("mean", rule=_mean_rule)
def mean(input: Tensor, *, dim: Int64 | list[Int64] | None = None, keepdim: bool = False) -> Tensor:
    """``torch.mean(input, dim, keepdim)``; dim None (or []) averages everything; floating inputs only."""
    return torch.mean(input, dim=dim, keepdim=keepdim)


def _amax_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    out = _reduced(x, a["dim"], a["keepdim"], x.dtype)
    dims = dim_list(a["dim"], x.ndim) or list(range(x.ndim))
    empty = [d for d in dims if x.shape and x.shape[d] == 0]
    if empty:
        raise ShapeMismatch(f"amax over dim {empty[0]} of size 0 has no maximum")
    return out


@builtin_op("amax", rule=_amax_rule)
def amax(input: Tensor, *, dim: Int64 | list[Int64] | None = None, keepdim: bool = False) -> Tensor:
    """``torch.amax(input, dim, keepdim)``; dim None (or []) over everything; reduced dims must be non-empty."""
    return torch.amax(input, dim=() if dim is None else dim, keepdim=keepdim)
