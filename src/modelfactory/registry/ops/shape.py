"""Shape ops: reshape/view, flatten/unflatten, permute/transpose, (un)squeeze, expand, contiguous."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..symbolic import ShapeMismatch, TensorMeta
from .common import Args, Inputs, Int64, builtin_op, dim_list, infer_size, same, wrap_dim

__all__: list[str] = []


def _reshape_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    return same(x, infer_size(a["shape"], math.prod(x.shape)))


@builtin_op("reshape", rule=_reshape_rule)
def reshape(input: Tensor, *, shape: list[Int64]) -> Tensor:
    """``torch.reshape(input, shape)``; one size may be -1."""
    return torch.reshape(input, shape)


def _view_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    return same(x, infer_size(a["size"], math.prod(x.shape), what="size"))


@builtin_op("view", rule=_view_rule)
def view(input: Tensor, *, size: list[Int64]) -> Tensor:
    """``input.view(size)``; one size may be -1.

    The rule checks element counts only: a view of a non-contiguous input (after
    transpose/permute/expand) can still fail at run time where a stride-aware
    check (a meta-device dry run) would catch it. Prefer ``reshape``.
    """
    return input.view(size)


def _flatten_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    nd = x.ndim
    start = wrap_dim(a["start_dim"], nd, what="start_dim")
    end = wrap_dim(a["end_dim"], nd, what="end_dim")
    if start > end:
        raise ShapeMismatch(f"start_dim {a['start_dim']} comes after end_dim {a['end_dim']}")
    if nd == 0:
        return same(x, (1,))
    s = x.shape
    return same(x, s[:start] + (math.prod(s[start : end + 1]),) + s[end + 1 :])


@builtin_op("flatten", rule=_flatten_rule)
def flatten(input: Tensor, *, start_dim: Int64 = 1, end_dim: Int64 = -1) -> Tensor:
    """``torch.flatten(input, start_dim, end_dim)``.

    The default start_dim is 1, as ``nn.Flatten``'s (keeps the batch dim; this
    op had that default before the others were added); ``torch.flatten``'s is 0.
    """
    return torch.flatten(input, start_dim, end_dim)


def _unflatten_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    if x.ndim == 0:
        raise ShapeMismatch("unflatten needs an input with at least 1 dim")
    d = wrap_dim(a["dim"], x.ndim)
    sizes = list(a["sizes"])
    if not sizes:
        raise ShapeMismatch("sizes must be non-empty")
    new = infer_size(sizes, x.shape[d], what="sizes")
    return same(x, x.shape[:d] + new + x.shape[d + 1 :])


@builtin_op("unflatten", rule=_unflatten_rule)
def unflatten(input: Tensor, *, dim: Int64, sizes: list[Int64]) -> Tensor:
    """``torch.unflatten(input, dim, sizes)``; one size may be -1."""
    return torch.unflatten(input, dim, sizes)


def _permute_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    dims = list(a["dims"])
    nd = x.ndim
    if len(dims) != nd:
        raise ShapeMismatch(f"dims {dims} has {len(dims)} entries for a {nd}-d input")
    wrapped = [wrap_dim(d, nd) for d in dims]
    if len(set(wrapped)) != len(wrapped):
        raise ShapeMismatch(f"dims {dims} repeats a dim")
    return same(x, tuple(x.shape[d] for d in wrapped) if nd else ())


@builtin_op("permute", rule=_permute_rule)
def permute(input: Tensor, *, dims: list[Int64]) -> Tensor:
    """``torch.permute(input, dims)``."""
    return torch.permute(input, dims)


def _transpose_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    nd = x.ndim
    d0 = wrap_dim(a["dim0"], nd, what="dim0")
    d1 = wrap_dim(a["dim1"], nd, what="dim1")
    if nd == 0:
        return same(x)
    s = list(x.shape)
    s[d0], s[d1] = s[d1], s[d0]
    return same(x, s)


@builtin_op("transpose", rule=_transpose_rule)
def transpose(input: Tensor, *, dim0: Int64, dim1: Int64) -> Tensor:
    """``torch.transpose(input, dim0, dim1)``."""
    return torch.transpose(input, dim0, dim1)


def _unsqueeze_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    d = wrap_dim(a["dim"], x.ndim + 1)
    return same(x, x.shape[:d] + (1,) + x.shape[d:])


@builtin_op("unsqueeze", rule=_unsqueeze_rule)
def unsqueeze(input: Tensor, *, dim: Int64) -> Tensor:
    """``torch.unsqueeze(input, dim)``."""
    return torch.unsqueeze(input, dim)


def _squeeze_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    nd = x.ndim
    dims = dim_list(a["dim"], nd)
    if dims is None:
        dims = list(range(nd))
    if nd == 0:
        return same(x)
    drop = {d for d in dims if x.shape[d] == 1}
    return same(x, tuple(s for i, s in enumerate(x.shape) if i not in drop))


@builtin_op("squeeze", rule=_squeeze_rule)
def squeeze(input: Tensor, *, dim: Int64 | list[Int64] | None = None) -> Tensor:
    """``torch.squeeze``: drop size-1 dims (all of them, or those in ``dim``; others are kept)."""
    if dim is None:
        return torch.squeeze(input)
    return torch.squeeze(input, dim if isinstance(dim, int) else tuple(dim))


def _expand_shape(x: TensorMeta, size: Sequence[int]) -> tuple[int, ...]:
    size = list(size)
    nd = x.ndim
    if len(size) < nd:
        raise ShapeMismatch(f"size {size} has fewer entries than the input has dims ({nd})")
    lead = len(size) - nd
    out = []
    for i, target in enumerate(size):
        if i < lead:
            if target < 0:
                raise ShapeMismatch(
                    f"size {target} is not allowed at new leading dim {i} of size {size}"
                )
            out.append(target)
            continue
        have = x.shape[i - lead]
        if target == -1:
            target = have
        elif target < -1:
            raise ShapeMismatch(f"invalid size {target} in size {size}")
        if target != have and have != 1:
            raise ShapeMismatch(
                f"cannot expand size {have} to {target} at dim {i} (only size-1 dims expand); size {size}"
            )
        out.append(target)
    return tuple(out)


def _expand_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    return same(x, _expand_shape(x, a["size"]))


@builtin_op("expand", rule=_expand_rule)
def expand(input: Tensor, *, size: list[Int64]) -> Tensor:
    """``input.expand(size)``: a view; -1 keeps a dim, size-1 dims stretch, new dims go in front.

    No memory is allocated (stride 0), but the result's element count can be
    huge; the checker bounds element counts.
    """
    return input.expand(size)


def _expand_as_rule(a: Args, inputs: Inputs) -> TensorMeta:
    x, other = inputs
    return same(x, _expand_shape(x, other.shape))


@builtin_op("expand_as", rule=_expand_as_rule)
def expand_as(input: Tensor, other: Tensor) -> Tensor:
    """``input.expand_as(other)``: expand to another value's size."""
    return input.expand_as(other)


def _identity_rule(a: Args, inputs: Inputs) -> TensorMeta:
    return inputs[0]


@builtin_op("contiguous", rule=_identity_rule)
def contiguous(input: Tensor) -> Tensor:
    """``input.contiguous()``."""
    return input.contiguous()
