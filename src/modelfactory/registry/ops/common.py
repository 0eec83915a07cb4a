"""Shared machinery of the built-in ops: registration with a shape rule, dims, broadcasting, dtypes.

Every built-in op is a module-level function named after the torch function or
tensor method it calls, with torch's argument names; its positional parameters
are tensor inputs and its keyword-only parameters are config arguments (see
:func:`modelfactory.registry.register_op`). :func:`builtin_op` registers it
with its shape rule wrapped in :class:`OpShapeRule`, which fills in defaults
from the signature and checks the inputs' kinds before the op's own rule runs.

Rules follow :mod:`modelfactory.registry.symbolic`: they take
:class:`TensorMeta` values, never allocate (``expand`` to 10**12 elements
returns that shape at once; bounding element counts is the checker's job) and
raise :class:`ShapeMismatch` with a message that reads after
``"op 'x' got input shapes [[2, 3]]: "``. They agree with torch 2.x on CPU,
shapes *and* dtypes; where a rule is deliberately stricter than torch, it
says so ("stricter than torch").
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import Tensor

from ..symbolic import ShapeMismatch, TensorMeta, Value
from ..table import register_op

__all__ = [
    "Args",
    "Inputs",
    "Int64",
    "INT64_MAX",
    "DTYPES",
    "OpShapeRule",
    "builtin_op",
    "meta_of",
    "wrap_dim",
    "need_ndim",
    "dim_list",
    "infer_size",
    "broadcast_shapes",
    "result_type",
    "same",
    "need_float",
    "fits",
    "is_float",
    "is_complex",
    "is_integral",
    "default_float",
]

Args = dict[str, Any]  # validated arguments, defaults filled in by OpShapeRule
Inputs = tuple[Any, ...]  # the input values: TensorMeta, tuples of them, or None

INT64_MAX = 2**63 - 1
# torch takes integer arguments as int64; a bigger one is refused at validation
Int64 = Annotated[int, Field(ge=-(2**63), le=INT64_MAX)]


def meta_of(value: Any) -> Value:
    """The :class:`TensorMeta` of a tensor (tuples of tensors map to tuples of metas)."""
    if isinstance(value, Tensor):
        return TensorMeta(tuple(int(s) for s in value.shape), str(value.dtype))
    if isinstance(value, (tuple, list)):
        return tuple(meta_of(v) for v in value)
    if value is None:
        return None
    raise TypeError(f"meta_of: not a tensor or tuple of tensors: {type(value).__name__}")


# =============================================================================
# Registration
# =============================================================================
class OpShapeRule:
    """An op's registered ``infer``: fills defaults, checks inputs, then calls the op's rule.

    A module-level class (not a closure), so registry entries pickle.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        rule: Callable[[Args, Inputs], Value],
        takes_tuple: bool,
    ) -> None:
        params = list(inspect.signature(fn).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        keyword = [p for p in params if p.kind is p.KEYWORD_ONLY]
        self.name = name
        self.rule = rule
        self.takes_tuple = takes_tuple
        self.defaults = {p.name: p.default for p in keyword if p.default is not p.empty}
        self.required = frozenset(p.name for p in keyword if p.default is p.empty)
        self.known = frozenset(p.name for p in keyword)
        self.min_inputs = sum(1 for p in positional if p.default is p.empty)
        self.max_inputs = (
            None if any(p.kind is p.VAR_POSITIONAL for p in params) else len(positional)
        )
        self.optional_positions = frozenset(
            i for i, p in enumerate(positional) if p.default is None
        )

    def __call__(self, args: Args, inputs: Inputs) -> Value:
        unknown = sorted(set(args) - self.known)
        if unknown:
            raise TypeError(
                f"{self.name}: unknown argument(s) {unknown} (args are validated before the rule runs)"
            )
        missing = sorted(self.required - set(args))
        if missing:
            raise TypeError(f"{self.name}: missing required argument(s) {missing}")
        full = {**self.defaults, **args}
        _check_int64(full)
        inputs = tuple(inputs)
        n = len(inputs)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            if self.max_inputs is None:
                want = f"at least {self.min_inputs}"
            elif self.min_inputs == self.max_inputs:
                want = str(self.min_inputs)
            else:
                want = f"{self.min_inputs} to {self.max_inputs}"
            raise ShapeMismatch(f"expects {want} input{'s' if want != '1' else ''}, got {n}")
        for i, value in enumerate(inputs):
            if self.takes_tuple:
                if not isinstance(value, tuple):
                    raise ShapeMismatch(
                        f"input {i} is {_kind(value)}; {self.name} picks an element of a tuple value "
                        "(the output of split or chunk, or of a layer that returns several)"
                    )
                _check_value(value)
            elif value is None and i in self.optional_positions:
                continue
            elif not isinstance(value, TensorMeta):
                raise ShapeMismatch(
                    f"input {i} is {_kind(value)}, not a tensor (pick one with getitem)"
                )
            else:
                _check_meta(value, i)
        return self.rule(full, inputs)


def builtin_op(
    name: str, *, rule: Callable[[Args, Inputs], Value], takes_tuple: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as op ``name`` with shape rule ``rule``.

    ``rule(args, inputs)`` receives the arguments with defaults filled in and
    inputs already checked to be :class:`TensorMeta` (a tuple for
    ``takes_tuple`` ops; ``None`` only for an optional input left out).
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        register_op(name, infer=OpShapeRule(name, fn, rule, takes_tuple))(fn)
        return fn

    return decorate


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)} values"
    if isinstance(value, TensorMeta):
        return f"a tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def _check_meta(meta: TensorMeta, i: int) -> None:
    if not all(0 <= s <= INT64_MAX for s in meta.shape):
        raise ShapeMismatch(
            f"input {i} has an invalid shape {list(meta.shape)} (sizes must be non-negative)"
        )
    if meta.dtype not in DTYPES:
        raise ShapeMismatch(f"input {i} has an unknown dtype {meta.dtype!r}")


