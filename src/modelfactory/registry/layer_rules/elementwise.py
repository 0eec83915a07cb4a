"""Activations, dropout, flatten/unflatten and embeddings: their symbolic shape rules (see :mod:`modelfactory.registry.symbolic`)."""

from __future__ import annotations

from ..symbolic import ShapeMismatch, TensorMeta, Unsupported
from . import common  # TRAINING is read at call time (tests switch it)
from .common import (
    _Args,
    _dims,
    _fmt,
    _inputs,
    _is_float,
    _is_int,
    _like,
    _need_float,
    _one,
    _prod,
    _tensor,
    _wrap,
    rule,
)

# =========================================================================== elementwise activations

# Integer / bool / complex inputs as torch's CPU kernels take them: the output dtype
# ("same" keeps the input's, "float32" is the default float dtype); a missing key is refused.
_ELEMENTWISE_DTYPES: dict[str, dict[str, str]] = {
    "ReLU": {"int": "same"},
    "ReLU6": {"int": "same"},
    "Hardtanh": {"int": "same"},
    "Threshold": {"int": "same"},
    "Tanh": {"int": "float32", "bool": "float32", "complex": "same"},
    "Sigmoid": {"int": "float32", "bool": "float32", "complex": "same"},
    "Softsign": {"int": "float32", "complex": "same"},
    "Tanhshrink": {"int": "float32", "complex": "same"},
    "SiLU": {"complex": "same"},
}


def _elementwise_dtype(layer: str, x: TensorMeta) -> str:
    if _is_float(x.dtype):
        return x.dtype
    kind = "bool" if x.dtype == "bool" else "int" if _is_int(x.dtype) else "complex"
    out = _ELEMENTWISE_DTYPES.get(layer, {}).get(kind)
    if out is None:
        raise ShapeMismatch(f"expects a floating-point input, found dtype {x.dtype}")
    return x.dtype if out == "same" else out


@rule(
    "ReLU",
    "ReLU6",
    "GELU",
    "SiLU",
    "Tanh",
    "Sigmoid",
    "LeakyReLU",
    "ELU",
    "SELU",
    "CELU",
    "Softplus",
    "Softsign",
    "Mish",
    "Hardtanh",
    "Hardswish",
    "Hardsigmoid",
    "Threshold",
    "Tanhshrink",
    "Softshrink",
    "Hardshrink",
    "LogSigmoid",
    "RReLU",
)
def elementwise(layer, a, inputs):
    """Any shape -> the same shape."""
    x = _one(inputs)
    if layer == "Threshold":
        a.number("threshold")
        a.number("value")
    if layer == "Hardtanh":
        lo, hi = a.number("min_val", -1.0), a.number("max_val", 1.0)
        if not hi > lo:
            raise ShapeMismatch(f"max_val ({hi}) must be greater than min_val ({lo})")
        if x.dtype == "uint8" and lo < 0:
            raise ShapeMismatch("cannot apply Hardtanh with a negative min_val to a uint8 input")
    if layer == "GELU" and a.get("approximate", "none") not in ("none", "tanh"):
        raise ShapeMismatch(f"approximate must be 'none' or 'tanh', got {a.get('approximate')!r}")
    if layer == "CELU" and a.number("alpha", 1.0) == 0:
        raise ShapeMismatch("alpha must not be 0 for CELU")
    if layer == "Softshrink" and a.number("lambd", 0.5) < 0:
        raise ShapeMismatch(f"lambd must not be negative, got {a.get('lambd')}")
    if layer == "RReLU" and a.number("lower", 1 / 8) > a.number("upper", 1 / 3):
        raise ShapeMismatch(
            f"lower ({a.get('lower', 1 / 8)}) must not exceed upper ({a.get('upper', 1 / 3)})"
        )
    return _like(x, dtype=_elementwise_dtype(layer, x))


