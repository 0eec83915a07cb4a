"""Functional ops without parameters: layer_norm, rms_norm, dropout, pad, interpolate."""

from __future__ import annotations

import builtins
import math
from typing import Annotated, Literal

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..symbolic import ShapeMismatch, TensorMeta
from .common import INT64_MAX, Args, Inputs, Int64, builtin_op, fits, need_float, same

__all__: list[str] = []


# --- normalisation (no affine parameters: a layer has those) ------------------------
def _norm_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    ns = a["normalized_shape"]
    ns = [ns] if isinstance(ns, int) else list(ns)
    if not ns:
        raise ShapeMismatch("normalized_shape must have at least one entry")
    if len(ns) > x.ndim or list(x.shape[x.ndim - len(ns) :]) != ns:
        raise ShapeMismatch(
            f"normalized_shape {ns} does not match the trailing dims of shape {list(x.shape)}"
        )
    need_float(x)
    return same(x)


@builtin_op("layer_norm", rule=_norm_rule)
def layer_norm(
    input: Tensor, *, normalized_shape: Int64 | list[Int64], eps: float = 1e-5
) -> Tensor:
    """``F.layer_norm(input, normalized_shape, eps=eps)`` without weight or bias."""
    ns = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    return F.layer_norm(input, ns, eps=eps)


@builtin_op("rms_norm", rule=_norm_rule)
def rms_norm(
    input: Tensor, *, normalized_shape: Int64 | list[Int64], eps: float | None = None
) -> Tensor:
    """``F.rms_norm(input, normalized_shape, eps=eps)`` without weight (eps None: the dtype's epsilon)."""
    ns = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    return F.rms_norm(input, ns, eps=eps)


# --- dropout ---------------------------------------------------------------------------
def _dropout_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    p = a["p"]
    if not 0.0 <= p <= 1.0:
        raise ShapeMismatch(f"p must be between 0 and 1, got {p}")
    if a["training"] and 0.0 < p < 1.0:  # p 0 or 1 needs no random draw
        need_float(x)
    return same(x)


@builtin_op("dropout", rule=_dropout_rule)
def dropout(
    input: Tensor, *, p: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5, training: bool = False
) -> Tensor:
    """``F.dropout(input, p, training)``.

    Ops are stateless and cannot see the module's train/eval mode, so the
    flag is an explicit argument that defaults to False (a no-op): a model
    file never drops silently at inference. For train-time dropout use the
    ``Dropout`` layer, or ``training: true`` in a model built only to train.
    With training=True the op draws from torch's global random stream.
    """
    return F.dropout(input, p=p, training=training)


# --- pad ---------------------------------------------------------------------------------
def _pad_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    pad = list(a["pad"])
    mode, value = a["mode"], a["value"]
    nd = x.ndim
    if len(pad) % 2:
        raise ShapeMismatch(f"pad {pad} must have an even number of entries (before, after pairs)")
    k = len(pad) // 2
    if k > nd:
        raise ShapeMismatch(f"pad {pad} pads {k} dims but the input has {nd}")
    out = list(x.shape)
    if mode == "constant":
        for j in range(k):
            d = nd - 1 - j
            lo, hi = pad[2 * j], pad[2 * j + 1]
            if x.shape[d] + builtins.min(lo, 0) + builtins.min(hi, 0) < 0:
                raise ShapeMismatch(
                    f"negative pad ({lo}, {hi}) removes more than the {x.shape[d]} entries of dim {d}"
                )
            out[d] = x.shape[d] + lo + hi
        if value is not None and any(p > 0 for p in pad) and not fits(value, x.dtype):
            raise ShapeMismatch(f"value {value} cannot be stored in a {x.dtype} tensor")
        return same(x, out)
    if value is not None and value != 0:
        raise ShapeMismatch(f"mode {mode!r} takes no value")
    if k not in (1, 2, 3) or nd not in (k + 1, k + 2):
        raise ShapeMismatch(
            f"mode {mode!r} pads the last 1-3 dims of a (N, C, ...) or (C, ...) input; "
            f"pad of length {len(pad)} needs a {k + 1}-d or {k + 2}-d input, got {nd}-d"
        )
    if any(p < 0 for p in pad):  # stricter than torch, which accepts some of these
        raise ShapeMismatch(f"negative padding is only supported in constant mode, got pad {pad}")
    if mode in ("reflect", "replicate"):
        first = 1 if nd == k + 2 else 0  # a batch dim may be empty, no other
        if any(s == 0 for s in x.shape[first:]):
            raise ShapeMismatch(
                f"mode {mode!r} needs non-empty dims (a batch dim may be 0), got shape {list(x.shape)}"
            )
    for j in range(k):
        d = nd - 1 - j
        lo, hi, size = pad[2 * j], pad[2 * j + 1], x.shape[d]
        if mode == "reflect" and not (lo < size and hi < size):
            raise ShapeMismatch(
                f"reflect padding ({lo}, {hi}) must be less than the size {size} of dim {d}"
            )
        if mode == "circular" and not (lo <= size and hi <= size):
            raise ShapeMismatch(
                f"circular padding ({lo}, {hi}) wraps around dim {d} of size {size} more than once"
            )
        out[d] = size + lo + hi
    return same(x, out)


