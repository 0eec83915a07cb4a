"""Split and join ops: split and chunk (tuple outputs), cat (and the older concat), stack."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from ..symbolic import ShapeMismatch, TensorMeta
from .common import Args, Inputs, Int64, builtin_op, result_type, same, wrap_dim

__all__: list[str] = []


def _split_sizes(x: TensorMeta, sections: int | Sequence[int], d: int) -> list[int]:
    n = x.shape[d]
    if isinstance(sections, int):
        s = sections
        if s < 0:
            raise ShapeMismatch(f"split_size_or_sections must be non-negative, got {s}")
        if s == 0 and n != 0:
            raise ShapeMismatch(
                f"split size 0 only splits a dim of size 0, but dim {d} has size {n}"
            )
        if n == 0:
            return [0]
        count = -(-n // s)
        return [s] * (count - 1) + [n - s * (count - 1)]
    sizes = list(sections)
    if any(s < 0 for s in sizes):
        raise ShapeMismatch(f"split sizes {sizes} must be non-negative")
    if sum(sizes) != n:
        raise ShapeMismatch(f"split sizes {sizes} sum to {sum(sizes)}, but dim {d} has size {n}")
    return sizes


def _pieces(x: TensorMeta, d: int, sizes: Sequence[int]) -> tuple[TensorMeta, ...]:
    return tuple(same(x, x.shape[:d] + (s,) + x.shape[d + 1 :]) for s in sizes)


def _split_rule(a: Args, inputs: Inputs) -> tuple[TensorMeta, ...]:
    (x,) = inputs
    if not x.shape:
        raise ShapeMismatch("split needs an input with at least 1 dim")
    d = wrap_dim(a["dim"], x.ndim)
    return _pieces(x, d, _split_sizes(x, a["split_size_or_sections"], d))


@builtin_op("split", rule=_split_rule)
def split(
    tensor: Tensor, *, split_size_or_sections: Int64 | list[Int64], dim: Int64 = 0
) -> tuple[Tensor, ...]:
    """``torch.split``: pieces of ``split_size`` (the last may be smaller) or of the listed sizes."""
    return tuple(torch.split(tensor, split_size_or_sections, dim))


def _chunk_rule(a: Args, inputs: Inputs) -> tuple[TensorMeta, ...]:
    (x,) = inputs
    chunks = a["chunks"]
    if chunks <= 0:
        raise ShapeMismatch(f"chunks must be greater than 0, got {chunks}")
    if not x.shape:
        raise ShapeMismatch("chunk needs an input with at least 1 dim")
    d = wrap_dim(a["dim"], x.ndim)
    n = x.shape[d]
    size = -(-n // chunks)
    if size == 0 and n == 0:
        return _pieces(x, d, [0] * chunks)
    return _pieces(x, d, _split_sizes(x, size, d))


@builtin_op("chunk", rule=_chunk_rule)
def chunk(
    input: Tensor, *, chunks: Annotated[int, Field(ge=1, le=2**63 - 1)], dim: Int64 = 0
) -> tuple[Tensor, ...]:
    """``torch.chunk``: up to ``chunks`` pieces of ceil(size / chunks) (fewer when they run out)."""
    return tuple(torch.chunk(input, chunks, dim))


def _cat_rule(a: Args, inputs: Inputs) -> TensorMeta:
    if not inputs:
        raise ShapeMismatch("cat needs at least one input")
    for i, t in enumerate(inputs):
        if not t.shape:
            raise ShapeMismatch(f"input {i} is 0-d and cannot be concatenated")
    dtype = result_type(*inputs)
    # torch still skips 1-d empty tensors (shape [0]) whatever their other dims
    kept = [(i, t) for i, t in enumerate(inputs) if t.shape != (0,)]
    if not kept:
        return TensorMeta((0,), dtype)
    i0, ref = kept[0]
    nd = ref.ndim
    d = wrap_dim(a["dim"], nd)
    total = 0
    for i, t in kept:
        if t.ndim != nd:
            raise ShapeMismatch(
                f"inputs must have the same number of dims: input {i0} has {nd}, input {i} has {t.ndim}"
            )
        for j in range(nd):
            if j != d and t.shape[j] != ref.shape[j]:
                raise ShapeMismatch(
                    f"sizes must match except in dim {d}: input {i0} has size {ref.shape[j]} "
                    f"but input {i} has size {t.shape[j]} at dim {j}"
                )
        total += t.shape[d]
    return TensorMeta(ref.shape[:d] + (total,) + ref.shape[d + 1 :], dtype)


@builtin_op("cat", rule=_cat_rule)
def cat(*tensors: Tensor, dim: Int64 = 0) -> Tensor:
    """``torch.cat(tensors, dim)`` over one or more inputs."""
    return torch.cat(tensors, dim=dim)


@builtin_op("concat", rule=_cat_rule)
def concat(*tensors: Tensor, dim: Int64 = 1) -> Tensor:
    """``torch.concat``: ``cat`` along channels by default (dim 1, as Inception and U-Net do)."""
    return torch.cat(tensors, dim=dim)


def _stack_rule(a: Args, inputs: Inputs) -> TensorMeta:
    if not inputs:
        raise ShapeMismatch("stack needs at least one input")
    ref = inputs[0]
    for i, t in enumerate(inputs):
        if t.shape != ref.shape:
            raise ShapeMismatch(
                f"stack needs equal shapes: input 0 is {list(ref.shape)}, input {i} is {list(t.shape)}"
            )
    d = wrap_dim(a["dim"], ref.ndim + 1)
    return TensorMeta(ref.shape[:d] + (len(inputs),) + ref.shape[d:], result_type(*inputs))


@builtin_op("stack", rule=_stack_rule)
def stack(*tensors: Tensor, dim: Int64 = 0) -> Tensor:
    """``torch.stack(tensors, dim)`` over one or more inputs of equal shape."""
    return torch.stack(tensors, dim=dim)
