"""Upsampling, pixel shuffles, padding, fold/unfold and distances: their symbolic shape rules (see :mod:`modelfactory.registry.symbolic`)."""

from __future__ import annotations

from ..symbolic import ShapeMismatch, TensorMeta
from .common import (
    _COMPLEX,
    Any,
    _accept,
    _Args,
    _dims,
    _fmt,
    _inputs,
    _is_float,
    _kind,
    _like,
    _min_dims,
    _nd,
    _one,
    _plural,
    _promote,
    _result_type,
    _tensor,
    _wrap,
    rule,
)
from .linear_conv import _non_negative_all, _positive_all

# =========================================================================== upsampling / pixel shuffles

_INTERP_RANK = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}


def _interpolate(
    x: TensorMeta, size: Any, scale: Any, mode: str, align_corners: Any, recompute: Any
) -> TensorMeta:
    modes = ("nearest", "linear", "bilinear", "bicubic", "trilinear", "area", "nearest-exact")
    if mode not in modes:
        raise ShapeMismatch(f"mode must be one of {', '.join(modes)}, got {mode!r}")
    if mode in ("nearest", "area", "nearest-exact") and align_corners is not None:
        raise ShapeMismatch(
            f"align_corners can only be set with linear/bilinear/bicubic/trilinear modes, not {mode!r}"
        )
    n = x.ndim - 2
    if scale is not None and not isinstance(scale, (list, tuple)) and not scale:
        scale = None  # torch's Upsample stores a zero scale_factor as None
    if size is not None and scale is not None:
        raise ShapeMismatch("takes only one of size and scale_factor")
    if size is None and scale is None:
        raise ShapeMismatch("needs size or scale_factor")
    if size is not None and recompute:
        raise ShapeMismatch("recompute_scale_factor is not meaningful with an explicit size")
    if x.ndim not in (3, 4, 5):
        raise ShapeMismatch(f"expects a 3-D, 4-D or 5-D input (N, C, *spatial), found {x.ndim}-D")
    if mode in _INTERP_RANK and x.ndim != _INTERP_RANK[mode]:
        raise ShapeMismatch(f"mode={mode!r} needs a {_INTERP_RANK[mode]}-D input, found {x.ndim}-D")
    spatial = x.shape[2:]
    if size is not None:
        sizes = tuple(size) if isinstance(size, (list, tuple)) else (size,) * n
        if len(sizes) != n:
            raise ShapeMismatch(
                f"size {list(sizes)} must have one entry per spatial dim of the input ({n})"
            )
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
            raise ShapeMismatch(f"size must hold ints, got {list(sizes)}")
    else:
        scales = tuple(scale) if isinstance(scale, (list, tuple)) else (scale,) * n
        if len(scales) != n:
            raise ShapeMismatch(
                f"scale_factor {list(scales)} must have one entry per spatial dim of the input ({n})"
            )
        sizes = tuple(int(float(s) * float(f)) for s, f in zip(spatial, scales))
    if mode == "area":
        if any(s < 0 for s in sizes):
            raise ShapeMismatch(f"the output size would be {_fmt(sizes)}: negative")
    elif any(s <= 0 for s in sizes):
        raise ShapeMismatch(
            f"the output size would be {_fmt(sizes)} for input size {_fmt(spatial)}: it must be positive"
        )
    _accept(
        x, ints=("uint8",) if mode in ("nearest", "nearest-exact", "bilinear", "bicubic") else ()
    )
    return _like(x, x.shape[:2] + sizes)


@rule("Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d")
def upsample(layer, a, inputs):
    """(N, C, *S) -> (N, C, *size) or (N, C, *floor(S * scale_factor))."""
    x = _one(inputs)
    mode = {"UpsamplingNearest2d": "nearest", "UpsamplingBilinear2d": "bilinear"}.get(
        layer
    ) or a.get("mode", "nearest")
    align = True if layer == "UpsamplingBilinear2d" else a.get("align_corners", None)
    recompute = a.get("recompute_scale_factor", None) if layer == "Upsample" else None
    return _interpolate(x, a.get("size", None), a.get("scale_factor", None), mode, align, recompute)