def _check_value(value: Value) -> None:
    if isinstance(value, tuple):
        for v in value:
            _check_value(v)
    elif isinstance(value, TensorMeta):
        _check_meta(value, 0)


def _check_int64(value: Any, key: str = "") -> None:
    """torch takes integer arguments as int64; a bigger one is refused here, as torch would."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_int64(v, k)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_int64(v, key)
    elif (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not -(2**63) <= value <= INT64_MAX
    ):
        raise ShapeMismatch(f"argument {key}={value} does not fit in a 64-bit integer")


# =============================================================================
# Dims and broadcasting
# =============================================================================
def wrap_dim(dim: int, ndim: int, *, scalar_ok: bool = True, what: str = "dim") -> int:
    """Wrap a possibly negative ``dim`` as torch does (a 0-d tensor accepts -1 and 0 where scalar_ok)."""
    n = max(ndim, 1) if scalar_ok else ndim
    if n == 0:
        raise ShapeMismatch(f"{what} {dim} is not valid for a 0-d input")
    if not -n <= dim < n:
        raise ShapeMismatch(
            f"{what} {dim} is out of range for a {ndim}-d input (valid: {-n}..{n - 1})"
        )
    return dim % n


def need_ndim(x: TensorMeta, at_least: int, what: str = "input") -> None:
    """Refuse ``x`` with fewer than ``at_least`` dims."""
    if x.ndim < at_least:
        raise ShapeMismatch(
            f"{what} must have at least {at_least} dim{'s' if at_least > 1 else ''}, got shape {list(x.shape)}"
        )


def dim_list(dim: int | Sequence[int] | None, ndim: int) -> list[int] | None:
    """Wrapped, duplicate-free reduce/squeeze dims; None when ``dim`` is None."""
    if dim is None:
        return None
    dims = [dim] if isinstance(dim, int) else list(dim)
    wrapped = [wrap_dim(d, ndim) for d in dims]
    seen: set[int] = set()
    for d in wrapped:
        if d in seen:
            raise ShapeMismatch(f"dim {d} appears more than once in dim={list(dims)}")
        seen.add(d)
    return wrapped


def infer_size(shape: Sequence[int], numel: int, what: str = "shape") -> tuple[int, ...]:
    """torch's infer_size: at most one -1, the rest >= 0, and the element count must match."""
    infer = None
    known = 1
    for i, s in enumerate(shape):
        if s == -1:
            if infer is not None:
                raise ShapeMismatch(f"only one dimension of {what} {list(shape)} can be -1")
            infer = i
        elif s >= 0:
            known *= s
        else:
            raise ShapeMismatch(f"invalid size {s} in {what} {list(shape)}")
    if numel == known or (infer is not None and known > 0 and numel % known == 0):
        out = list(shape)
        if infer is not None:
            if known == 0:
                raise ShapeMismatch(
                    f"cannot reshape {numel} elements into {what} {list(shape)}: "
                    "the -1 is ambiguous when another size is 0"
                )
            out[infer] = numel // known
        return tuple(out)
    raise ShapeMismatch(f"{what} {list(shape)} is invalid for an input of {numel} elements")


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """torch's broadcasting: align right; sizes must be equal or 1 (1 stretches, 0 stays 0)."""
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        offset = ndim - len(shape)
        for i, size in enumerate(shape):
            j = offset + i
            if size == out[j] or size == 1:
                continue
            if out[j] == 1:
                out[j] = size
            else:
                raise ShapeMismatch(
                    f"shapes {' and '.join(str(list(s)) for s in shapes)} do not broadcast "
                    f"(size {out[j]} vs {size} at dim {j - ndim})"
                )
    return tuple(out)