@rule("PReLU")
def prelu(layer, a, inputs):
    """Shape-preserving; num_parameters must be 1 or the size of dim 1 (1 for a 1-D input)."""
    x = _one(inputs)
    count = a.int("num_parameters", 1)
    if x.dtype != a.param_dtype:
        raise ShapeMismatch(
            f"expects input dtype {a.param_dtype} (the dtype of its weight), found {x.dtype}"
        )
    if count != 1:
        if x.ndim == 0:
            raise ShapeMismatch(
                f"num_parameters = {count} needs an input with a channel dim, found 0-D"
            )
        channels = x.shape[1] if x.ndim > 1 else 1
        if channels != count:
            raise ShapeMismatch(
                f"expects input dim 1 (channels) = num_parameters = {count}, found {channels}"
            )
    return x


@rule("GLU")
def glu(layer, a, inputs):
    """Halves dim (default -1), which must be even."""
    x = _one(inputs)
    if x.ndim == 0:
        raise ShapeMismatch("expects an input with at least 1 dim to halve, found 0-D")
    dim = _wrap(a.get("dim", -1), x.ndim)
    if x.shape[dim] % 2:
        raise ShapeMismatch(
            f"expects an even size at dim {a.get('dim', -1)} to halve, found {x.shape[dim]}"
        )
    _need_float(x)
    shape = list(x.shape)
    shape[dim] //= 2
    return _like(x, tuple(shape))


@rule("Softmax", "LogSoftmax", "Softmin")
def softmax(layer, a, inputs):
    """Shape-preserving along dim (None: torch's legacy choice, 0 for 0/1/3-D inputs, else 1)."""
    x = _one(inputs)
    dim = a.get("dim", None)
    if dim is None:
        dim = 0 if x.ndim in (0, 1, 3) else 1
    _wrap(dim, x.ndim)
    _need_float(x)
    return x


@rule("Softmax2d")
def softmax2d(layer, a, inputs):
    """Shape-preserving; (N, C, H, W) or (C, H, W)."""
    x = _one(inputs)
    _dims(x, (3, 4))
    _need_float(x)
    return x


# =========================================================================== dropout


@rule("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout")
def dropout(layer, a, inputs):
    """Shape-preserving; Dropout1d takes 2-D/3-D; feature dropouts need channels to zero."""
    x = _one(inputs)
    p = a.number("p", 0.5)
    if not 0 <= p <= 1:
        raise ShapeMismatch(f"p must be a probability in [0, 1], got {p}")
    if layer == "Dropout1d":
        _dims(x, (2, 3))
    if not common.TRAINING or p in (0, 1):
        return x  # torch returns (a masked copy of) the input without looking further
    _need_float(x)
    need = {"Dropout2d": 2, "Dropout3d": 1, "FeatureAlphaDropout": 2}.get(layer, 0)
    if x.ndim < need:
        raise ShapeMismatch(
            f"expects an input with at least {need} dims (feature dropout), found {x.ndim}-D"
        )
    return x


# =========================================================================== reshaping


@rule("Flatten")
def flatten(layer, a, inputs):
    """Merges dims start_dim..end_dim (defaults 1..-1)."""
    x = _one(inputs)
    start = _wrap(a.get("start_dim", 1), x.ndim, "start_dim")
    end = _wrap(a.get("end_dim", -1), x.ndim, "end_dim")
    if x.ndim == 0:
        return _like(x, (1,))
    if start > end:
        raise ShapeMismatch(
            f"start_dim ({a.get('start_dim', 1)}) must not come after end_dim ({a.get('end_dim', -1)})"
        )
    return _like(x, x.shape[:start] + (_prod(x.shape[start : end + 1]),) + x.shape[end + 1 :])


