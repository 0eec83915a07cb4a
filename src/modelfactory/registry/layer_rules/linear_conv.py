"""Identity, linear and convolution layers: their symbolic shape rules (see :mod:`modelfactory.registry.symbolic`)."""

from __future__ import annotations

from ..symbolic import ShapeMismatch, TensorMeta
from .common import (
    _Args,
    _dims,
    _fmt,
    _inputs,
    _like,
    _nd,
    _one,
    _param_dtype,
    _plural,
    _size_check,
    _tensor,
    rule,
)

# =========================================================================== identity / linear


@rule("Identity")
def identity(layer, a, inputs):
    """Returns its single input unchanged (any value: a tensor, a tuple, None)."""
    return _inputs(inputs, ("input",))[0]


@rule("Linear")
def linear(layer, a, inputs):
    """(*, in_features) -> (*, out_features)."""
    x = _one(inputs)
    out_features = a.int("out_features")
    if x.ndim < 1:
        raise ShapeMismatch("expects at least a 1-D input (*, in_features), found 0-D")
    in_features = a.infer("in_features", x.shape[-1])
    _size_check(x, x.ndim - 1, "in_features", in_features)
    _param_dtype(a, x)
    return _like(x, x.shape[:-1] + (out_features,))


@rule("Bilinear")
def bilinear(layer, a, inputs):
    """(*, in1_features), (*, in2_features) -> (*, out_features)."""
    x1, x2 = (
        _tensor(v, f"input{i + 1}") for i, v in enumerate(_inputs(inputs, ("input1", "input2"), 2))
    )
    out_features = a.int("out_features")
    if x1.ndim < 1 or x2.ndim < 1:
        raise ShapeMismatch(
            "expects inputs with at least 1 dim (*, in1_features) and (*, in2_features)"
        )
    if x1.ndim != x2.ndim:
        raise ShapeMismatch(
            f"expects input1 and input2 of the same rank, found {x1.ndim}-D and {x2.ndim}-D"
        )
    if x1.shape[:-1] != x2.shape[:-1]:
        raise ShapeMismatch(
            f"expects input1 and input2 to agree on the batch dims, found {_fmt(x1.shape[:-1])} and {_fmt(x2.shape[:-1])}"
        )
    in1 = a.infer("in1_features", x1.shape[-1])
    in2 = a.infer("in2_features", x2.shape[-1])
    if x1.shape[-1] != in1:
        raise ShapeMismatch(f"expects input1 dim -1 = in1_features = {in1}, found {x1.shape[-1]}")
    if x2.shape[-1] != in2:
        raise ShapeMismatch(f"expects input2 dim -1 = in2_features = {in2}, found {x2.shape[-1]}")
    _param_dtype(a, x1, "input1")
    _param_dtype(a, x2, "input2")
    return _like(x1, x1.shape[:-1] + (out_features,))


# =========================================================================== convolutions


def _conv_head(layer: str, a: _Args, x: TensorMeta, n: int) -> tuple[int, int, int]:
    """Rank, channel dim and the constructor's channel/groups checks shared by Conv and ConvTranspose."""
    batched = _dims(x, (n + 1, n + 2))
    c = 1 if batched else 0
    in_channels = a.infer("in_channels", x.shape[c])
    out_channels = a.int("out_channels")
    groups = a.int("groups", 1)
    if groups <= 0:
        raise ShapeMismatch(f"groups must be a positive integer, got {groups}")
    if in_channels % groups:
        raise ShapeMismatch(f"in_channels = {in_channels} must be divisible by groups = {groups}")
    if out_channels % groups:
        raise ShapeMismatch(f"out_channels = {out_channels} must be divisible by groups = {groups}")
    return c, in_channels, out_channels


def _positive_all(name: str, values: tuple[int, ...]) -> None:
    if any(v <= 0 for v in values):
        raise ShapeMismatch(f"{name} must be positive, got {_plural(values)}")


def _non_negative_all(name: str, values: tuple[int, ...]) -> None:
    if any(v < 0 for v in values):
        raise ShapeMismatch(f"{name} must not be negative, got {_plural(values)}")


