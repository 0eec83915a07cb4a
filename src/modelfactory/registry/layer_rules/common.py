"""Symbolic output-shape rules for ``torch.nn`` layers (in the spirit of Keras' ``compute_output_shape``).

``LAYER_RULES[type](args, inputs)`` computes what ``getattr(torch.nn, type)(**args)(*inputs)``
returns -- shapes and dtypes, nested the way torch nests them -- without building or running
anything. ``args`` are the constructor keyword arguments as written in the config (torch's
defaults are applied here; int-or-tuple arguments may be an int, a list or a tuple).
``inputs`` are the positional forward inputs: a :class:`TensorMeta`, a (nested) tuple of
them, or ``None``. Where torch would raise (at construction or in ``forward``) for reasons
the shapes, dtypes and arguments decide, the rule raises :class:`ShapeMismatch`, whose
message is written to follow ``"<LayerType> got input shape(s) [[2, 21]]: "``.

Conventions and assumptions
---------------------------
* Training mode, as a freshly constructed module (and the factory's meta dry run) is:
  BatchNorm refuses one value per channel, InstanceNorm one spatial element, dropout with
  0 < p < 1 needs floating input. Set ``TRAINING = False`` for eval-mode semantics.
* Parameters are float32 (the factory never passes ``dtype=``; a ``dtype`` in ``args`` is
  honoured). Layers whose kernels refuse mixed dtypes (Linear, Bilinear, Conv*, RNN*,
  MultiheadAttention, Transformer*, PReLU) need the input in the parameter dtype; norm
  layers with parameters or running stats also take float16/bfloat16 input (torch's mixed
  kernels). Embedding/EmbeddingBag return the parameter dtype.
* Input dtypes are accepted as torch's CPU kernels accept them (encoded per layer from
  probing torch 2.13: e.g. ReLU keeps int64, Tanh turns it into float32, MaxPool2d takes
  integers but MaxPool1d without indices does not, AvgPool takes int64 only, padding and
  shuffles take anything). One deliberate exception: where a CPU kernel lacks float16/
  bfloat16 (AvgPool3d, LPPool3d, LocalResponseNorm on 4-D+, RReLU float16) the rules
  accept them, since the layer runs on GPU.
* Where torch returns nonsense instead of raising, the rules refuse: a ConvTranspose output
  size of 0 (CPU oneDNN returns an empty tensor, the slow kernel raises), EmbeddingBag with
  zero bags (segfaults with mode='max'), an RNNCell/GRUCell/LSTMCell unbatched input with a
  2-D hidden state (broadcasts or segfaults), circular padding that crops one side and wraps
  more than what is left (an overlapping copy).
* Missing size arguments that the factory infers from the input (``in_features``,
  ``in_channels``, ``num_features``, ``input_size``, ``in1_features``/``in2_features``)
  are read from the input. Any other missing required argument raises ShapeMismatch.
* Sizes are assumed positive (the factory's input shapes are); zero-sized dimensions are
  propagated but torch's special cases for them are not all modelled.
* ``Unsupported`` is raised where a rule cannot decide from shapes alone (attention masks
  passed as inputs, ``custom_encoder``, named-tensor Unflatten, ...): run the layer on meta.
* Value-dependent errors (an embedding index out of range, invalid unpool indices) can't be
  seen from shapes and are not checked.

Beyond the brief's list there are rules for LPPool3d, FractionalMaxPool2d/3d, MaxUnpool1d/2d/3d,
CrossMapLRN2d, RNNCell/GRUCell/LSTMCell and RReLU.

MultiheadAttention reads two *forward* keyword arguments from ``args``: ``need_weights``
(default True) and ``average_attn_weights`` (default True); strip them before constructing.

torch.nn classes deliberately left without a rule (fall back to a meta-device run):
  - all loss modules: BCELoss, BCEWithLogitsLoss, CTCLoss, CosineEmbeddingLoss,
    CrossEntropyLoss, GaussianNLLLoss, HingeEmbeddingLoss, HuberLoss, KLDivLoss, L1Loss,
    LinearCrossEntropyLoss, MSELoss, MarginRankingLoss, MultiLabelMarginLoss,
    MultiLabelSoftMarginLoss, MultiMarginLoss, NLLLoss, NLLLoss2d, PoissonNLLLoss,
    SmoothL1Loss, SoftMarginLoss, TripletMarginLoss, TripletMarginWithDistanceLoss;
    and AdaptiveLogSoftmaxWithLoss
  - containers and bases: Module, Container, Sequential, ModuleList, ModuleDict,
    ParameterList, ParameterDict, RNNBase, RNNCellBase, DataParallel
  - Lazy* modules (the factory excludes them) and SyncBatchNorm (needs a process group/GPU)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ..symbolic import ShapeMismatch, TensorMeta
from ..symbolic import ShapeRule as Rule
from ..symbolic import dtype_name as _dtype_name

__all__ = ["LAYER_RULES", "rule"]


LAYER_RULES: dict[str, Rule] = {}

TRAINING = True  # the mode rules assume; a freshly built module is in training mode

# --------------------------------------------------------------------------- dtypes

_FLOATS = ("float16", "bfloat16", "float32", "float64")
_INTS = ("uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64")
_COMPLEX = ("complex32", "complex64", "complex128")


def _is_float(dtype: str) -> bool:
    return dtype in _FLOATS


def _is_int(dtype: str) -> bool:
    return dtype in _INTS


def _kind(dtype: str) -> int:
    """bool < integer < floating < complex, as torch's type promotion orders categories."""
    if dtype == "bool":
        return 0
    if dtype in _INTS:
        return 1
    if dtype in _FLOATS:
        return 2
    return 3


