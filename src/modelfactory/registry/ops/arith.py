"""Arithmetic ops: add, mul, sub, div, comparisons, pow, clamp, and the scalar add_scalar/mul_scalar."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from ..symbolic import ShapeMismatch, TensorMeta
from .common import (
    Args,
    Inputs,
    broadcast_shapes,
    builtin_op,
    default_float,
    is_integral,
    result_type,
    same,
)

__all__: list[str] = []

Operand = TensorMeta | float


def _operands(a: Args, inputs: Inputs, name: str, exactly_two: bool) -> list[Operand]:
    """The tensors and the scalar ``other`` of an arithmetic op, as torch will combine them."""
    other = a["other"]
    if other is not None:
        if len(inputs) != 1:
            raise ShapeMismatch(
                f"{name} takes a scalar `other` only with a single input, got {len(inputs)} inputs"
            )
        return [inputs[0], float(other)]
    if exactly_two and len(inputs) != 2:
        raise ShapeMismatch(
            f"{name} takes exactly 2 inputs (or 1 input and a scalar `other`), got {len(inputs)}"
        )
    if len(inputs) < 2:
        raise ShapeMismatch(
            f"{name} takes 2 or more inputs (or 1 input and a scalar `other`), got {len(inputs)}"
        )
    return list(inputs)


def _elementwise(x: Operand, y: Operand) -> TensorMeta:
    assert isinstance(x, TensorMeta)
    shape = broadcast_shapes(x.shape, y.shape) if isinstance(y, TensorMeta) else x.shape
    return TensorMeta(shape, result_type(x, y))


def _fold(operands: list[Operand], combine: Callable[[Operand, Operand], TensorMeta]) -> TensorMeta:
    out = combine(operands[0], operands[1])
    for o in operands[2:]:
        out = combine(out, o)
    return out


def _add_rule(a: Args, inputs: Inputs) -> TensorMeta:
    return _fold(_operands(a, inputs, "add", exactly_two=False), _elementwise)


def _mul_rule(a: Args, inputs: Inputs) -> TensorMeta:
    return _fold(_operands(a, inputs, "mul", exactly_two=False), _elementwise)


def _sub_rule(a: Args, inputs: Inputs) -> TensorMeta:
    x, y = _operands(a, inputs, "sub", exactly_two=True)
    if (isinstance(x, TensorMeta) and x.dtype == "bool") or (
        isinstance(y, TensorMeta) and y.dtype == "bool"
    ):
        raise ShapeMismatch("sub does not support bool tensors (use logical ops for masks)")
    return _elementwise(x, y)


def _div_rule(a: Args, inputs: Inputs) -> TensorMeta:
    x, y = _operands(a, inputs, "div", exactly_two=True)
    out = _elementwise(x, y)
    if a["rounding_mode"] is None:
        if out.dtype == "bool" or is_integral(out.dtype):
            return TensorMeta(out.shape, default_float())
        return out
    if out.dtype == "bool":
        raise ShapeMismatch(
            f"div with rounding_mode={a['rounding_mode']!r} is not implemented for bool"
        )
    return out


def _binary_tensors(
    tensors: tuple[Tensor, ...], other: float | None, name: str, exactly_two: bool
) -> list[Any]:
    if other is not None:
        if len(tensors) != 1:
            raise ValueError(
                f"{name}: a scalar `other` goes with exactly one input, got {len(tensors)}"
            )
        return [tensors[0], float(other)]
    if len(tensors) < 2 or (exactly_two and len(tensors) != 2):
        raise ValueError(
            f"{name}: expected {'exactly' if exactly_two else 'at least'} 2 inputs, got {len(tensors)}"
        )
    return list(tensors)


@builtin_op("add", rule=_add_rule)
def add(*tensors: Tensor, other: float | None = None) -> Tensor:
    """Sum of 2+ inputs (left to right, broadcasting; a residual connection), or of one input and the scalar ``other``."""
    operands = _binary_tensors(tensors, other, "add", exactly_two=False)
    out = operands[0]
    for t in operands[1:]:
        out = torch.add(out, t)
    return out


@builtin_op("mul", rule=_mul_rule)
def mul(*tensors: Tensor, other: float | None = None) -> Tensor:
    """Product of 2+ inputs (left to right, broadcasting), or of one input and the scalar ``other``."""
    operands = _binary_tensors(tensors, other, "mul", exactly_two=False)
    out = operands[0]
    for t in operands[1:]:
        out = torch.mul(out, t)
    return out


@builtin_op("sub", rule=_sub_rule)
def sub(*tensors: Tensor, other: float | None = None) -> Tensor:
    """``input - other``: exactly 2 inputs, or 1 input and the scalar ``other``."""
    x, y = _binary_tensors(tensors, other, "sub", exactly_two=True)
    return torch.sub(x, y)


@builtin_op("div", rule=_div_rule)
def div(
    *tensors: Tensor,
    other: float | None = None,
    rounding_mode: Literal["trunc", "floor"] | None = None,
) -> Tensor:
    """``torch.div``: exactly 2 inputs, or 1 input and the scalar ``other``; true division unless rounding_mode."""
    x, y = _binary_tensors(tensors, other, "div", exactly_two=True)
    return torch.div(x, y, rounding_mode=rounding_mode)


def _compare_rule(a: Args, inputs: Inputs) -> TensorMeta:
    x, y = _operands(a, inputs, "comparison", exactly_two=True)
    return TensorMeta(_elementwise(x, y).shape, "bool")


@builtin_op("eq", rule=_compare_rule)
def eq(*tensors: Tensor, other: float | None = None) -> Tensor:
    """``input == other`` (bool): exactly 2 inputs, or 1 input and the scalar ``other``."""
    return torch.eq(*_binary_tensors(tensors, other, "eq", exactly_two=True))


@builtin_op("ne", rule=_compare_rule)
def ne(*tensors: Tensor, other: float | None = None) -> Tensor:
    """``input != other`` (bool)."""
    return torch.ne(*_binary_tensors(tensors, other, "ne", exactly_two=True))


@builtin_op("lt", rule=_compare_rule)
def lt(*tensors: Tensor, other: float | None = None) -> Tensor:
    """``input < other`` (bool)."""
    return torch.lt(*_binary_tensors(tensors, other, "lt", exactly_two=True))


@builtin_op("le", rule=_compare_rule)
def le(*tensors: Tensor, other: float | None = None) -> Tensor:
    """``input <= other`` (bool)."""
    return torch.le(*_binary_tensors(tensors, other, "le", exactly_two=True))


@builtin_op("gt", rule=_compare_rule)
def gt(*tensors: Tensor, other: float | None = None) -> Tensor:
    """``input > other`` (bool)."""
    return torch.gt(*_binary_tensors(tensors, other, "gt", exactly_two=True))


@builtin_op("ge", rule=_compare_rule)
def ge(*tensors: Tensor, other: float | None = None) -> Tensor:
    """``input >= other`` (bool)."""
    return torch.ge(*_binary_tensors(tensors, other, "ge", exactly_two=True))


def _pow_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    return same(x, dtype=result_type(x, float(a["exponent"])))


@builtin_op("pow", rule=_pow_rule)
def pow_(input: Tensor, *, exponent: float) -> Tensor:
    """``torch.pow(input, exponent)`` with a scalar exponent (integer inputs give float32)."""
    return torch.pow(input, float(exponent))


def _clamp_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    bounds = [float(b) for b in (a["min"], a["max"]) if b is not None]
    if not bounds:
        raise ShapeMismatch("clamp needs min or max (or both)")
    return same(x, dtype=result_type(x, *bounds))


@builtin_op("clamp", rule=_clamp_rule)
def clamp(input: Tensor, *, min: float | None = None, max: float | None = None) -> Tensor:
    """``torch.clamp(input, min, max)``; at least one bound (integer inputs give float32)."""
    return torch.clamp(
        input, min=None if min is None else float(min), max=None if max is None else float(max)
    )


def _scalar_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    return same(x, dtype=result_type(x, float(a["value"])))


@builtin_op("add_scalar", rule=_scalar_rule)
def add_scalar(input: Tensor, *, value: float) -> Tensor:
    """``input + value`` (the same as ``add`` with ``other``)."""
    return input + value


@builtin_op("mul_scalar", rule=_scalar_rule)
def mul_scalar(input: Tensor, *, value: float) -> Tensor:
    """``input * value`` (the same as ``mul`` with ``other``)."""
    return input * value
