"""The built-in ops of forward steps, one module per family, each op registered with its shape rule.

An op is named after the torch function or tensor method it calls, with
torch's argument names: ``torch.transpose(input, dim0, dim1)`` is
``{op: transpose, dim0: 1, dim1: 2}``. Positional parameters are tensor inputs
and keyword-only parameters are config arguments, validated like layer
arguments. Ops are side-effect free and never evaluate a string as code.
Users add their own with :func:`modelfactory.register_op`.
"""

from __future__ import annotations

from . import (  # noqa: F401  (each module registers its ops on import)
    arith,
    attention,
    elementwise,
    functional,
    index,
    join,
    linalg,
    masks,
    reduce,
    shape,
)
from .common import OpShapeRule, broadcast_shapes, meta_of, result_type
from .linalg import EINSUM_MAX_LEN, einsum_shape, parse_equation

__all__ = [
    "OpShapeRule",
    "broadcast_shapes",
    "meta_of",
    "result_type",
    "EINSUM_MAX_LEN",
    "einsum_shape",
    "parse_equation",
]