def _promote(a: str, b: str) -> str:
    """torch.result_type for two tensors of the same rank class (close enough for the rules here)."""
    if a == b:
        return a
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        hi, lo = (a, b) if ka > kb else (b, a)
        if _kind(hi) == 3 and lo == "float64":
            return "complex128"
        return hi
    if ka == 2:
        if {a, b} == {"float16", "bfloat16"}:
            return "float32"
        return max(a, b, key=_FLOATS.index)
    if ka == 1:
        bits = {"uint8": 8, "int8": 8, "int16": 16, "int32": 32, "int64": 64}
        if {a, b} == {"uint8", "int8"}:
            return "int16"
        return max(a, b, key=lambda d: bits.get(d, 64))
    return max(a, b, key=_COMPLEX.index)


def _result_type(a: TensorMeta, b: TensorMeta) -> str:
    """torch.result_type of two tensors: a 0-d tensor only decides when its category is higher."""
    if (a.ndim == 0) != (b.ndim == 0):
        dimmed, zero = (b, a) if a.ndim == 0 else (a, b)
        return zero.dtype if _kind(zero.dtype) > _kind(dimmed.dtype) else dimmed.dtype
    return _promote(a.dtype, b.dtype)


# --------------------------------------------------------------------------- helpers

_REQUIRED = object()