@rule("PixelShuffle")
def pixel_shuffle(layer, a, inputs):
    """(*, C * r^2, H, W) -> (*, C, H * r, W * r)."""
    x = _one(inputs)
    r = a.int("upscale_factor")
    _min_dims(x, 3)
    if r <= 0:
        raise ShapeMismatch(f"upscale_factor must be positive, got {r}")
    c, h, w = x.shape[-3:]
    if c % (r * r):
        raise ShapeMismatch(
            f"expects input dim -3 (channels, {c}) divisible by upscale_factor^2 = {r * r}"
        )
    return _like(x, x.shape[:-3] + (c // (r * r), h * r, w * r))


@rule("PixelUnshuffle")
def pixel_unshuffle(layer, a, inputs):
    """(*, C, H * r, W * r) -> (*, C * r^2, H, W)."""
    x = _one(inputs)
    r = a.int("downscale_factor")
    _min_dims(x, 3)
    if r <= 0:
        raise ShapeMismatch(f"downscale_factor must be positive, got {r}")
    c, h, w = x.shape[-3:]
    for name, size in (("-2 (height)", h), ("-1 (width)", w)):
        if size % r:
            raise ShapeMismatch(
                f"expects input dim {name} = {size} divisible by downscale_factor = {r}"
            )
    return _like(x, x.shape[:-3] + (c * r * r, h // r, w // r))


@rule("ChannelShuffle")
def channel_shuffle(layer, a, inputs):
    """Shape-preserving; (N, C, *) with C divisible by groups."""
    x = _one(inputs)
    groups = a.int("groups")
    if x.ndim < 3:
        raise ShapeMismatch(f"expects an input with at least 3 dims (N, C, *), found {x.ndim}-D")
    if groups <= 0:
        raise ShapeMismatch(f"groups must be positive, got {groups}")
    if x.shape[1] % groups:
        raise ShapeMismatch(
            f"expects input dim 1 (channels, {x.shape[1]}) divisible by groups = {groups}"
        )
    return x


# =========================================================================== padding


def _pad_amounts(a: _Args, n: int) -> tuple[int, ...]:
    value = a.get("padding")
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * (2 * n)
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(value)  # torch passes any length on to F.pad
    raise ShapeMismatch(f"padding must be an int or a list of {2 * n} ints, got {value!r}")


def _pad(x: TensorMeta, pad: tuple[int, ...], mode: str) -> TensorMeta:
    """F.pad: pad[0:2] pads the last dim, pad[2:4] the one before, ..."""
    if len(pad) % 2:
        raise ShapeMismatch(f"padding must have an even number of entries, got {len(pad)}")
    k = len(pad) // 2
    if k > x.ndim:
        raise ShapeMismatch(
            f"padding of {len(pad)} entries needs an input with at least {k} dims, found {x.ndim}-D"
        )
    if mode != "constant" and x.ndim not in (k + 1, k + 2):
        raise ShapeMismatch(
            f"{mode} padding of {len(pad)} entries needs a {k + 1}-D or {k + 2}-D input, found {x.ndim}-D"
        )
    shape = list(x.shape)
    for i in range(k):
        dim = x.ndim - 1 - i
        left, right = pad[2 * i], pad[2 * i + 1]
        size = shape[dim]
        new = size + left + right
        where = f"input dim {dim} (size {size}) with padding ({left}, {right})"
        if mode == "constant":
            cut = size + min(left, 0)
            if cut < 0 or cut + min(right, 0) < 0 or new < 0:
                raise ShapeMismatch(f"negative padding removes more than {where} holds")
        elif mode in ("reflect", "replicate"):
            if mode == "reflect" and (left >= size or right >= size):
                raise ShapeMismatch(
                    f"reflection padding must be smaller than the size it pads: {where}"
                )
            if new < (1 if k == 1 else 0):
                raise ShapeMismatch(
                    f"the output would be {'empty' if new == 0 else 'negative'}: {where}"
                )
        elif mode == "circular":
            if left > size or right > size:
                raise ShapeMismatch(f"circular padding must not exceed the size it pads: {where}")
            if left < -size or right < -size:
                raise ShapeMismatch(
                    f"negative circular padding removes more than the size it pads: {where}"
                )
            if new < 0:
                raise ShapeMismatch(f"the output would be negative: {where}")
            # the wrap-around copies within the output must not partly overlap their source
            copies = []
            if left > 0:
                copies.append(((0, left), (new - left - max(right, 0), new - max(right, 0))))
            if right > 0:
                copies.append(((new - right, new), (max(left, 0), max(left, 0) + right)))
            for dest, src in copies:
                if dest != src and dest[0] < src[1] and src[0] < dest[1]:
                    raise ShapeMismatch(
                        f"circular padding that crops one side may not wrap more than the cropped size: {where}"
                    )
        shape[dim] = new
    if (
        mode in ("reflect", "replicate")
        and k > 1
        and all(shape[x.ndim - 1 - i] == 0 for i in range(k))
    ):
        raise ShapeMismatch(
            f"the output would be empty: padding {list(pad)} removes all of {_fmt(x.shape)}"
        )
    if mode in ("reflect", "replicate") and x.dtype == "bool":
        raise ShapeMismatch(f"{mode} padding does not take a bool input")
    return _like(x, tuple(shape))


@rule("ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d")
def constant_pad(layer, a, inputs):
    """Pads the last dims (padding = (left, right[, top, bottom[, front, back]])); negative crops."""
    x = _one(inputs)
    if layer.startswith("Constant"):
        a.number("value")
    return _pad(x, _pad_amounts(a, _nd(layer)), "constant")


@rule(
    "ReflectionPad1d",
    "ReflectionPad2d",
    "ReflectionPad3d",
    "ReplicationPad1d",
    "ReplicationPad2d",
    "ReplicationPad3d",
    "CircularPad1d",
    "CircularPad2d",
    "CircularPad3d",
)
def mode_pad(layer, a, inputs):
    """Pads the last dims; reflection needs padding < size, circular padding <= size."""
    n = _nd(layer)
    x = _one(inputs)
    pad = _pad_amounts(a, n)
    mode = (
        "reflect"
        if layer.startswith("Reflection")
        else "replicate"
        if layer.startswith("Replication")
        else "circular"
    )
    if mode == "circular":
        _dims(x, (n + 1, n + 2))
    return _pad(x, pad, mode)


# =========================================================================== fold / unfold


def _blocks(spatial, kernel, dilation, padding, stride) -> tuple[int, ...]:
    return tuple(
        (size + 2 * p - (d * (k - 1) + 1)) // s + 1
        for size, k, d, p, s in zip(spatial, kernel, dilation, padding, stride)
    )


def _fold_args(a: _Args) -> tuple[tuple[int, ...], ...]:
    kernel = a.ints("kernel_size", 2)
    dilation = a.ints("dilation", 2, 1)
    padding = a.ints("padding", 2, 0)
    stride = a.ints("stride", 2, 1)
    _positive_all("kernel_size", kernel)
    _positive_all("dilation", dilation)
    _non_negative_all("padding", padding)
    _positive_all("stride", stride)
    return kernel, dilation, padding, stride


def _fold_dtype(x: TensorMeta) -> None:
    if not (_is_float(x.dtype) or x.dtype == "bool" or x.dtype in _COMPLEX):
        raise ShapeMismatch(f"expects a floating-point input, found dtype {x.dtype}")


@rule("Unfold")
def unfold(layer, a, inputs):
    """(N, C, H, W) or (C, H, W) -> (N, C * kh * kw, L) with L the number of sliding blocks."""
    x = _one(inputs)
    kernel, dilation, padding, stride = _fold_args(a)
    _dims(x, (3, 4))
    blocks = _blocks(x.shape[-2:], kernel, dilation, padding, stride)
    if any(b < 1 for b in blocks):
        raise ShapeMismatch(
            f"kernel_size = {_plural(kernel)} (dilation {_plural(dilation)}, padding {_plural(padding)}) leaves "
            f"{_fmt(blocks)} sliding blocks over spatial size {_fmt(x.shape[-2:])}; each must be at least 1"
        )
    _fold_dtype(x)
    c = x.shape[-3]
    return _like(x, x.shape[:-3] + (c * kernel[0] * kernel[1], blocks[0] * blocks[1]))


@rule("Fold")
def fold(layer, a, inputs):
    """(N, C * kh * kw, L) or (C * kh * kw, L) -> (N, C, *output_size)."""
    x = _one(inputs)
    out_size = a.ints("output_size", 2)
    kernel, dilation, padding, stride = _fold_args(a)
    _dims(x, (2, 3))
    if any(s == 0 for s in x.shape[-2:]):
        raise ShapeMismatch(f"expects non-zero sizes in the non-batch dims, found {_fmt(x.shape)}")
    cols = kernel[0] * kernel[1]
    if x.shape[-2] % cols:
        raise ShapeMismatch(
            f"expects input dim {x.ndim - 2} ({x.shape[-2]}) divisible by the kernel_size product {kernel[0]} * {kernel[1]} = {cols}"
        )
    blocks = _blocks(out_size, kernel, dilation, padding, stride)
    if any(b < 1 for b in blocks):
        raise ShapeMismatch(
            f"output_size = {_fmt(out_size)} leaves {_fmt(blocks)} sliding blocks for kernel_size = {_plural(kernel)}: too small"
        )
    if x.shape[-1] != blocks[0] * blocks[1]:
        raise ShapeMismatch(
            f"expects input dim -1 = the number of sliding blocks {blocks[0]} * {blocks[1]} = {blocks[0] * blocks[1]}, found {x.shape[-1]}"
        )
    _fold_dtype(x)
    return _like(x, x.shape[:-2] + (x.shape[-2] // cols,) + out_size)


# =========================================================================== distances


def _broadcast(s1: tuple[int, ...], s2: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for i in range(1, max(len(s1), len(s2)) + 1):
        d1 = s1[-i] if i <= len(s1) else 1
        d2 = s2[-i] if i <= len(s2) else 1
        if d1 != d2 and 1 not in (d1, d2):
            raise ShapeMismatch(
                f"expects input shapes that broadcast, found {_fmt(s1)} and {_fmt(s2)}"
            )
        out.append(d2 if d1 == 1 else d1)
    return tuple(reversed(out))


@rule("CosineSimilarity")
def cosine_similarity(layer, a, inputs):
    """Broadcasts x1 and x2, then reduces dim (default 1)."""
    x1, x2 = (_tensor(v, f"x{i + 1}") for i, v in enumerate(_inputs(inputs, ("x1", "x2"), 2)))
    shape = _broadcast(x1.shape, x2.shape)
    dim = _wrap(a.get("dim", 1), len(shape))
    common = _result_type(x1, x2)
    if not _is_float(common):
        raise ShapeMismatch(
            f"expects a floating-point common dtype, found {common} (from {x1.dtype} and {x2.dtype})"
        )
    # integer inputs are cast to the common dtype; the (broadcast) product then promotes as usual
    d1, d2 = (common if _kind(t.dtype) < 2 else t.dtype for t in (x1, x2))
    return TensorMeta(shape[:dim] + shape[dim + 1 :], _promote(d1, d2))


@rule("PairwiseDistance")
def pairwise_distance(layer, a, inputs):
    """Broadcasts x1 and x2, then takes the p-norm over the last dim (kept with keepdim)."""
    x1, x2 = (_tensor(v, f"x{i + 1}") for i, v in enumerate(_inputs(inputs, ("x1", "x2"), 2)))
    shape = _broadcast(x1.shape, x2.shape)
    if "bool" in (x1.dtype, x2.dtype):
        raise ShapeMismatch("cannot take the difference of bool inputs")
    dtype = _result_type(x1, x2)
    if dtype in _COMPLEX:
        raise ShapeMismatch(f"expects real inputs, found {dtype}")
    dtype = dtype if _is_float(dtype) else "float32"
    if not shape:
        return TensorMeta((), dtype)
    keep = a.flag("keepdim", False)
    return TensorMeta(shape[:-1] + ((1,) if keep else ()), dtype)
