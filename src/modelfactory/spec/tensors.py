"""The model's tensors that are data, not layers: the random input and constants."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .validation import Frozen

__all__ = ["Dtype", "InputSpec", "ConstantSpec"]

Dtype = Literal["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]


class InputSpec(Frozen):
    """The random input of the forward pass (``torch.rand(2, 20)`` is the default)."""

    shape: tuple[PositiveInt, ...] = Field(min_length=1)
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
        return self

    @property
    def resolved_dtype(self) -> str:
        """The dtype the input tensor is drawn in."""
        return self.dtype or ("int64" if self.dist == "randint" else "float32")


class ConstantSpec(Frozen):
    """A non-trainable tensor (a persistent buffer), filled from the model's seed."""

    shape: tuple[Annotated[int, Field(ge=0)], ...]
    fill: Literal["rand", "randn", "zeros", "ones", "full", "arange"] = "rand"
    value: float | None = Field(default=None, description="fill 'full' only: the value")
    dtype: Dtype = "float32"

    @model_validator(mode="after")
    def _full_needs_value(self) -> ConstantSpec:
        if (self.fill == "full") != (self.value is not None):
            raise PydanticCustomError(
                "constant_value", "'value' is required with fill 'full' and used only there"
            )
        return self
