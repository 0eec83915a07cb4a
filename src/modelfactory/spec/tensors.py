"""The model's tensors that are data, not layers: the random input and constants."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .validation import Frozen, custom_error

__all__ = ["Dtype", "InputSpec", "ConstantSpec"]

Dtype = Literal["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]
_FLOATS = ("float32", "float64", "float16", "bfloat16")
_INT_MAX = {"int64": 2**63 - 1, "int32": 2**31 - 1, "bool": 1}
# One dimension's size; any real tensor is far smaller, and torch overflows past 2**63.
MAX_DIM = 2**40
Size = Annotated[int, Field(ge=0, le=MAX_DIM)]


class InputSpec(Frozen):
    """The random input of the forward pass (``torch.rand(2, 20)`` is the default)."""

    shape: tuple[Annotated[PositiveInt, Field(le=MAX_DIM)], ...] = Field(min_length=1)
    dist: Literal["rand", "randn", "zeros", "ones", "randint"] = "rand"
    high: PositiveInt | None = Field(
        default=None, description="randint only: exclusive upper bound (token ids)"
    )
    dtype: Dtype | None = Field(default=None, description="default float32, or int64 for randint")

    @model_validator(mode="after")
    def _randint_needs_high(self) -> InputSpec:
        if self.dist == "randint" and self.high is None:
            raise PydanticCustomError(
                "randint_high", "dist 'randint' needs 'high', the exclusive upper bound"
            )
        if self.dist != "randint" and self.high is not None:
            raise PydanticCustomError("unused_high", "'high' is only used with dist 'randint'")
        dtype = self.resolved_dtype
        if self.dist in ("rand", "randn") and dtype not in _FLOATS:
            raise custom_error(
                "dist_dtype",
                f"dist {self.dist!r} draws floating-point values; dtype {dtype!r} cannot hold "
                "them. Use a float dtype, or dist 'randint' for integers",
            )
        if self.high is not None and self.high - 1 > _INT_MAX.get(dtype, 2**53):
            raise custom_error(
                "randint_high_range",
                f"'high' {self.high} is beyond what dtype {dtype!r} holds; use a smaller bound",
            )
        return self

    @property
    def resolved_dtype(self) -> str:
        """The dtype the input tensor is drawn in."""
        return self.dtype or ("int64" if self.dist == "randint" else "float32")


class ConstantSpec(Frozen):
    """A non-trainable tensor (a persistent buffer), filled from the model's seed."""

    shape: tuple[Size, ...]
    fill: Literal["rand", "randn", "zeros", "ones", "full", "arange"] = "rand"
    value: float | None = Field(default=None, description="fill 'full' only: the value")
    dtype: Dtype = "float32"

    @model_validator(mode="after")
    def _full_needs_value(self) -> ConstantSpec:
        if (self.fill == "full") != (self.value is not None):
            raise PydanticCustomError(
                "constant_value", "'value' is required with fill 'full' and used only there"
            )
        if self.fill in ("rand", "randn") and self.dtype not in _FLOATS:
            raise custom_error(
                "fill_dtype",
                f"fill {self.fill!r} draws floating-point values; dtype {self.dtype!r} cannot "
                "hold them. Use a float dtype, or fill 'zeros', 'ones', 'full' or 'arange'",
            )
        return self
