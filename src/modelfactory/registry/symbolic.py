"""Symbolic tensors for shape rules: what a rule receives and returns instead of real tensors.

A *shape rule* sits beside a layer's or op's registration and says what it
returns for inputs of given shapes and dtypes, without building or running
anything (Keras' ``compute_output_shape``)::

    rule(args: dict, inputs: tuple[Value, ...]) -> Value

``args`` are the validated config arguments as written (defaults not filled
in); a :data:`Value` is a :class:`TensorMeta`, a (nested) tuple of values, or
``None``. A rule raises :class:`ShapeMismatch` when the inputs do not fit,
with a message that reads after ``"Linear got input shape(s) [[2, 21]]: "``,
and :class:`Unsupported` when shapes alone cannot decide (the checker then
runs the layer on the meta device instead).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

__all__ = ["TensorMeta", "Value", "ShapeRule", "ShapeMismatch", "Unsupported", "dtype_name"]

_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
    "chalf": "complex32",
}


def dtype_name(dtype: Any) -> str:
    """``torch.float32`` or ``"float"`` -> ``"float32"``."""
    name = str(dtype).removeprefix("torch.")
    return _ALIASES.get(name, name)


@dataclass(frozen=True)
class TensorMeta:
    """A tensor as a shape rule sees it: its shape and dtype, no data."""

    shape: tuple[int, ...]
    dtype: str = "float32"  # torch's name without "torch."

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "dtype", dtype_name(self.dtype))

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def numel(self) -> int:
        """Number of elements (may be astronomically large: nothing is allocated)."""
        count = 1
        for size in self.shape:
            count *= size
        return count


Value = Union[TensorMeta, tuple, None]  # noqa: UP007 - a tuple holds Values, nested
ShapeRule = Callable[[dict[str, Any], tuple[Any, ...]], Any]


class ShapeMismatch(Exception):
    """The inputs do not fit the layer or op; the message says what was expected and found."""


class Unsupported(Exception):
    """Shapes alone cannot decide the output; the checker runs the layer on meta instead."""
