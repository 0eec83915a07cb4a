"""Pooling and normalisation layers: their symbolic shape rules (see :mod:`modelfactory.registry.symbolic`)."""

from __future__ import annotations

from ..symbolic import ShapeMismatch, TensorMeta, Unsupported
from . import common  # TRAINING is read at call time (tests switch it)
from .common import (
    _accept,
    _Args,
    _dims,
    _fmt,
    _inputs,
    _like,
    _min_dims,
    _nd,
    _need_float,
    _one,
    _param_dtype,
    _plural,
    _prod,
    _size_check,
    _tensor,
    rule,
)
from .linear_conv import _non_negative_all, _positive_all

# =========================================================================== pooling


def _pool_output(size: int, k: int, pad: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """ATen's pooling_output_shape, with the ceil_mode rule that the last window starts inside the input."""
    out = (size + 2 * pad - dilation * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool_shape(
    x: TensorMeta,
    n: int,
    kernel,
    stride,
    padding,
    dilation,
    ceil_mode: bool,
    *,
    input_at_least_kernel: bool = False,
) -> tuple[int, ...]:
    _positive_all("kernel_size", kernel)
    if any(s == 0 for s in stride):
        raise ShapeMismatch(f"stride must not be zero, got {_plural(stride)}")
    if (
        input_at_least_kernel
    ):  # avg_pool3d (so AvgPool3d and LPPool3d) checks the unpadded input too
        if any(size < k for size, k in zip(x.shape[-n:], kernel)):
            raise ShapeMismatch(
                f"expects spatial size {_fmt(x.shape[-n:])} to be at least kernel_size = {_plural(kernel)} in every dim"
            )
    _positive_all("stride", stride)
    _positive_all("dilation", dilation)
    _non_negative_all("padding", padding)
    for k, p in zip(kernel, padding):
        if p > k // 2:
            raise ShapeMismatch(
                f"padding must be at most half of kernel_size, got padding = {_plural(padding)}, kernel_size = {_plural(kernel)}"
            )
    spatial = x.shape[-n:]
    out = tuple(
        _pool_output(size, k, p, s, d, ceil_mode)
        for size, k, p, s, d in zip(spatial, kernel, padding, stride, dilation)
    )
    if any(o < 1 for o in out):
        raise ShapeMismatch(
            f"the output would be {_fmt(out)} for spatial size {_fmt(spatial)} (kernel_size = {_plural(kernel)}, "
            f"stride = {_plural(stride)}, padding = {_plural(padding)}"
            + (f", dilation = {_plural(dilation)}" if any(d != 1 for d in dilation) else "")
            + "): too small"
        )
    return x.shape[:-n] + out


@rule("MaxPool1d", "MaxPool2d", "MaxPool3d")
def max_pool(layer, a, inputs):
    """(N, C, *S) or (C, *S) -> pooled; return_indices -> (output, int64 indices)."""
    n = _nd(layer)
    x = _one(inputs)
    _dims(x, (n + 1, n + 2))
    kernel = a.ints("kernel_size", n, one_ok=True)
    stride = kernel if a.get("stride", None) is None else a.ints("stride", n, one_ok=True)
    padding = a.ints("padding", n, 0, one_ok=True)
    dilation = a.ints("dilation", n, 1, one_ok=True)
    indices = a.flag("return_indices", False)
    _accept(
        x, ints="all" if n > 1 or indices else ()
    )  # CPU max_pool1d without indices is float-only
    shape = _pool_shape(x, n, kernel, stride, padding, dilation, a.flag("ceil_mode", False))
    out = _like(x, shape)
    return (out, TensorMeta(shape, "int64")) if indices else out


@rule("AvgPool1d", "AvgPool2d", "AvgPool3d")
def avg_pool(layer, a, inputs):
    """(N, C, *S) or (C, *S) -> pooled (count_include_pad does not change shapes)."""
    n = _nd(layer)
    x = _one(inputs)
    _dims(x, (n + 1, n + 2))
    kernel = a.ints("kernel_size", n, one_ok=True)
    stride = kernel if a.get("stride", None) is None else a.ints("stride", n, one_ok=True)
    padding = a.ints("padding", n, 0, one_ok=True)
    if n > 1 and a.get("divisor_override", None) == 0:
        raise ShapeMismatch("divisor_override must not be zero")
    _accept(x, ints=("int64",))
    shape = _pool_shape(
        x,
        n,
        kernel,
        stride,
        padding,
        (1,) * n,
        a.flag("ceil_mode", False),
        input_at_least_kernel=n == 3,
    )
    return _like(x, shape)


@rule("LPPool1d", "LPPool2d", "LPPool3d")
def lp_pool(layer, a, inputs):
    """An average pool of x**p without padding (ceil_mode as AvgPool)."""
    n = _nd(layer)
    x = _one(inputs)
    a.number("norm_type")
    _dims(x, (n + 1, n + 2))
    if n == 1 and not isinstance(a.get("kernel_size"), int):
        raise ShapeMismatch(
            f"kernel_size must be an int for LPPool1d, got {a.get('kernel_size')!r}"
        )
    kernel = a.ints("kernel_size", n)
    stride = kernel if a.get("stride", None) is None else a.ints("stride", n, one_ok=True)
    dtype = _accept(x, ints="all", bool_ok=True, int_result="float32")
    shape = _pool_shape(
        x,
        n,
        kernel,
        stride,
        (0,) * n,
        (1,) * n,
        a.flag("ceil_mode", False),
        input_at_least_kernel=n == 3,
    )
    return _like(x, shape, dtype)


def _adaptive_sizes(a: _Args, x: TensorMeta, n: int) -> tuple[int, ...]:
    value = a.get("output_size")
    if n == 1:
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ShapeMismatch(f"output_size must be an int, got {value!r}")
        sizes = (value,)
    elif isinstance(value, int) and not isinstance(value, bool):
        sizes = (value,) * n
    elif isinstance(value, (list, tuple)):
        if x.ndim <= len(value):
            raise ShapeMismatch(
                f"expects an input with at least {len(value) + 1} dims, found {x.ndim}-D"
            )
        if len(value) != n:
            raise ShapeMismatch(
                f"output_size must be an int or a list of {n} (int or None), got {list(value)}"
            )
        sizes = tuple(x.shape[-n + i] if v is None else v for i, v in enumerate(value))
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in sizes):
            raise ShapeMismatch(f"output_size must hold ints or None, got {list(value)}")
    else:
        raise ShapeMismatch(
            f"output_size must be an int or a list of {n} (int or None), got {value!r}"
        )
    if any(v < 0 for v in sizes):
        raise ShapeMismatch(f"output_size must not be negative, got {_fmt(sizes)}")
    return sizes


@rule(
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
)
def adaptive_pool(layer, a, inputs):
    """(N, C, *S) or (C, *S) -> (..., *output_size); None in output_size keeps that input size."""
    n = _nd(layer)
    x = _one(inputs)
    sizes = _adaptive_sizes(a, x, n)
    if "Avg" in layer and n > 1 and all(s == 1 for s in sizes):
        # ATen computes this as a mean over the last n dims, for any input with at least n dims
        _min_dims(x, n)
        _need_float(x, complex_ok=True)
        return _like(x, x.shape[:-n] + sizes)
    _dims(x, (n + 1, n + 2))
    if any(s == 0 for s in x.shape[-n - 1 :]):
        raise ShapeMismatch(f"expects non-zero sizes in the non-batch dims, found {_fmt(x.shape)}")
    if 0 not in sizes or layer not in ("AdaptiveAvgPool1d", "AdaptiveAvgPool2d"):
        _need_float(x)  # (those two return an empty output before looking at the dtype)
    out = _like(x, x.shape[:-n] + sizes)
    if "Max" in layer and a.flag("return_indices", False):
        return out, TensorMeta(out.shape, "int64")
    return out


@rule("FractionalMaxPool2d", "FractionalMaxPool3d")
def fractional_max_pool(layer, a, inputs):
    """(N, C, *S) or (C, *S) -> (..., *output_size), output_size given or int(S * output_ratio)."""
    n = _nd(layer)
    x = _one(inputs)
    kernel = a.ints("kernel_size", n)
    has_size, has_ratio = a.given("output_size"), a.given("output_ratio")
    if has_size == has_ratio:
        raise ShapeMismatch("needs exactly one of output_size and output_ratio")
    if has_ratio:
        ratio = a.get("output_ratio")
        ratio = tuple(ratio) if isinstance(ratio, (list, tuple)) else (ratio,) * n
        if len(ratio) != n or not all(0 < r < 1 for r in ratio):
            raise ShapeMismatch(
                f"output_ratio must be {n} number(s) in (0, 1), got {a.get('output_ratio')!r}"
            )
    _dims(x, (n + 1, n + 2))
    _need_float(x)
    spatial = x.shape[-n:]
    if has_size:
        sizes = a.ints("output_size", n)
    else:
        sizes = tuple(int(s * r) for s, r in zip(spatial, ratio))
    strict = n == 3  # ATen checks output + kernel - 1 <= input in 2-D, < input in 3-D
    for i, (o, k, size) in enumerate(zip(sizes, kernel, spatial)):
        if o + k - 1 > size or (strict and o + k - 1 == size):
            raise ShapeMismatch(
                f"kernel_size = {k} is too large for input size {size} and output size {o} "
                f"at input dim {x.ndim - n + i} (needs output + kernel_size - 1 {'<' if strict else '<='} input)"
            )
    out = _like(x, x.shape[:-n] + sizes)
    return (out, TensorMeta(out.shape, "int64")) if a.flag("return_indices", False) else out


@rule("MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d")
def max_unpool(layer, a, inputs):
    """(input, indices) -> (..., (S-1)*stride - 2*padding + kernel_size)."""
    n = _nd(layer)
    x, indices, output_size = _inputs(inputs, ("input", "indices", "output_size"), 2)
    x, indices = _tensor(x), _tensor(indices, "indices")
    if output_size is not None:
        raise Unsupported("an explicit output_size input")
    kernel = a.ints("kernel_size", n, one_ok=True)
    stride = kernel if a.get("stride", None) is None else a.ints("stride", n, one_ok=True)
    padding = a.ints("padding", n, 0, one_ok=True)
    _dims(x, (n + 1, n + 2))
    _need_float(x)
    if indices.dtype != "int64":
        raise ShapeMismatch(f"expects int64 indices, found dtype {indices.dtype}")
    if indices.shape != x.shape:
        raise ShapeMismatch(
            f"expects indices of the input's shape {_fmt(x.shape)}, found {_fmt(indices.shape)}"
        )
    out = tuple(
        (size - 1) * s + k - 2 * p for size, k, s, p in zip(x.shape[-n:], kernel, stride, padding)
    )
    if any(o <= 0 for o in out):
        raise ShapeMismatch(f"the output would be {_fmt(out)}: too small")
    return _like(x, x.shape[:-n] + out)


# =========================================================================== normalization


def _channels(a: _Args, name: str, x: TensorMeta, dim: int, check: bool) -> int:
    want = a.infer(name, x.shape[dim])
    if check:
        _size_check(x, dim, name, want)
    return want


@rule("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
def batch_norm(layer, a, inputs):
    """Shape-preserving; channels at dim 1; in training needs more than one value per channel."""
    n = _nd(layer)
    x = _one(inputs)
    _dims(x, (2, 3) if n == 1 else (n + 2,))
    affine = a.flag("affine", True)
    tracked = a.flag("track_running_stats", True)
    _channels(a, "num_features", x, 1, affine or tracked)
    if affine or tracked:
        _param_dtype(a, x, mixed=True)
    else:
        _need_float(x)
    if (common.TRAINING or not tracked) and x.shape[0] * _prod(x.shape[2:]) == 1:
        raise ShapeMismatch(
            f"expects more than 1 value per channel when training, found input {_fmt(x.shape)}"
        )
    return x


@rule("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")
def instance_norm(layer, a, inputs):
    """Shape-preserving; (N, C, *S) or (C, *S); needs more than one spatial element."""
    n = _nd(layer)
    x = _one(inputs)
    batched = _dims(x, (n + 1, n + 2))
    c = 1 if batched else 0
    affine = a.flag("affine", False)
    tracked = a.flag("track_running_stats", False)
    _channels(a, "num_features", x, c, affine or tracked)
    if affine:  # running stats (unlike BatchNorm's) do not pin the dtype
        _param_dtype(a, x, mixed=True)
    else:
        _need_float(x)
    if (common.TRAINING or not tracked) and _prod(x.shape[c + 1 :]) == 1:
        raise ShapeMismatch(f"expects more than 1 spatial element, found input {_fmt(x.shape)}")
    return x


def _normalized_shape(a: _Args, x: TensorMeta) -> tuple[int, ...]:
    value = a.get("normalized_shape")
    shape = (value,) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if x.ndim < len(shape) or x.shape[x.ndim - len(shape) :] != shape:
        raise ShapeMismatch(
            f"expects the last {len(shape)} dim(s) to equal normalized_shape = {_fmt(shape)}, found {_fmt(x.shape)}"
        )
    return shape


@rule("LayerNorm")
def layer_norm(layer, a, inputs):
    """Shape-preserving; input must end in normalized_shape."""
    x = _one(inputs)
    _normalized_shape(a, x)
    if a.flag("elementwise_affine", True):
        _param_dtype(a, x, mixed=True)
    else:
        _need_float(x)
    return x


@rule("RMSNorm")
def rms_norm(layer, a, inputs):
    """Shape-preserving; input must end in normalized_shape (any floating dtype)."""
    x = _one(inputs)
    _normalized_shape(a, x)
    _need_float(x)
    return x


@rule("GroupNorm")
def group_norm(layer, a, inputs):
    """Shape-preserving; (N, C, *); C = num_channels divisible by num_groups."""
    x = _one(inputs)
    groups = a.int("num_groups")
    if x.ndim < 2:
        raise ShapeMismatch(f"expects an input with at least 2 dims (N, C, *), found {x.ndim}-D")
    channels = a.infer("num_channels", x.shape[1])
    if groups <= 0:
        raise ShapeMismatch(f"num_groups must be positive, got {groups}")
    if channels % groups:
        raise ShapeMismatch(f"num_channels = {channels} must be divisible by num_groups = {groups}")
    affine = a.flag("affine", True)
    if affine:
        _size_check(x, 1, "num_channels", channels)
    elif x.shape[1] % groups:
        raise ShapeMismatch(
            f"expects input dim 1 ({x.shape[1]}) divisible by num_groups = {groups}"
        )
    if x.shape[0] * x.shape[1] // groups * _prod(x.shape[2:]) == 1:
        raise ShapeMismatch(f"expects more than 1 value per group, found input {_fmt(x.shape)}")
    if affine:
        _param_dtype(a, x, mixed=True)
    else:
        _need_float(x)
    return x


@rule("LocalResponseNorm")
def local_response_norm(layer, a, inputs):
    """Shape-preserving; at least 3-D."""
    x = _one(inputs)
    a.int("size")
    _min_dims(x, 3)
    return _like(x, dtype=_accept(x, ints=("int64",), int_result="float32"))


@rule("CrossMapLRN2d")
def cross_map_lrn(layer, a, inputs):
    """Shape-preserving; 4-D only."""
    x = _one(inputs)
    a.int("size")
    _dims(x, (4,))
    _need_float(x)
    return x
