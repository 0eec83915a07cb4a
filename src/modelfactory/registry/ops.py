"""Built-in functional ops for forward steps: positional parameters are tensors, keyword-only ones config.

An op's positional parameters are its tensor inputs; its keyword-only
parameters are config arguments, validated like layer arguments. Control flow
(FixedHiddenMLP's loop) is a registered op with its threshold as an argument,
never an evaluated expression.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from .table import register_op

__all__: list[str] = []


# --- elementwise activations -------------------------------------------------
@register_op("relu")
def relu(x: Tensor) -> Tensor:
    return F.relu(x)


@register_op("gelu")
def gelu(x: Tensor, *, approximate: Literal["none", "tanh"] = "none") -> Tensor:
    return F.gelu(x, approximate=approximate)


@register_op("sigmoid")
def sigmoid(x: Tensor) -> Tensor:
    return torch.sigmoid(x)


@register_op("tanh")
def tanh(x: Tensor) -> Tensor:
    return torch.tanh(x)


@register_op("softmax")
def softmax(x: Tensor, *, dim: int = -1) -> Tensor:
    return F.softmax(x, dim=dim)


# --- arithmetic -------------------------------------------------------------
@register_op("add")
def add(*tensors: Tensor) -> Tensor:
    """Sum of two or more tensors (a residual connection)."""
    out = tensors[0]
    for t in tensors[1:]:
        out = out + t
    return out


@register_op("mul")
def mul(*tensors: Tensor) -> Tensor:
    """Elementwise product of two or more tensors."""
    out = tensors[0]
    for t in tensors[1:]:
        out = out * t
    return out


@register_op("add_scalar")
def add_scalar(x: Tensor, *, value: float) -> Tensor:
    return x + value


@register_op("mul_scalar")
def mul_scalar(x: Tensor, *, value: float) -> Tensor:
    return x * value


@register_op("matmul")
def matmul(x: Tensor, other: Tensor) -> Tensor:
    """``x @ other``; with a constant, FixedHiddenMLP's ``torch.mm(X, rand_weight)``."""
    return torch.matmul(x, other)


# --- reductions and reshaping -------------------------------------------------
@register_op("sum")
def sum_(x: Tensor, *, dim: int | list[int] | None = None, keepdim: bool = False) -> Tensor:
    return x.sum() if dim is None else x.sum(dim=dim, keepdim=keepdim)


@register_op("mean")
def mean(x: Tensor, *, dim: int | list[int] | None = None, keepdim: bool = False) -> Tensor:
    return x.mean() if dim is None else x.mean(dim=dim, keepdim=keepdim)


@register_op("center")
def center(x: Tensor) -> Tensor:
    """Mean-centering, ``x - x.mean()`` (CenteredLayer as an op)."""
    return x - x.mean()


@register_op("flatten")
def flatten(x: Tensor, *, start_dim: int = 1, end_dim: int = -1) -> Tensor:
    return torch.flatten(x, start_dim, end_dim)


@register_op("concat")
def concat(*tensors: Tensor, dim: int = 1) -> Tensor:
    """Concatenate along ``dim`` (channels by default, as Inception and U-Net do)."""
    return torch.cat(tensors, dim=dim)


# --- control flow -------------------------------------------------------------
@register_op("halve_while_abs_sum_gt")
def halve_while_abs_sum_gt(
    x: Tensor, *, threshold: Annotated[float, Field(ge=0.0)] = 1.0
) -> Tensor:
    """FixedHiddenMLP's loop: ``while x.abs().sum() > threshold: x = x / 2``.

    On the meta device values are unknown, so the dry run skips the loop (it
    never changes the shape). Halving reaches any threshold >= 0 from a finite
    float within a few thousand steps; an infinite input would loop forever,
    so it is refused instead (NaN ends the loop at once, as in the text).
    """
    if x.device.type == "meta":
        return x
    if bool(torch.isinf(x).any()):
        raise ValueError("halve_while_abs_sum_gt: input holds inf; the loop would never end")
    while x.abs().sum() > threshold:
        x = x / 2
    return x