def same(x: TensorMeta, shape: Sequence[int] | None = None, dtype: str | None = None) -> TensorMeta:
    """``x`` with another shape and/or dtype."""
    return TensorMeta(
        tuple(x.shape if shape is None else shape), x.dtype if dtype is None else dtype
    )


# =============================================================================
# Dtypes
# =============================================================================
DTYPES: dict[str, torch.dtype] = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def is_float(dtype: str) -> bool:
    """Floating point (not complex)."""
    return DTYPES[dtype].is_floating_point


def is_complex(dtype: str) -> bool:
    """Complex."""
    return DTYPES[dtype].is_complex


def is_integral(dtype: str) -> bool:
    """An integer dtype (bool excluded)."""
    return dtype != "bool" and not is_float(dtype) and not is_complex(dtype)


def default_float() -> str:
    """torch's default float dtype (what integer inputs of float functions give)."""
    return _name(torch.get_default_dtype())


def _promote(a: torch.dtype | None, b: torch.dtype | None) -> torch.dtype | None:
    if a is None:
        return b
    if b is None:
        return a
    return torch.promote_types(a, b)  # a table lookup on dtypes; no tensor is made


def _combine(higher: torch.dtype | None, lower: torch.dtype | None) -> torch.dtype | None:
    # torch's combine_categories (aten/src/ATen/native/TypeProperties.cpp)
    if higher is None:
        return lower
    if lower is None:
        return higher
    if higher.is_complex:
        return higher
    if lower.is_complex:
        return torch.promote_types(higher, lower) if higher.is_floating_point else lower
    if higher.is_floating_point:
        return higher
    if higher == torch.bool or lower.is_floating_point:
        return torch.promote_types(higher, lower)
    return higher


def result_type(*operands: TensorMeta | float | int | bool) -> str:
    """``torch.result_type`` over tensor metas and Python scalars.

    torch ranks operands in three tiers: tensors with dims, 0-d tensors, and
    Python scalars; a lower tier only matters when it is of a higher category
    (bool < integer < floating < complex). A Python float counts as the
    default float dtype (float32).
    """
    dims = zero = wrapped = None
    for o in operands:
        if isinstance(o, TensorMeta):
            if o.shape:
                dims = _promote(dims, DTYPES[o.dtype])
            else:
                zero = _promote(zero, DTYPES[o.dtype])
        elif isinstance(o, bool):
            wrapped = _promote(wrapped, torch.bool)
        elif isinstance(o, int):
            wrapped = _promote(wrapped, torch.int64)
        elif isinstance(o, float):
            wrapped = _promote(wrapped, torch.get_default_dtype())
        else:
            raise TypeError(f"result_type: unexpected operand {o!r}")
    out = _combine(dims, _combine(zero, wrapped))
    if out is None:
        raise TypeError("result_type: no operands")
    return _name(out)


def need_float(x: TensorMeta, what: str = "input") -> None:
    """Refuse a non-floating ``x``."""
    if not (is_float(x.dtype) or is_complex(x.dtype)):
        raise ShapeMismatch(f"{what} must be a floating-point tensor, got {x.dtype}")


def fits(value: float, dtype: str) -> bool:
    """Whether torch accepts ``value`` as a fill value for ``dtype`` (c10::checked_convert)."""
    if dtype == "bool" or is_complex(dtype):
        return True
    if is_float(dtype):
        return (
            math.isinf(value)
            or math.isnan(value)
            or abs(value) <= float(torch.finfo(DTYPES[dtype]).max)
        )
    if math.isnan(value) or math.isinf(value):
        return False
    info = torch.iinfo(DTYPES[dtype])
    return float(info.min) <= value <= float(info.max)
