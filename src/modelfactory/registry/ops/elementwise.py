"""Elementwise ops of one input: neg, exp, log, sqrt, rsqrt, cos, sin, activations, center, the halving loop."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..symbolic import ShapeMismatch, TensorMeta
from .common import Args, Inputs, builtin_op, default_float, is_integral, need_float, same

__all__: list[str] = []


def _to_float_rule(a: Args, inputs: Inputs) -> TensorMeta:
    """Unary float functions: integer and bool inputs give the default float dtype."""
    (x,) = inputs
    if x.dtype == "bool" or is_integral(x.dtype):
        return same(x, dtype=default_float())
    return same(x)


def _float_only_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    need_float(x)
    return same(x)


def _no_bool_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    if x.dtype == "bool":
        raise ShapeMismatch("not supported for bool inputs")
    return same(x)


@builtin_op("neg", rule=_no_bool_rule)
def neg(input: Tensor) -> Tensor:
    """``torch.neg`` (``-input``); not for bool."""
    return torch.neg(input)


@builtin_op("exp", rule=_to_float_rule)
def exp(input: Tensor) -> Tensor:
    """``torch.exp``."""
    return torch.exp(input)


@builtin_op("log", rule=_to_float_rule)
def log(input: Tensor) -> Tensor:
    """``torch.log``."""
    return torch.log(input)


@builtin_op("sqrt", rule=_to_float_rule)
def sqrt(input: Tensor) -> Tensor:
    """``torch.sqrt``."""
    return torch.sqrt(input)


@builtin_op("rsqrt", rule=_to_float_rule)
def rsqrt(input: Tensor) -> Tensor:
    """``torch.rsqrt``: 1 / sqrt(input)."""
    return torch.rsqrt(input)


@builtin_op("cos", rule=_to_float_rule)
def cos(input: Tensor) -> Tensor:
    """``torch.cos``."""
    return torch.cos(input)


@builtin_op("sin", rule=_to_float_rule)
def sin(input: Tensor) -> Tensor:
    """``torch.sin``."""
    return torch.sin(input)


# --- activations ---------------------------------------------------------------
@builtin_op("relu", rule=_no_bool_rule)
def relu(input: Tensor) -> Tensor:
    """``F.relu``."""
    return F.relu(input)


@builtin_op("gelu", rule=_float_only_rule)
def gelu(input: Tensor, *, approximate: Literal["none", "tanh"] = "none") -> Tensor:
    """``F.gelu(input, approximate)``."""
    return F.gelu(input, approximate=approximate)


@builtin_op("sigmoid", rule=_to_float_rule)
def sigmoid(input: Tensor) -> Tensor:
    """``torch.sigmoid``."""
    return torch.sigmoid(input)


@builtin_op("tanh", rule=_to_float_rule)
def tanh(input: Tensor) -> Tensor:
    """``torch.tanh``."""
    return torch.tanh(input)


@builtin_op("silu", rule=_float_only_rule)
def silu(input: Tensor) -> Tensor:
    """``F.silu`` (x * sigmoid(x); SwiGLU's gate)."""
    return F.silu(input)


# --- the text's custom computations ----------------------------------------------
@builtin_op("center", rule=_float_only_rule)
def center(input: Tensor) -> Tensor:
    """Mean-centering, ``input - input.mean()`` (CenteredLayer as an op)."""
    return input - input.mean()


@builtin_op("halve_while_abs_sum_gt", rule=_float_only_rule)
def halve_while_abs_sum_gt(
    input: Tensor, *, threshold: Annotated[float, Field(ge=0.0)] = 1.0
) -> Tensor:
    """FixedHiddenMLP's loop: ``while x.abs().sum() > threshold: x = x / 2``.

    Control flow is a registered op with its threshold as an argument, never
    an evaluated expression. On the meta device values are unknown, so the
    dry run skips the loop (it never changes the shape). Halving reaches any
    threshold >= 0 from a finite float within a few thousand steps; an
    infinite input would loop forever, so it is refused instead (NaN ends the
    loop at once, as in the text).
    """
    if input.device.type == "meta":
        return input
    if bool(torch.isinf(input).any()):
        raise ValueError("halve_while_abs_sum_gt: input holds inf; the loop would never end")
    while input.abs().sum() > threshold:
        input = input / 2
    return input