@rule("Conv1d", "Conv2d", "Conv3d")
def conv(layer, a, inputs):
    """(N, C_in, *S) or (C_in, *S) -> (N, C_out, *S_out); padding may be 'same'/'valid', any padding_mode."""
    n = _nd(layer)
    x = _one(inputs)
    c, in_channels, out_channels = _conv_head(layer, a, x, n)
    kernel = a.ints("kernel_size", n)
    stride = a.ints("stride", n, 1, one_ok=True)
    dilation = a.ints("dilation", n, 1, one_ok=True)
    mode = a.get("padding_mode", "zeros")
    if mode not in ("zeros", "reflect", "replicate", "circular"):
        raise ShapeMismatch(
            f"padding_mode must be one of zeros, reflect, replicate, circular, got {mode!r}"
        )
    padding = a.get("padding", 0)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ShapeMismatch(
                f"padding must be 'same', 'valid', an int or a list of {n} ints, got {padding!r}"
            )
        if padding == "same" and any(s != 1 for s in stride):
            raise ShapeMismatch(f"padding='same' needs stride = 1, got stride = {_plural(stride)}")
        if padding == "same":
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            pads = [(t // 2, t - t // 2) for t in total]
        else:
            pads = [(0, 0)] * n
    else:
        pad = a.ints("padding", n, 0, one_ok=(mode == "zeros"))
        _non_negative_all("padding", pad)
        pads = [(p, p) for p in pad]
    _positive_all("kernel_size", kernel)
    _positive_all("stride", stride)
    _positive_all("dilation", dilation)
    _param_dtype(a, x)
    _size_check(x, c, "in_channels", in_channels)
    spatial = x.shape[c + 1 :]
    out = []
    for i, (size, k, s, d, (left, right)) in enumerate(
        zip(spatial, kernel, stride, dilation, pads)
    ):
        dim = c + 1 + i
        if mode == "reflect" and (left >= size or right >= size):
            raise ShapeMismatch(
                f"padding_mode='reflect' needs padding < input size, but input dim {dim} is {size} "
                f"and its padding is ({left}, {right})"
            )
        if mode == "circular" and (left > size or right > size):
            raise ShapeMismatch(
                f"padding_mode='circular' needs padding <= input size, but input dim {dim} is {size} "
                f"and its padding is ({left}, {right})"
            )
        padded = size + left + right
        span = d * (k - 1) + 1
        if padded < span:
            raise ShapeMismatch(
                f"kernel_size = {k} (dilation {d}, so {span} positions) is larger than input dim {dim} "
                f"after padding: {size} + {left} + {right} = {padded}"
            )
        out.append((padded - span) // s + 1)
    return _like(x, x.shape[:c] + (out_channels,) + tuple(out))


@rule("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
def conv_transpose(layer, a, inputs):
    """(N, C_in, *S) -> (N, C_out, (S-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1)."""
    n = _nd(layer)
    x = _one(inputs)
    c, in_channels, out_channels = _conv_head(layer, a, x, n)
    if a.get("padding_mode", "zeros") != "zeros":
        raise ShapeMismatch(
            f"{layer} supports only padding_mode='zeros', got {a.get('padding_mode')!r}"
        )
    if isinstance(a.get("padding", 0), str):
        raise ShapeMismatch(
            f"{layer} takes an int or a list of {n} ints as padding, got {a.get('padding')!r}"
        )
    kernel = a.ints("kernel_size", n)
    stride = a.ints("stride", n, 1, one_ok=True)
    padding = a.ints("padding", n, 0, one_ok=True)
    output_padding = a.ints("output_padding", n, 0, one_ok=True)
    dilation = a.ints("dilation", n, 1, one_ok=True)
    _positive_all("kernel_size", kernel)
    _positive_all("stride", stride)
    _positive_all("dilation", dilation)
    _non_negative_all("padding", padding)
    _non_negative_all("output_padding", output_padding)
    _param_dtype(a, x)
    _size_check(x, c, "in_channels", in_channels)
    for op, s, d in zip(output_padding, stride, dilation):
        if not (op < s or op < d):
            raise ShapeMismatch(
                f"output_padding must be smaller than stride or dilation, got output_padding = "
                f"{_plural(output_padding)}, stride = {_plural(stride)}, dilation = {_plural(dilation)}"
            )
    out = tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        for size, k, s, p, op, d in zip(
            x.shape[c + 1 :], kernel, stride, padding, output_padding, dilation
        )
    )
    if any(o < 1 for o in out):
        raise ShapeMismatch(
            f"the output would be {_fmt(out)} for input size {_fmt(x.shape[c + 1 :])} (kernel_size = "
            f"{_plural(kernel)}, stride = {_plural(stride)}, padding = {_plural(padding)}): too small"
        )
    return _like(x, x.shape[:c] + (out_channels,) + out)
