"""Linear algebra ops: matmul, bmm, and einsum (its equation parsed here as data, never evaluated)."""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Annotated

import torch
from pydantic import AfterValidator
from torch import Tensor

from ..symbolic import ShapeMismatch, TensorMeta
from .common import Args, Inputs, broadcast_shapes, builtin_op, is_float, meta_of

__all__ = ["EINSUM_MAX_LEN", "parse_equation", "einsum_shape", "matmul_shape"]


def _same_dtype_numeric(inputs: Sequence[TensorMeta], what: str) -> str:
    dtypes = {t.dtype for t in inputs}
    if len(dtypes) != 1:
        raise ShapeMismatch(
            f"{what} needs inputs of one dtype, got {', '.join(t.dtype for t in inputs)}"
        )
    (dtype,) = dtypes
    if dtype == "bool":
        raise ShapeMismatch(f"{what} is not implemented for bool inputs")
    return dtype


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of ``torch.matmul`` on inputs of shapes ``a`` and ``b``."""
    if not a or not b:
        raise ShapeMismatch(
            f"matmul needs inputs with at least 1 dim, got {len(a)}-d and {len(b)}-d"
        )
    a2 = a if len(a) >= 2 else (1,) + a
    b2 = b if len(b) >= 2 else b + (1,)
    if a2[-1] != b2[-2]:
        raise ShapeMismatch(
            f"matmul inner sizes differ: {list(a)} @ {list(b)} ({a2[-1]} vs {b2[-2]})"
        )
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    return batch + (a2[-2],) * (len(a) >= 2) + (b2[-1],) * (len(b) >= 2)


def _matmul_rule(a: Args, inputs: Inputs) -> TensorMeta:
    x, other = inputs
    dtype = _same_dtype_numeric(inputs, "matmul")
    return TensorMeta(matmul_shape(x.shape, other.shape), dtype)


@builtin_op("matmul", rule=_matmul_rule)
def matmul(input: Tensor, other: Tensor) -> Tensor:
    """``torch.matmul`` (``@``): 1-d, 2-d and broadcast batched products (FixedHiddenMLP's ``torch.mm``)."""
    return torch.matmul(input, other)


def _bmm_rule(a: Args, inputs: Inputs) -> TensorMeta:
    x, y = inputs
    if x.ndim != 3 or y.ndim != 3:
        raise ShapeMismatch(f"bmm needs two 3-d inputs, got {x.ndim}-d and {y.ndim}-d")
    dtype = _same_dtype_numeric(inputs, "bmm")
    if x.shape[0] != y.shape[0]:
        raise ShapeMismatch(f"bmm batch sizes differ: {x.shape[0]} vs {y.shape[0]}")
    if x.shape[2] != y.shape[1]:
        raise ShapeMismatch(f"bmm inner sizes differ: {x.shape[2]} vs {y.shape[1]}")
    return TensorMeta((x.shape[0], x.shape[1], y.shape[2]), dtype)


@builtin_op("bmm", rule=_bmm_rule)
def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """``torch.bmm``: (b, n, m) @ (b, m, p) -> (b, n, p); no broadcasting."""
    return torch.bmm(input, mat2)


# --- einsum -------------------------------------------------------------------
EINSUM_MAX_LEN = 256
_EINSUM_CHARS = frozenset(string.ascii_letters + ",.->" + " ")
_ELL = "..."


def _einsum_term(term: str, where: str) -> list[str]:
    """Split one subscript term into labels and at most one '...'."""
    if term.count(_ELL) > 1 or "." in term.replace(_ELL, "", 1):
        raise ShapeMismatch(f"einsum {where} {term!r}: '.' may only appear as a single '...'")
    items: list[str] = []
    i = 0
    while i < len(term):
        if term.startswith(_ELL, i):
            items.append(_ELL)
            i += 3
        else:
            items.append(term[i])
            i += 1
    return items


def parse_equation(equation: str) -> tuple[list[list[str]], list[str] | None]:
    """Parse an einsum equation as data: (per-operand labels, output labels or None if implicit).

    Accepted: letters, ',', one '->', '...' (at most one per term), spaces;
    at most EINSUM_MAX_LEN characters. Checked before anything else reads it,
    so a malformed or oversized equation is refused at validation.
    """
    if not isinstance(equation, str):
        raise ShapeMismatch(f"einsum equation must be a string, got {type(equation).__name__}")
    if len(equation) > EINSUM_MAX_LEN:
        raise ShapeMismatch(
            f"einsum equation is {len(equation)} characters long; the limit is {EINSUM_MAX_LEN}"
        )
    bad = sorted(set(equation) - _EINSUM_CHARS)
    if bad:
        raise ShapeMismatch(
            f"einsum equation {equation!r} contains {bad[0]!r}; only letters, ',', '->' and '...' are allowed"
        )
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    if "-" in lhs + rhs or ">" in lhs + rhs:
        raise ShapeMismatch(
            f"einsum equation {equation!r}: '-' and '>' may only appear together, once, as '->'"
        )
    if "," in rhs:
        raise ShapeMismatch(
            f"einsum equation {equation!r}: the output (after '->') cannot contain ','"
        )
    terms = [_einsum_term(t, f"operand {k} subscripts") for k, t in enumerate(lhs.split(","))]
    return terms, (_einsum_term(rhs, "output") if arrow else None)


def _check_equation(equation: str) -> str:
    try:
        parse_equation(equation)
    except ShapeMismatch as err:
        raise ValueError(str(err)) from None
    return equation


# the equation argument: refused at validation when malformed or oversized
Equation = Annotated[str, AfterValidator(_check_equation)]


def einsum_shape(equation: str, shapes: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The output shape of ``einsum(equation, *operands)`` for operands of ``shapes``.

    Sizes of one label must agree across operands (1 broadcasts, as in torch)
    and be equal within one operand.
    """
    terms, out_items = parse_equation(equation)
    if not shapes:
        raise ShapeMismatch("einsum needs at least one input")
    if len(terms) != len(shapes):
        raise ShapeMismatch(
            f"einsum equation {equation!r} names {len(terms)} operand(s) but {len(shapes)} input(s) were given"
        )
    sizes: dict[str, int] = {}
    where: dict[str, int] = {}
    counts: dict[str, int] = {}
    ellipses: list[tuple[int, ...]] = []
    for k, (items, shape) in enumerate(zip(terms, shapes, strict=True)):
        shape = tuple(shape)
        n_labels = sum(1 for it in items if it != _ELL)
        has_ell = _ELL in items
        if (n_labels > len(shape)) if has_ell else (n_labels != len(shape)):
            raise ShapeMismatch(
                f"einsum operand {k} has {len(shape)} dims (shape {list(shape)}) but its subscripts "
                f"{''.join(items)!r} name {n_labels}"
            )
        ell_n = len(shape) - n_labels
        local: dict[str, int] = {}
        pos = 0
        for it in items:
            if it == _ELL:
                ellipses.append(shape[pos : pos + ell_n])
                pos += ell_n
                continue
            size = shape[pos]
            pos += 1
            counts[it] = counts.get(it, 0) + 1
            if it in local and local[it] != size:
                raise ShapeMismatch(
                    f"einsum subscript {it!r} is repeated in operand {k} with different sizes ({local[it]} vs {size})"
                )
            local[it] = size
        for label, size in local.items():
            have = sizes.get(label)
            if have is None or have == 1:
                sizes[label], where[label] = size, k
            elif size != have and size != 1:
                raise ShapeMismatch(
                    f"einsum subscript {label!r} has size {have} in operand {where[label]} but {size} in operand {k}"
                )
    try:
        ell_shape = broadcast_shapes(*ellipses) if ellipses else ()
    except ShapeMismatch:
        raise ShapeMismatch(
            f"einsum: the dims covered by '...' do not broadcast ({', '.join(str(list(e)) for e in ellipses)})"
        ) from None
    if out_items is None:
        implicit = tuple(sizes[label] for label in sorted(counts) if counts[label] == 1)
        return tuple(ell_shape) + implicit
    seen: set[str] = set()
    out: list[int] = []
    for it in out_items:
        if it == _ELL:
            out.extend(ell_shape)
            continue
        if it not in sizes:
            raise ShapeMismatch(f"einsum output subscript {it!r} does not appear in any input")
        if it in seen:
            raise ShapeMismatch(f"einsum output subscript {it!r} appears more than once")
        seen.add(it)
        out.append(sizes[it])
    return tuple(out)


def _einsum_rule(a: Args, inputs: Inputs) -> TensorMeta:
    shape = einsum_shape(a["equation"], [t.shape for t in inputs])
    dtypes = {t.dtype for t in inputs}
    # stricter than torch: torch's result dtype for mixed or bool/int32 operands
    # depends on the contraction path it picks (bool sums become int64, ...).
    if len(dtypes) != 1:
        raise ShapeMismatch(
            f"einsum needs operands of one dtype, got {', '.join(t.dtype for t in inputs)}"
        )
    (dtype,) = dtypes
    if not (is_float(dtype) or dtype == "int64"):
        raise ShapeMismatch(f"einsum supports floating-point or int64 operands, got {dtype}")
    return TensorMeta(shape, dtype)


@builtin_op("einsum", rule=_einsum_rule)
def einsum(*operands: Tensor, equation: Equation) -> Tensor:
    """``torch.einsum(equation, *operands)``; the equation is checked here before torch parses it."""
    _einsum_rule({"equation": equation}, tuple(meta_of(t) for t in operands))
    return torch.einsum(equation, *operands)