def _fmt(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _plural(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(set(values)) == 1 else _fmt(values)


class _Args:
    """The constructor arguments, with torch's defaults applied on lookup."""

    def __init__(self, layer: str, args: Mapping[str, Any] | None) -> None:
        self.layer = layer
        self.raw = dict(args or {})

    def given(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def get(self, name: str, default: Any = _REQUIRED) -> Any:
        if name in self.raw:
            return self.raw[name]
        if default is _REQUIRED:
            raise ShapeMismatch(f"missing required argument {name}")
        return default

    def int(self, name: str, default: Any = _REQUIRED) -> int:
        value = self.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ShapeMismatch(f"{name} must be an int, got {value!r}")
        return value

    def number(self, name: str, default: Any = _REQUIRED) -> float:
        value = self.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ShapeMismatch(f"{name} must be a number, got {value!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        return bool(self.get(name, default))

    def infer(self, name: str, observed: int) -> int:
        """A size the factory infers from the input when it is left out."""
        return self.int(name) if self.given(name) else observed

    def ints(
        self, name: str, n: int, default: Any = _REQUIRED, *, one_ok: bool = False
    ) -> tuple[int, ...]:
        """An int-or-tuple argument as an n-tuple (one_ok: torch also broadcasts a 1-list)."""
        value = self.get(name, default)
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,) * n
        if isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            if len(value) == n:
                return tuple(value)
            if one_ok and len(value) == 1:
                return (value[0],) * n
        want = f"an int or a list of {n} ints" if n > 1 else "an int or a list of 1 int"
        raise ShapeMismatch(f"{name} must be {want}, got {value!r}")

    @property
    def param_dtype(self) -> str:
        return _dtype_name(self.raw.get("dtype") or "float32")


def rule(*names: str) -> Callable:
    """Register ``fn(layer, args, inputs)`` as the rule of every layer type in ``names``."""

    def register(fn: Callable) -> Callable:
        for name in names:

            def bound(args: dict[str, Any], inputs: tuple[Any, ...], _fn=fn, _name=name) -> Any:
                return _fn(_name, _Args(_name, args), tuple(inputs))

            bound.__name__ = f"{fn.__name__}[{name}]"
            bound.__qualname__ = bound.__name__
            bound.__doc__ = fn.__doc__
            LAYER_RULES[name] = bound
        return fn

    return register


def _nd(layer: str) -> int:
    """Spatial rank from the class name: Conv2d -> 2."""
    for ch in reversed(layer):
        if ch.isdigit():
            return int(ch)
    raise AssertionError(layer)


def _tensor(value: Any, what: str = "input") -> TensorMeta:
    if isinstance(value, TensorMeta):
        return value
    found = "None" if value is None else f"a {type(value).__name__}"
    raise ShapeMismatch(f"expects {what} to be a tensor, found {found}")


def _inputs(inputs: tuple[Any, ...], names: tuple[str, ...], required: int = 1) -> list[Any]:
    """Positional inputs by name; optional ones (past ``required``) may be missing or None."""
    if not required <= len(inputs) <= len(names):
        want = str(required) if required == len(names) else f"{required} to {len(names)}"
        raise ShapeMismatch(f"expects {want} input(s) ({', '.join(names)}), got {len(inputs)}")
    return list(inputs) + [None] * (len(names) - len(inputs))


def _one(inputs: tuple[Any, ...]) -> TensorMeta:
    return _tensor(_inputs(inputs, ("input",))[0])


def _dims(x: TensorMeta, allowed: tuple[int, ...], what: str = "input") -> bool:
    """Check the rank; returns True when batched (the larger of two allowed ranks)."""
    if x.ndim not in allowed:
        if len(allowed) == 2 and allowed[1] == allowed[0] + 1:
            want = f"a {allowed[0]}-D (unbatched) or {allowed[1]}-D (batched)"
        else:
            want = "a " + " or ".join(f"{d}-D" for d in allowed)
        raise ShapeMismatch(f"expects {want} {what}, found {x.ndim}-D")
    return x.ndim == max(allowed)


def _min_dims(x: TensorMeta, n: int, what: str = "input") -> None:
    if x.ndim < n:
        raise ShapeMismatch(f"expects {what} with at least {n} dims, found {x.ndim}-D")


def _wrap(dim: Any, ndim: int, name: str = "dim") -> int:
    """torch's dim wrapping (a 0-d tensor accepts dim 0 and -1)."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise ShapeMismatch(f"{name} must be an int, got {dim!r}")
    span = max(ndim, 1)
    if not -span <= dim < span:
        raise ShapeMismatch(
            f"{name} = {dim} is out of range for a {ndim}-D input (expected {-span}..{span - 1})"
        )
    return dim % span


def _size_check(x: TensorMeta, dim: int, name: str, want: int) -> None:
    if x.shape[dim] != want:
        shown = dim - x.ndim if dim == x.ndim - 1 else dim
        raise ShapeMismatch(f"expects input dim {shown} = {name} = {want}, found {x.shape[dim]}")


def _need_float(x: TensorMeta, what: str = "input", *, complex_ok: bool = False) -> None:
    if _is_float(x.dtype) or (complex_ok and x.dtype in _COMPLEX):
        return
    raise ShapeMismatch(f"expects a floating-point {what}, found dtype {x.dtype}")


def _param_dtype(a: _Args, x: TensorMeta, what: str = "input", *, mixed: bool = False) -> None:
    """The input must have the parameters' dtype (mixed: float16/bfloat16 input with float32 params is fine)."""
    _need_float(x, what)
    want = a.param_dtype
    if x.dtype == want or (mixed and want == "float32" and x.dtype in ("float16", "bfloat16")):
        return
    raise ShapeMismatch(
        f"expects {what} dtype {want} (the dtype of its parameters), found {x.dtype}"
    )


def _accept(
    x: TensorMeta, *, ints: Any = (), bool_ok: bool = False, int_result: str | None = None
) -> str:
    """Floating input passes; so do the integer dtypes in ``ints`` ("all" for every one) and bool
    with ``bool_ok`` (as torch's CPU kernels take them). Returns the output dtype."""
    if _is_float(x.dtype):
        return x.dtype
    if (x.dtype == "bool" and bool_ok) or (_is_int(x.dtype) and (ints == "all" or x.dtype in ints)):
        return int_result or x.dtype
    raise ShapeMismatch(f"expects a floating-point input, found dtype {x.dtype}")


def _like(
    x: TensorMeta, shape: tuple[int, ...] | None = None, dtype: str | None = None
) -> TensorMeta:
    return TensorMeta(x.shape if shape is None else tuple(shape), dtype or x.dtype)


def _prod(values) -> int:
    return math.prod(values)
