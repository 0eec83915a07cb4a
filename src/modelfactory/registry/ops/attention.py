"""Attention ops: scaled_dot_product_attention (causal, masked, grouped-query), softmax, log_softmax."""

from __future__ import annotations

from typing import Annotated

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..symbolic import ShapeMismatch, TensorMeta
from .common import Args, Inputs, Int64, broadcast_shapes, builtin_op, need_float, same, wrap_dim
from .linalg import matmul_shape

__all__: list[str] = []


def _sdpa_rule(a: Args, inputs: Inputs) -> TensorMeta:
    q, k, v = inputs[:3]
    mask = inputs[3] if len(inputs) > 3 else None
    for name, t in (("query", q), ("key", k), ("value", v)):
        if t.ndim < 2:
            raise ShapeMismatch(
                f"{name} must have at least 2 dims (..., L, E), got shape {list(t.shape)}"
            )
    if not (q.dtype == k.dtype == v.dtype):
        raise ShapeMismatch(
            f"query, key and value must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    need_float(q, "query")
    # stricter than torch, whose fused CPU path needs it too
    if mask is not None and mask.ndim < 2:
        raise ShapeMismatch(
            f"attn_mask must have at least 2 dims (..., L, S), got shape {list(mask.shape)}"
        )
    if mask is not None and mask.dtype not in ("bool", "float32", q.dtype):
        raise ShapeMismatch(
            f"attn_mask must be bool or float32 or the query's dtype, got {mask.dtype}"
        )
    if mask is not None and a["is_causal"]:
        raise ShapeMismatch("attn_mask and is_causal=True cannot both be given")
    ks, vs = k.shape, v.shape
    if a["enable_gqa"]:
        for name, t in (("query", q), ("key", k), ("value", v)):
            if t.ndim < 3:
                raise ShapeMismatch(
                    f"enable_gqa needs (..., heads, L, E) inputs; {name} has shape {list(t.shape)}"
                )
        hq, hk, hv = q.shape[-3], k.shape[-3], v.shape[-3]
        # stricter than torch for 0 heads (which divides by zero there)
        if hk == 0 or hv == 0 or hq % hk or hq % hv:
            raise ShapeMismatch(
                f"key heads ({hk}) and value heads ({hv}) must divide query heads ({hq})"
            )
        ks = ks[:-3] + (hq,) + ks[-2:]
        vs = vs[:-3] + (hq,) + vs[-2:]
    if q.shape[-1] != ks[-1]:
        raise ShapeMismatch(f"query and key embedding sizes differ: {q.shape[-1]} vs {ks[-1]}")
    if ks[-2] != vs[-2]:
        raise ShapeMismatch(f"key and value sequence lengths differ: {ks[-2]} vs {vs[-2]}")
    scores = matmul_shape(q.shape, ks[:-2] + (ks[-1], ks[-2]))  # (..., L, S)
    if mask is not None and broadcast_shapes(scores, mask.shape) != scores:
        raise ShapeMismatch(
            f"attn_mask of shape {list(mask.shape)} does not broadcast to the scores' shape {list(scores)}"
        )
    return TensorMeta(matmul_shape(scores, vs), q.dtype)


@builtin_op("scaled_dot_product_attention", rule=_sdpa_rule)
def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    *,
    dropout_p: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """``F.scaled_dot_product_attention(query, key, value, attn_mask, ...)``; attn_mask is an optional 4th input.

    As in torch, ``dropout_p`` applies whenever it is > 0, in eval mode too:
    keep it 0 in models meant for inference. ``enable_gqa`` lets key and value
    have fewer heads than query (grouped-query attention).
    """
    return F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attn_mask,
        dropout_p=dropout_p,
        is_causal=is_causal,
        scale=scale,
        enable_gqa=enable_gqa,
    )


def _softmax_rule(a: Args, inputs: Inputs) -> TensorMeta:
    (x,) = inputs
    need_float(x)
    wrap_dim(a["dim"], x.ndim)
    return same(x)


@builtin_op("softmax", rule=_softmax_rule)
def softmax(input: Tensor, *, dim: Int64 = -1) -> Tensor:
    """``F.softmax(input, dim)`` (default dim -1)."""
    return F.softmax(input, dim=dim)


@builtin_op("log_softmax", rule=_softmax_rule)
def log_softmax(input: Tensor, *, dim: Int64 = -1) -> Tensor:
    """``F.log_softmax(input, dim)`` (default dim -1)."""
    return F.log_softmax(input, dim=dim)