@builtin_op("pad", rule=_pad_rule)
def pad(
    input: Tensor,
    *,
    pad: list[Int64],
    mode: Literal["constant", "reflect", "replicate", "circular"] = "constant",
    value: float | None = None,
) -> Tensor:
    """``F.pad(input, pad, mode, value)``: pad = [last_before, last_after, 2nd-last_before, ...].

    constant mode pads any number of trailing dims and accepts negative pads
    (cropping); the other modes pad the last 1-3 dims of a (N, C, ...) or
    (C, ...) input, with non-negative pads only (stricter than torch).
    """
    if mode != "constant" and any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding is only supported in constant mode, got {pad}")
    return F.pad(input, list(pad), mode=mode, value=value)


# --- interpolate -------------------------------------------------------------------------
Scale = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
_INTERP_NDIM = {"linear": (3,), "bilinear": (4,), "bicubic": (4,), "trilinear": (5,)}


def _interpolate_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    size, scale, mode, align = a["size"], a["scale_factor"], a["mode"], a["align_corners"]
    nd = x.ndim
    spatial = nd - 2
    if align is not None and mode in ("nearest", "area", "nearest-exact"):
        raise ShapeMismatch(
            f"align_corners can only be set with linear, bilinear, bicubic or trilinear, not {mode!r}"
        )
    if (size is None) == (scale is None):
        raise ShapeMismatch("give exactly one of size or scale_factor")
    if nd not in _INTERP_NDIM.get(mode, (3, 4, 5)):
        want = " or ".join(f"{n}-d" for n in _INTERP_NDIM.get(mode, (3, 4, 5)))
        raise ShapeMismatch(f"mode {mode!r} needs a {want} (N, C, ...) input, got {nd}-d")
    if size is not None:
        sizes = [size] * spatial if isinstance(size, int) else list(size)
        if len(sizes) != spatial:
            raise ShapeMismatch(f"size {size} must have {spatial} entries, one per spatial dim")
    else:
        scales = [scale] * spatial if isinstance(scale, (int, float)) else list(scale)
        if len(scales) != spatial:
            raise ShapeMismatch(
                f"scale_factor {scale} must have {spatial} entries, one per spatial dim"
            )
        sizes = []
        for s, f in zip(x.shape[2:], scales, strict=True):
            f = float(f)
            if not math.isfinite(f):
                raise ShapeMismatch(f"scale_factor {scale} must be finite")
            o = s * f
            if abs(o) > INT64_MAX:
                raise ShapeMismatch(
                    f"scale_factor {scale} gives an output size too large to represent"
                )
            sizes.append(math.trunc(o) if mode == "area" else math.floor(o))
    # stricter than torch for mode 'area', which accepts some empty channel and output sizes
    if x.shape[1] == 0:
        raise ShapeMismatch(f"the channel dim (1) must not be empty, got shape {list(x.shape)}")
    if any(s <= 0 for s in x.shape[2:]) or any(s <= 0 for s in sizes):
        raise ShapeMismatch(
            f"input and output spatial sizes must be > 0, got input {list(x.shape[2:])} and output {sizes}"
        )
    need_float(x)
    return same(x, x.shape[:2] + tuple(sizes))


@builtin_op("interpolate", rule=_interpolate_rule)
def interpolate(
    input: Tensor,
    *,
    size: Int64 | list[Int64] | None = None,
    scale_factor: Scale | list[Scale] | None = None,
    mode: Literal[
        "nearest", "linear", "bilinear", "bicubic", "trilinear", "area", "nearest-exact"
    ] = "nearest",
    align_corners: bool | None = None,
) -> Tensor:
    """``F.interpolate`` on an (N, C, *spatial) input: exactly one of size / scale_factor."""
    return F.interpolate(
        input, size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners
    )
