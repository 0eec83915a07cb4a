"""The model's tensors that are data, not layers: the random input, constants and learned parameters."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, PositiveInt, Tag, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from .placeholders import is_placeholder, placeholder_issues
from .validation import TAG_PREFIX, Frozen, custom_error, problem, raise_problems, scope_of

__all__ = ["Dtype", "InputSpec", "TensorFill", "ConstantSpec", "ParameterSpec", "Fill"]

Dtype = Literal["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]
FloatDtype = Literal["float32", "float64", "float16", "bfloat16"]
Fill = Literal["rand", "randn", "zeros", "ones", "full", "arange"]
_FLOATS = ("float32", "float64", "float16", "bfloat16")
_INT_MAX = {"int64": 2**63 - 1, "int32": 2**31 - 1, "bool": 1}
# One dimension's size; any real tensor is far smaller, and torch overflows past 2**63.
MAX_DIM = 2**40


def _not_none(value: Any) -> bool:
    return value is None


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


# A size, or (inside a block with params) a placeholder for one: {param: n}, {expr: "n + 1"}.
def _size_tag(value: Any) -> str:
    return f"{TAG_PREFIX}placeholder" if isinstance(value, dict) else f"{TAG_PREFIX}size"


Size = Annotated[
    Annotated[Annotated[int, Field(ge=0, le=MAX_DIM)], Tag(f"{TAG_PREFIX}size")]
    | Annotated[dict[str, str], Tag(f"{TAG_PREFIX}placeholder")],
    Discriminator(_size_tag),
]


def _value_tag(value: Any) -> str:
    return f"{TAG_PREFIX}placeholder" if isinstance(value, dict) else f"{TAG_PREFIX}number"


FillValue = Annotated[
    Annotated[float, Tag(f"{TAG_PREFIX}number")]
    | Annotated[dict[str, str], Tag(f"{TAG_PREFIX}placeholder")],
    Discriminator(_value_tag),
]


class TensorFill(Frozen):
    """A tensor made from a fill: its shape, how it is filled, and an optional triangle.

    ``tril: k`` keeps the lower triangle (``torch.tril(t, diagonal=k)``) of the
    last two dimensions and zeroes the rest; ``triu: k`` the upper. A causal
    mask is ``{shape: [T, T], fill: ones, dtype: bool, tril: 0}``.
    """

    shape: tuple[Size, ...]
    fill: Fill = "rand"
    value: FillValue | None = Field(default=None, description="fill 'full' only: the value")
    dtype: Dtype = "float32"
    tril: int | None = Field(
        default=None,
        strict=True,
        exclude_if=_not_none,
        description="keep the lower triangle from this diagonal (torch.tril)",
    )
    triu: int | None = Field(
        default=None,
        strict=True,
        exclude_if=_not_none,
        description="keep the upper triangle from this diagonal (torch.triu)",
    )

    @model_validator(mode="after")
    def _check_fill(self, info: ValidationInfo) -> TensorFill:
        problems = []
        if (self.fill == "full") != (self.value is not None):
            problems.append(
                problem(
                    "constant_value", "'value' is required with fill 'full' and used only there"
                )
            )
        if self.fill in ("rand", "randn") and self.dtype not in _FLOATS:
            problems.append(
                problem(
                    "fill_dtype",
                    f"fill {self.fill!r} draws floating-point values; dtype {self.dtype!r} cannot "
                    "hold them. Use a float dtype, or fill 'zeros', 'ones', 'full' or 'arange'",
                )
            )
        data = {"shape": list(self.shape), "value": self.value}
        for loc, holder in (
            (("shape", i), s) for i, s in enumerate(self.shape) if isinstance(s, dict)
        ):
            if not is_placeholder(holder):
                problems.append(
                    problem(
                        "bad_size",
                        "expected a size or a placeholder ({param: name} or {expr: ...}), "
                        f"found {holder!r}",
                        loc,
                        holder,
                    )
                )
        if isinstance(self.value, dict) and not is_placeholder(self.value):
            problems.append(
                problem("bad_value", f"expected a number, found {self.value!r}", ("value",))
            )
        problems += [problem(*issue) for issue in placeholder_issues(data, scope_of(info).params)]
        if (self.tril is not None or self.triu is not None) and len(self.shape) < 2:
            problems.append(
                problem(
                    "triangle_shape",
                    "'tril' and 'triu' work on the last two dimensions: the shape needs at least two",
                    ("shape",),
                )
            )
        raise_problems(type(self).__name__, problems)
        return self

    def concrete_shape(self) -> tuple[int, ...] | None:
        """The shape, or ``None`` while it holds placeholders (before expansion)."""
        if any(isinstance(s, dict) for s in self.shape):
            return None
        return tuple(int(s) for s in self.shape)  # type: ignore[arg-type]


class ConstantSpec(TensorFill):
    """A non-trainable tensor (a buffer), filled from the model's seed.

    ``persistent: false`` keeps it out of the ``state_dict`` (and so out of
    checkpoints, as PyTorch's ``register_buffer(..., persistent=False)``); it
    still moves with ``.to()`` and is rebuilt from its fill when a model is loaded.
    """

    persistent: bool = Field(
        default=True,
        exclude_if=lambda value: value is True,
        description="false: not in the state_dict (rebuilt from the fill on load)",
    )


class ParameterSpec(TensorFill):
    """A learned tensor owned by a composite (an ``nn.Parameter``, e.g. ``cls_token``).

    Filled from its own random stream; init rules reach it by its name
    (``{param: cls_token, scheme: normal, std: 0.02}``).
    """

    dtype: FloatDtype = "float32"