@rule("Unflatten")
def unflatten(layer, a, inputs):
    """Splits dim into unflattened_size (one entry may be -1)."""
    x = _one(inputs)
    dim = a.get("dim")
    if isinstance(dim, str):
        raise Unsupported("named-tensor Unflatten")
    sizes = a.get("unflattened_size")
    if not isinstance(sizes, (list, tuple)) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in sizes
    ):
        raise ShapeMismatch(f"unflattened_size must be a list of ints, got {sizes!r}")
    if x.ndim == 0:
        raise ShapeMismatch("expects an input with at least 1 dim, found 0-D")
    d = _wrap(dim, x.ndim)
    sizes = tuple(sizes)
    if not sizes:
        raise ShapeMismatch("unflattened_size must not be empty")
    size = x.shape[d]
    inferred = [i for i, s in enumerate(sizes) if s == -1]
    if len(inferred) > 1 or any(s < -1 for s in sizes):
        raise ShapeMismatch(
            f"unflattened_size may hold one -1 and otherwise non-negative sizes, got {_fmt(sizes)}"
        )
    if inferred:
        known = _prod(s for s in sizes if s != -1)
        if known == 0 or size % known:
            raise ShapeMismatch(
                f"unflattened_size {_fmt(sizes)} cannot split input dim {dim} of size {size}"
            )
        sizes = tuple(size // known if s == -1 else s for s in sizes)
    elif _prod(sizes) != size:
        raise ShapeMismatch(
            f"unflattened_size {_fmt(sizes)} must multiply to input dim {dim} = {size}, got {_prod(sizes)}"
        )
    return _like(x, x.shape[:d] + sizes + x.shape[d + 1 :])


# =========================================================================== embeddings


def _padding_idx(a: _Args, num: int) -> None:
    idx = a.get("padding_idx", None)
    if idx is not None and not -num <= idx < num:
        raise ShapeMismatch(f"padding_idx = {idx} must be within num_embeddings = {num}")


@rule("Embedding")
def embedding(layer, a, inputs):
    """Integer (*) -> (*, embedding_dim) in the weight dtype."""
    x = _one(inputs)
    num = a.int("num_embeddings")
    dim = a.int("embedding_dim")
    _padding_idx(a, num)
    if x.dtype not in ("int32", "int64"):
        raise ShapeMismatch(f"expects int64 or int32 indices, found dtype {x.dtype}")
    return TensorMeta(x.shape + (dim,), a.param_dtype)


@rule("EmbeddingBag")
def embedding_bag(layer, a, inputs):
    """(B, N) -> (B, embedding_dim); 1-D input with offsets (K) -> (K, dim), K-1 with include_last_offset."""
    x, offsets, weights = _inputs(inputs, ("input", "offsets", "per_sample_weights"), 1)
    x = _tensor(x)
    num = a.int("num_embeddings")
    dim = a.int("embedding_dim")
    _padding_idx(a, num)
    mode = a.get("mode", "mean")
    if mode not in ("sum", "mean", "max"):
        raise ShapeMismatch(f"mode must be one of sum, mean, max, got {mode!r}")
    if weights is not None:
        weights = _tensor(weights, "per_sample_weights")
        if weights.shape != x.shape:
            raise ShapeMismatch(
                f"expects per_sample_weights of the input's shape {_fmt(x.shape)}, found {_fmt(weights.shape)}"
            )
        if mode != "sum":
            raise ShapeMismatch(f"per_sample_weights needs mode='sum', got mode={mode!r}")
    if x.ndim == 2:
        if offsets is not None:
            raise ShapeMismatch("expects no offsets with a 2-D input (each row is a bag)")
        bags = x.shape[0]
    elif x.ndim == 1:
        if offsets is None:
            raise ShapeMismatch("expects offsets (a 1-D tensor) with a 1-D input")
        offsets = _tensor(offsets, "offsets")
        if offsets.ndim != 1:
            raise ShapeMismatch(f"expects 1-D offsets, found {offsets.ndim}-D")
        if offsets.dtype not in ("int32", "int64"):
            raise ShapeMismatch(f"expects int64 or int32 offsets, found dtype {offsets.dtype}")
        bags = offsets.shape[0] - (1 if a.flag("include_last_offset", False) else 0)
        if bags < 1:
            raise ShapeMismatch(
                f"expects at least {2 if a.flag('include_last_offset', False) else 1} offsets, found {offsets.shape[0]}"
            )
    else:
        raise ShapeMismatch(f"expects a 1-D (with offsets) or 2-D input, found {x.ndim}-D")
    if x.dtype not in ("int32", "int64"):
        raise ShapeMismatch(f"expects int64 or int32 indices, found dtype {x.dtype}")
    return TensorMeta((bags, dim), a.param_dtype)
