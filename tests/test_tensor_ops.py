"""Property tests: each built-in op's shape rule agrees with torch on real CPU tensors.

1. ``test_valid``: random small shapes and random *valid* args for each op; the
   op must run, and the rule's TensorMeta (shape and dtype, nested for
   split/chunk) must equal the real output's.
2. ``test_wild``: random args/inputs, many invalid; the rule raises
   ShapeMismatch iff the op raises, and agrees with it otherwise.
3. Hostile inputs: malformed and oversized einsum equations, a 10**12-element
   expand (no allocation), impossible reshapes, wrong input kinds/counts.

Arguments are validated by each op's registered argument model (derived from
its signature, as for a model file) and handed to the rule as written
(defaults not filled in), as the pipeline does.

Examples per op: TENSOR_OPS_EXAMPLES (default 25 valid / 40 wild), derandomized
so a run is repeatable; set TENSOR_OPS_RANDOM=1 to explore with fresh seeds.
(Ported from the standalone draft of these ops and its tests.)
"""

from __future__ import annotations

import math
import os
import pickle
import time
import tracemalloc
import warnings
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import modelfactory.registry.ops as T
from modelfactory.registry import OPS as REGISTRY
from modelfactory.registry.ops import meta_of
from modelfactory.registry.symbolic import ShapeMismatch, TensorMeta

torch.set_num_threads(1)

_N = int(os.environ.get("TENSOR_OPS_EXAMPLES", "0"))
_RANDOM = os.environ.get("TENSOR_OPS_RANDOM") == "1"


def _settings(n: int):
    return settings(
        max_examples=_N or n,
        deadline=None,
        database=None,
        derandomize=not _RANDOM,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )


@dataclass(frozen=True)
class _Op:
    fn: Any  # the registered function
    rule: Any  # its registered shape rule (infer)


# the built-in ops (a plugin's ops, registered later, are not part of this test)
OPS: dict[str, _Op] = {
    name: _Op(REGISTRY.get(name).target, REGISTRY.get(name).infer)
    for name in REGISTRY.names()
    if REGISTRY.get(name).target.__module__.startswith("modelfactory.registry.ops.")
}


def args_model(name: str) -> type[BaseModel]:
    """The op's registered argument model (what a model file's arguments are validated by)."""
    return REGISTRY.get(name).args_model


# =============================================================================
# Cases: inputs as (shape, dtype) specs, args as a dict
# =============================================================================
@dataclass
class Case:
    inputs: list[Any]  # (shape, dtype) | None | tuple of specs (getitem)
    args: dict[str, Any]


FLOATS = ("float32", "float64")
WILD_DTYPES = ("float32", "float64", "int64", "bool")


def _is_spec(spec: Any) -> bool:
    return isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], str)


def make(spec: Any, gen: torch.Generator) -> Any:
    if spec is None:
        return None
    if not _is_spec(spec):
        return tuple(make(s, gen) for s in spec)
    shape, dtype = spec
    if dtype == "bool":
        return torch.randint(0, 2, shape, generator=gen).bool()
    if dtype in ("int64", "int32"):
        return torch.randint(
            1, 5, shape, generator=gen, dtype=getattr(torch, dtype)
        )  # nonzero: div
    return torch.randn(shape, generator=gen, dtype=getattr(torch, dtype))


def spec_meta(spec: Any) -> Any:
    if spec is None:
        return None
    if not _is_spec(spec):
        return tuple(spec_meta(s) for s in spec)
    return TensorMeta(tuple(spec[0]), spec[1])


@st.composite
def shape_st(draw, min_nd=0, max_nd=4, lo=0, hi=4, nd=None):
    nd = draw(st.integers(min_nd, max_nd)) if nd is None else nd
    # size 0 is drawn about a quarter as often as each other size
    size = st.sampled_from([0] + list(range(1, hi + 1)) * 4) if lo == 0 else st.integers(lo, hi)
    return tuple(draw(size) for _ in range(nd))


def dtype_st(
    wild: bool, valid: tuple[str, ...] = ("float32",), wild_set: tuple[str, ...] = WILD_DTYPES
):
    return st.sampled_from(wild_set if wild else valid)


def dim_st(nd: int, wild: bool, extra: int = 0):
    n = max(nd + extra, 1)
    return st.integers(-n - 2, n + 1) if wild else st.integers(-n, n - 1)


def maybe(strategy):
    return st.one_of(st.none(), strategy)


GENS: dict[str, Any] = {}


def gen(*names):
    def deco(f):
        for n in names:
            GENS[n] = f
        return f

    return deco


# --- shape ops -------------------------------------------------------------------
def _regroup(draw, sizes):
    """A random shape with the same element count (shuffle, merge neighbours, split 1s in)."""
    sizes = list(sizes)
    sizes = draw(st.permutations(sizes)) if sizes else []
    out = []
    for s in sizes:
        if out and draw(st.booleans()):
            out[-1] *= s
        else:
            out.append(s)
    for _ in range(draw(st.integers(0, 2))):
        out.insert(draw(st.integers(0, len(out))), 1)
    return out


@gen("reshape", "view")
@st.composite
def _reshape(draw, name, wild):
    x = draw(shape_st())
    key = "shape" if name == "reshape" else "size"
    if wild:
        target = draw(st.lists(st.integers(-2, 7), max_size=4))
    else:
        target = _regroup(draw, x)
        if target and draw(st.booleans()):
            i = draw(st.integers(0, len(target) - 1))
            rest = math.prod(s for j, s in enumerate(target) if j != i)
            if rest != 0:
                target[i] = -1
    return Case([(x, draw(dtype_st(wild)))], {key: target})


@gen("flatten")
@st.composite
def _flatten(draw, name, wild):
    x = draw(shape_st())
    nd = len(x)
    args = {}
    if draw(st.booleans()):
        args["start_dim"] = draw(dim_st(nd, wild))
    if draw(st.booleans()):
        args["end_dim"] = draw(dim_st(nd, wild))
    if not wild:
        n = max(nd, 1)
        start = args.get("start_dim", 1)  # the op's default, as nn.Flatten's
        assume(-n <= start < n)
        s, e = start % n, args.get("end_dim", -1) % n
        assume(s <= e)
    return Case([(x, draw(dtype_st(wild)))], args)


@gen("unflatten")
@st.composite
def _unflatten(draw, name, wild):
    x = draw(shape_st(min_nd=0 if wild else 1))
    dim = draw(dim_st(len(x), wild))
    if wild:
        sizes = draw(st.lists(st.integers(-2, 5), max_size=3))
    else:
        n = x[dim]
        sizes = _regroup(draw, [n])
        if draw(st.booleans()) and n > 0:
            sizes[draw(st.integers(0, len(sizes) - 1))] = -1
    return Case([(x, draw(dtype_st(wild)))], {"dim": dim, "sizes": sizes})


@gen("permute")
@st.composite
def _permute(draw, name, wild):
    x = draw(shape_st())
    nd = len(x)
    if wild:
        dims = draw(st.lists(st.integers(-nd - 1, nd), max_size=nd + 1))
    else:
        dims = [d - nd * draw(st.booleans()) for d in draw(st.permutations(range(nd)))]
    return Case([(x, draw(dtype_st(wild)))], {"dims": dims})


@gen("transpose")
@st.composite
def _transpose(draw, name, wild):
    x = draw(shape_st())
    return Case(
        [(x, draw(dtype_st(wild)))],
        {"dim0": draw(dim_st(len(x), wild)), "dim1": draw(dim_st(len(x), wild))},
    )


@gen("unsqueeze")
@st.composite
def _unsqueeze(draw, name, wild):
    x = draw(shape_st())
    return Case([(x, draw(dtype_st(wild)))], {"dim": draw(dim_st(len(x), wild, extra=1))})


@gen("squeeze")
@st.composite
def _squeeze(draw, name, wild):
    x = draw(shape_st(lo=0, hi=2))
    nd = len(x)
    kind = draw(st.sampled_from(["none", "int", "list"]))
    args = {}
    if kind == "int":
        args["dim"] = draw(dim_st(nd, wild))
    elif kind == "list":
        if wild:
            args["dim"] = draw(st.lists(dim_st(nd, True), max_size=3))
        else:
            args["dim"] = draw(
                st.lists(st.integers(0, max(nd, 1) - 1), unique=True, max_size=max(nd, 1))
            )
    return Case([(x, draw(dtype_st(wild)))], args)


def _expansion(draw, x, allow_minus_one=True):
    out = [draw(st.integers(0, 3)) for _ in range(draw(st.integers(0, 2)))]
    for s in x:
        if s == 1:
            out.append(
                draw(st.sampled_from([-1, 0, 1, 2, 3]))
                if allow_minus_one
                else draw(st.integers(0, 3))
            )
        else:
            out.append(draw(st.sampled_from([-1, s])) if allow_minus_one else s)
    return out


@gen("expand")
@st.composite
def _expand(draw, name, wild):
    x = draw(shape_st(lo=0, hi=3))
    size = draw(st.lists(st.integers(-2, 4), max_size=5)) if wild else _expansion(draw, x)
    return Case([(x, draw(dtype_st(wild)))], {"size": size})


@gen("expand_as")
@st.composite
def _expand_as(draw, name, wild):
    x = draw(shape_st(lo=0, hi=3))
    other = (
        draw(shape_st(lo=0, hi=3)) if wild else tuple(_expansion(draw, x, allow_minus_one=False))
    )
    return Case([(x, draw(dtype_st(wild))), (other, draw(dtype_st(wild)))], {})


@gen(
    "contiguous",
    "neg",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "cos",
    "sin",
    "relu",
    "gelu",
    "sigmoid",
    "tanh",
    "silu",
    "center",
    "halve_while_abs_sum_gt",
)
@st.composite
def _unary(draw, name, wild):
    x = draw(shape_st())
    args = {}
    if name == "gelu" and draw(st.booleans()):
        args["approximate"] = draw(st.sampled_from(["none", "tanh"]))
    if name == "halve_while_abs_sum_gt" and draw(st.booleans()):
        args["threshold"] = draw(st.floats(0.0, 5.0))
    float_only = ("gelu", "silu", "center", "halve_while_abs_sum_gt")
    valid = FLOATS if name in float_only else ("float32", "float64", "int64")
    # the halving loop's rule refuses integer inputs, whose dtype torch changes only when it loops
    wild_set = FLOATS if name == "halve_while_abs_sum_gt" else WILD_DTYPES
    return Case([(x, draw(dtype_st(wild, valid, wild_set)))], args)


@gen("add_scalar", "mul_scalar")
@st.composite
def _scalar(draw, name, wild):
    x = draw(shape_st())
    dts = ("float32", "float64", "int64", "bool")
    return Case([(x, draw(dtype_st(wild, dts)))], {"value": draw(st.floats(-3, 3))})


@gen("split")
@st.composite
def _split(draw, name, wild):
    x = draw(shape_st(min_nd=0 if wild else 1, hi=5))
    nd = len(x)
    args = {}
    if draw(st.booleans()) or wild:
        args["dim"] = draw(dim_st(nd, wild))
    d = args.get("dim", 0)
    if wild:
        args["split_size_or_sections"] = draw(
            st.one_of(st.integers(-1, 6), st.lists(st.integers(-1, 4), max_size=4))
        )
    else:
        n = x[d]
        if draw(st.booleans()):
            args["split_size_or_sections"] = (
                draw(st.integers(1, 6)) if n else draw(st.integers(0, 3))
            )
        else:
            cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
            bounds = [0, *cuts, n]
            args["split_size_or_sections"] = [
                b - a for a, b in zip(bounds, bounds[1:], strict=False)
            ]
    return Case([(x, draw(dtype_st(wild)))], args)


@gen("chunk")
@st.composite
def _chunk(draw, name, wild):
    x = draw(shape_st(min_nd=0 if wild else 1, hi=7))
    args = {"chunks": draw(st.integers(1, 8))}
    if draw(st.booleans()) or wild:
        args["dim"] = draw(dim_st(len(x), wild))
    return Case([(x, draw(dtype_st(wild)))], args)


@gen("cat", "concat")
@st.composite
def _cat(draw, name, wild):
    n = draw(st.integers(0 if wild else 1, 3))
    if wild:
        specs = [(draw(shape_st(max_nd=3, hi=3)), draw(dtype_st(True))) for _ in range(n)]
        args = {"dim": draw(st.integers(-4, 3))} if draw(st.booleans()) else {}
        return Case(specs, args)
    base = draw(shape_st(min_nd=1, max_nd=3, hi=3))
    dim = draw(dim_st(len(base), False))
    specs = []
    for _ in range(n):
        s = list(base)
        s[dim] = draw(st.integers(0, 3))
        specs.append((tuple(s), draw(dtype_st(False, ("float32", "float64", "int64")))))
    if draw(st.booleans()):  # a legacy 1-d empty tensor, which torch skips
        specs.insert(draw(st.integers(0, len(specs))), ((0,), "float32"))
    return Case(specs, {"dim": dim})


@gen("stack")
@st.composite
def _stack(draw, name, wild):
    n = draw(st.integers(0 if wild else 1, 3))
    base = draw(shape_st(max_nd=3, hi=3))
    specs = []
    for _ in range(n):
        s = draw(shape_st(max_nd=3, hi=3)) if wild and draw(st.booleans()) else base
        specs.append((s, draw(dtype_st(wild, ("float32", "int64")))))
    return Case(specs, {"dim": draw(dim_st(len(base), wild, extra=1))})


# --- indexing ------------------------------------------------------------------------
@gen("select")
@st.composite
def _select(draw, name, wild):
    x = draw(shape_st(min_nd=0 if wild else 1, lo=0 if wild else 1))
    dim = draw(dim_st(len(x), wild))
    n = x[dim] if x and -len(x) <= dim < len(x) else 1
    index = draw(st.integers(-n - 2, n + 1) if wild else st.integers(-n, n - 1))
    return Case([(x, draw(dtype_st(wild)))], {"dim": dim, "index": index})


@gen("narrow")
@st.composite
def _narrow(draw, name, wild):
    x = draw(shape_st(min_nd=0 if wild else 1))
    dim = draw(dim_st(len(x), wild))
    n = x[dim] if x and -len(x) <= dim < len(x) else 1
    if wild:
        start, length = draw(st.integers(-n - 2, n + 2)), draw(st.integers(-1, n + 2))
    else:
        start = draw(st.integers(-n, n))
        length = draw(st.integers(0, n - (start % n if n and start < 0 else start)))
    return Case([(x, draw(dtype_st(wild)))], {"dim": dim, "start": start, "length": length})


@gen("slice")
@st.composite
def _slice(draw, name, wild):
    x = draw(shape_st(min_nd=0 if wild else 1, hi=6))
    args = {}
    if draw(st.booleans()) or wild:
        args["dim"] = draw(dim_st(len(x), wild))
    for key in ("start", "end"):
        if draw(st.booleans()):
            args[key] = draw(maybe(st.integers(-8, 8)))
    if draw(st.booleans()):
        args["step"] = draw(st.integers(1, 4))
    return Case([(x, draw(dtype_st(wild)))], args)


@gen("getitem")
@st.composite
def _getitem(draw, name, wild):
    n = draw(st.integers(1, 3))
    items = tuple((draw(shape_st(max_nd=2)), draw(dtype_st(wild))) for _ in range(n))
    index = draw(st.integers(-n - 1, n) if wild else st.integers(-n, n - 1))
    return Case([items], {"index": index})


# --- linear algebra --------------------------------------------------------------------
@gen("matmul")
@st.composite
def _matmul(draw, name, wild):
    # stricter than torch: bool is refused (torch only accepts it for empty products)
    dts = ("float32", "float64", "int64")
    if wild:
        a, b = draw(shape_st(max_nd=4, lo=1, hi=3)), draw(shape_st(max_nd=4, lo=1, hi=3))
        return Case([(a, draw(st.sampled_from(dts))), (b, draw(st.sampled_from(dts)))], {})
    ra, rb = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    n, m, p = (draw(st.integers(0, 3)) for _ in range(3))
    batch = draw(shape_st(max_nd=2, lo=1, hi=3))
    a_batch = (
        tuple(s if draw(st.booleans()) else 1 for s in batch)[len(batch) - max(ra - 2, 0) :]
        if ra > 2
        else ()
    )
    b_batch = (
        tuple(s if draw(st.booleans()) else 1 for s in batch)[len(batch) - max(rb - 2, 0) :]
        if rb > 2
        else ()
    )
    a = (m,) if ra == 1 else a_batch + (1,) * (ra - 2 - len(a_batch)) + (n, m)
    b = (m,) if rb == 1 else b_batch + (1,) * (rb - 2 - len(b_batch)) + (m, p)
    dt = draw(st.sampled_from(dts))
    return Case([(a, dt), (b, dt)], {})


@gen("bmm")
@st.composite
def _bmm(draw, name, wild):
    dts = ("float32", "float64", "int64")
    if wild:
        a, b = (
            draw(shape_st(min_nd=2, max_nd=4, lo=1, hi=3)),
            draw(shape_st(min_nd=2, max_nd=4, lo=1, hi=3)),
        )
        return Case([(a, draw(st.sampled_from(dts))), (b, draw(st.sampled_from(dts)))], {})
    bsz, n, m, p = (draw(st.integers(0, 3)) for _ in range(4))
    dt = draw(st.sampled_from(dts))
    return Case([((bsz, n, m), dt), ((bsz, m, p), dt)], {})


@gen("einsum")
@st.composite
def _einsum(draw, name, wild):
    # stricter than torch: one dtype for all operands, floating or int64
    dt = draw(st.sampled_from(("float32", "float64", "int64")))
    if wild:
        alphabet = st.sampled_from(list("abcA.,-> "))
        eq = "".join(draw(st.lists(alphabet, max_size=12)))
        n = draw(st.integers(1, 3))
        return Case(
            [(draw(shape_st(max_nd=3, lo=1, hi=3)), dt) for _ in range(n)], {"equation": eq}
        )
    labels = draw(st.lists(st.sampled_from("abcdAB"), min_size=1, max_size=4, unique=True))
    size = {lab: draw(st.integers(1, 3)) for lab in labels}
    n = draw(st.integers(1, 3))
    ell = draw(shape_st(max_nd=2, lo=1, hi=3)) if draw(st.booleans()) else None
    terms, specs = [], []
    for _ in range(n):
        term = draw(st.lists(st.sampled_from(labels), max_size=3))
        shape = [size[lab] if draw(st.integers(0, 4)) else 1 for lab in term]
        # a label repeated inside one operand must have one size there
        first = {}
        for i, lab in enumerate(term):
            shape[i] = first.setdefault(lab, shape[i])
        text = "".join(term)
        if ell is not None and draw(st.booleans()):
            k = draw(st.integers(0, len(term)))
            sub_ell = ell[draw(st.integers(0, len(ell))) :]
            text = text[:k] + "..." + text[k:]
            shape = shape[:k] + list(sub_ell) + shape[k:]
        terms.append(text)
        specs.append((tuple(shape), dt))
    eq = ",".join(terms)
    if draw(st.booleans()):
        used = sorted({c for t in terms for c in t if c.isalpha()})
        out = draw(st.permutations(used))[: draw(st.integers(0, len(used)))]
        out_text = "".join(out)
        if "..." in eq and draw(st.booleans()):
            out_text = "..." + out_text
        eq = eq + "->" + out_text
    return Case(specs, {"equation": eq})


# --- attention, softmax, norms ----------------------------------------------------------
@gen("scaled_dot_product_attention")
@st.composite
def _sdpa(draw, name, wild):
    dt = draw(st.sampled_from(FLOATS))
    lead = draw(shape_st(max_nd=2, lo=1, hi=2))
    hq = draw(st.integers(1, 4))
    gqa = draw(st.booleans())
    hk = draw(st.sampled_from([h for h in (1, 2, 4) if hq % h == 0])) if gqa else hq
    L, S, E, Ev = (draw(st.integers(1, 4)) for _ in range(4))
    with_heads = bool(lead) or gqa or draw(st.booleans())
    q = lead + ((hq,) if with_heads else ()) + (L, E)
    k = lead + ((hk,) if with_heads else ()) + (S, E)
    v = lead + ((hk,) if with_heads else ()) + (S, Ev)
    args = {}
    if gqa:
        args["enable_gqa"] = True
    causal = draw(st.booleans())
    if causal:
        args["is_causal"] = True
    if draw(st.booleans()):
        args["scale"] = draw(st.floats(0.1, 2.0))
    mask = None
    if not causal and draw(st.booleans()):
        full = q[:-2] + (L, S)
        # stricter than torch: attn_mask needs >= 2 dims (torch's fused CPU path does too)
        mshape = tuple(s if draw(st.booleans()) else 1 for s in full)[
            draw(st.integers(0, len(full) - 2)) :
        ]
        mask = (mshape, draw(st.sampled_from(["bool", dt])))
    specs = [(q, dt), (k, dt), (v, dt)]
    if mask is not None:
        specs.append(mask)
    if wild:
        # perturb: a size, a dtype, the mask, is_causal, the rank
        specs = [(tuple(s), d) for s, d in specs]
        i = draw(st.integers(0, len(specs) - 1))
        s, d = specs[i]
        what = draw(st.sampled_from(["size", "dtype", "rank", "causal", "mask", "none"]))
        if what == "size" and s:
            j = draw(st.integers(0, len(s) - 1))
            s = s[:j] + (draw(st.integers(1, 5)),) + s[j + 1 :]
        elif what == "dtype":
            d = draw(st.sampled_from(["float32", "float64", "int64", "bool"]))
        elif what == "rank":
            s = s[draw(st.integers(0, len(s) - (2 if i == 3 else 0))) :]
        elif what == "causal":
            args["is_causal"] = True
        elif what == "mask":
            specs.append(
                (
                    draw(shape_st(min_nd=2, max_nd=4, lo=1, hi=4)),
                    draw(st.sampled_from(["bool", "float32", "int64"])),
                )
            )
            specs = specs[:4]
        specs[i] = (s, d)
    return Case(specs, args)


@gen("softmax", "log_softmax")
@st.composite
def _softmax(draw, name, wild):
    x = draw(shape_st())
    args = {"dim": draw(dim_st(len(x), wild))} if draw(st.booleans()) or wild else {}
    return Case([(x, draw(dtype_st(wild, FLOATS)))], args)


@gen("layer_norm", "rms_norm")
@st.composite
def _norm(draw, name, wild):
    x = draw(shape_st(min_nd=0 if wild else 1, lo=1))
    if wild:
        ns = draw(st.one_of(st.integers(1, 4), st.lists(st.integers(1, 4), max_size=3)))
    else:
        k = draw(st.integers(1, len(x)))
        ns = list(x[len(x) - k :])
        if k == 1 and draw(st.booleans()):
            ns = ns[0]
    args = {"normalized_shape": ns}
    if draw(st.booleans()):
        args["eps"] = (
            draw(st.floats(1e-8, 1e-3))
            if name == "layer_norm"
            else draw(maybe(st.floats(1e-8, 1e-3)))
        )
    return Case([(x, draw(dtype_st(wild, FLOATS)))], args)


# --- masks ----------------------------------------------------------------------------------
def _broadcastable_to(draw, shape):
    """A shape that broadcasts with ``shape`` (some dims 1, a prefix dropped, maybe new leading dims)."""
    s = tuple(d if draw(st.booleans()) else 1 for d in shape)[draw(st.integers(0, len(shape))) :]
    if len(s) == len(shape) and draw(st.integers(0, 3)) == 0:
        s = (draw(st.integers(1, 2)),) + s
    return s


@gen("masked_fill")
@st.composite
def _masked_fill(draw, name, wild):
    x = draw(shape_st(max_nd=3))
    value = draw(
        st.one_of(
            st.floats(-3, 3),
            st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e39, 1e30]),
        )
    )
    if wild:
        return Case(
            [
                (x, draw(dtype_st(True))),
                (
                    draw(shape_st(max_nd=3)),
                    draw(st.sampled_from(["bool", "bool", "float32", "int64"])),
                ),
            ],
            {"value": value},
        )
    dt = draw(st.sampled_from(["float32", "float64", "int64", "bool"]))
    if dt == "int64":
        value = draw(st.floats(-3, 3))
    if dt == "float32" and value == 1e39:
        value = 1.0
    return Case([(x, dt), (_broadcastable_to(draw, x), "bool")], {"value": value})


@gen("tril", "triu")
@st.composite
def _tri(draw, name, wild):
    x = draw(shape_st(min_nd=0 if wild else 2))
    args = {"diagonal": draw(st.integers(-3, 3))} if draw(st.booleans()) else {}
    return Case([(x, draw(dtype_st(wild, ("float32", "bool"))))], args)


@gen("where")
@st.composite
def _where(draw, name, wild):
    x = draw(shape_st(max_nd=3))
    dts = ("float32", "float64", "int64")
    if wild:
        return Case(
            [
                (
                    draw(shape_st(max_nd=3)),
                    draw(st.sampled_from(["bool", "bool", "float32", "int64"])),
                ),
                (x, draw(dtype_st(True))),
                (draw(shape_st(max_nd=3)), draw(dtype_st(True))),
            ],
            {},
        )
    return Case(
        [
            (_broadcastable_to(draw, x), "bool"),
            (x, draw(st.sampled_from(dts))),
            (_broadcastable_to(draw, x), draw(st.sampled_from(dts))),
        ],
        {},
    )


# --- arithmetic -------------------------------------------------------------------------------
ARITH = ("add", "mul", "sub", "div", "eq", "ne", "lt", "le", "gt", "ge")


@gen(*ARITH)
@st.composite
def _arith(draw, name, wild):
    two_only = name not in ("add", "mul")
    x = draw(shape_st(max_nd=3))
    args = {}
    if name == "div" and draw(st.booleans()):
        args["rounding_mode"] = draw(maybe(st.sampled_from(["trunc", "floor"])))
    dts = (
        ("float32", "float64", "int64")
        if name in ("sub",) or (name == "div" and args.get("rounding_mode"))
        else ("float32", "float64", "int64", "bool")
    )
    if wild:
        n = draw(st.integers(0, 3))
        specs = [(draw(shape_st(max_nd=3)) if i else x, draw(dtype_st(True))) for i in range(n)]
        if draw(st.booleans()):
            args["other"] = draw(st.floats(-3, 3))
        return Case(specs, args)
    scalar = draw(st.booleans())
    if scalar:
        args["other"] = draw(st.floats(-3, 3).filter(lambda v: v != 0))
        return Case([(x, draw(st.sampled_from(dts)))], args)
    n = 2 if two_only else draw(st.integers(2, 3))
    specs = [(x, draw(st.sampled_from(dts)))] + [
        (_broadcastable_to(draw, x), draw(st.sampled_from(dts))) for _ in range(n - 1)
    ]
    draw(st.randoms()).shuffle(specs)
    return Case(specs, args)


@gen("pow")
@st.composite
def _pow(draw, name, wild):
    x = draw(shape_st())
    return Case(
        [(x, draw(dtype_st(wild, ("float32", "float64", "int64"))))],
        {"exponent": draw(st.floats(-3, 3))},
    )


@gen("clamp")
@st.composite
def _clamp(draw, name, wild):
    x = draw(shape_st())
    args = {}
    for key in ("min", "max"):
        if draw(st.booleans()):
            args[key] = draw(maybe(st.floats(-2, 2)))
    if not wild:
        assume(args.get("min") is not None or args.get("max") is not None)
    return Case([(x, draw(dtype_st(wild, ("float32", "float64", "int64", "bool"))))], args)


# --- reductions -------------------------------------------------------------------------------
@gen("sum", "mean", "amax")
@st.composite
def _reduce(draw, name, wild):
    x = draw(shape_st(lo=0 if wild or name != "amax" else 1))
    nd = len(x)
    args = {}
    kind = draw(st.sampled_from(["absent", "none", "int", "list"]))
    if kind == "none":
        args["dim"] = None
    elif kind == "int":
        args["dim"] = draw(dim_st(nd, wild))
    elif kind == "list":
        if wild:
            args["dim"] = draw(st.lists(dim_st(nd, True), max_size=3))
        else:
            n = max(nd, 1)
            picked = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n))
            args["dim"] = [d - n * draw(st.booleans()) for d in picked]
    if draw(st.booleans()):
        args["keepdim"] = draw(st.booleans())
    valid = FLOATS if name == "mean" else ("float32", "int64", "bool")
    return Case([(x, draw(dtype_st(wild, valid)))], args)


# --- other --------------------------------------------------------------------------------------
@gen("dropout")
@st.composite
def _dropout(draw, name, wild):
    x = draw(shape_st())
    args = {}
    if draw(st.booleans()):
        args["p"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        args["training"] = draw(st.booleans())
    valid = FLOATS if args.get("training") else ("float32", "int64", "bool")
    return Case([(x, draw(dtype_st(wild, valid)))], args)


@gen("pad")
@st.composite
def _pad(draw, name, wild):
    mode = draw(st.sampled_from(["constant", "constant", "reflect", "replicate", "circular"]))
    args = {"mode": mode} if mode != "constant" or draw(st.booleans()) else {}
    if wild:
        x = draw(shape_st(max_nd=5, hi=4))
        args["pad"] = draw(st.lists(st.integers(-3 if mode == "constant" else 0, 4), max_size=7))
        if draw(st.booleans()):
            args["value"] = draw(st.sampled_from([0.0, 1.5, float("inf"), 1e39]))
        return Case([(x, draw(dtype_st(True, wild_set=("float32", "int64"))))], args)
    if mode == "constant":
        x = draw(shape_st(max_nd=4))
        k = draw(st.integers(0, len(x)))
        pads = []
        for j in range(k):
            size = x[len(x) - 1 - j]
            lo = draw(st.integers(-size, 3))
            hi = draw(st.integers(-(size + min(lo, 0)), 3))
            pads += [lo, hi]
        args["pad"] = pads
        if draw(st.booleans()):
            args["value"] = draw(maybe(st.floats(-3, 3)))
        return Case([(x, draw(st.sampled_from(["float32", "int64"])))], args)
    k = draw(st.integers(1, 3))
    nd = k + draw(st.integers(1, 2))
    x = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    pads = []
    for j in range(k):
        size = x[nd - 1 - j]
        top = size - 1 if mode == "reflect" else min(size, 3) if mode == "circular" else 3
        pads += [draw(st.integers(0, top)), draw(st.integers(0, top))]
    args["pad"] = pads
    if draw(st.booleans()):
        args["value"] = 0.0
    return Case([(x, "float32")], args)


@gen("interpolate")
@st.composite
def _interpolate(draw, name, wild):
    mode = draw(
        st.sampled_from(
            ["nearest", "linear", "bilinear", "bicubic", "trilinear", "area", "nearest-exact"]
        )
    )
    args = {"mode": mode}
    if wild:
        x = draw(shape_st(min_nd=1, max_nd=5, lo=0, hi=3))
        if draw(st.booleans()):
            args["size"] = draw(
                st.one_of(st.integers(-1, 4), st.lists(st.integers(0, 4), max_size=4))
            )
        if draw(st.booleans()) or "size" not in args:
            args["scale_factor"] = draw(
                st.one_of(st.floats(-1, 3), st.lists(st.floats(0.1, 3), max_size=4))
            )
        if draw(st.booleans()):
            args["align_corners"] = draw(st.booleans())
        return Case([(x, draw(dtype_st(True, wild_set=("float32", "int64"))))], args)
    nd = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}.get(mode) or draw(
        st.integers(3, 5)
    )
    x = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + tuple(
        draw(st.integers(1, 4)) for _ in range(nd - 2)
    )
    if draw(st.booleans()):
        args["size"] = draw(
            st.one_of(
                st.integers(1, 5), st.lists(st.integers(1, 5), min_size=nd - 2, max_size=nd - 2)
            )
        )
    else:
        f = st.floats(0.5, 3.0).filter(lambda v: all(math.floor(s * v) >= 1 for s in x[2:]))
        args["scale_factor"] = draw(st.one_of(f, st.lists(f, min_size=nd - 2, max_size=nd - 2)))
    if mode in ("linear", "bilinear", "bicubic", "trilinear") and draw(st.booleans()):
        args["align_corners"] = draw(st.booleans())
    return Case([(x, draw(dtype_st(False, FLOATS)))], args)


@gen("arange")
@st.composite
def _arange(draw, name, wild):
    x = draw(shape_st(min_nd=0 if wild else 1))
    return Case([(x, draw(dtype_st(wild)))], {"dim": draw(dim_st(len(x), wild))})


# =============================================================================
# The comparison
# =============================================================================
def _sdpa_lax(metas: tuple, args: dict) -> bool:
    k, v = metas[1], metas[2]
    kv_differ = len(k.shape) >= 2 and len(v.shape) >= 2 and k.shape[-2] != v.shape[-2]
    mask_and_causal = len(metas) > 3 and metas[3] is not None and args.get("is_causal", False)
    return kv_differ or mask_and_causal


def _empty_not_float(metas: tuple, args: dict, out: Any) -> bool:
    x = metas[0]
    return math.prod(x.shape) == 0 and x.dtype not in FLOATS


def _area_empty(metas: tuple, args: dict, out: Any) -> bool:
    x = metas[0]
    return args.get("mode") == "area" and (x.shape[1:2] == (0,) or 0 in out.shape[2:])


def _interpolate_lax(metas: tuple, args: dict, out: Any) -> bool:
    return _area_empty(metas, args, out) or _empty_not_float(metas, args, out)


def _negative_size(metas: tuple, args: dict, out: Any) -> bool:
    return any(s < 0 for s in out.shape)


# Results torch returns where the rule deliberately refuses (it judges the
# non-empty case): an op on an empty tensor of a dtype it has no kernel for
# (softmax, dropout, interpolate: torch skips the kernel and its dtype check);
# interpolate(mode='area') to an empty size or from empty channels (other
# modes and 5-d 'area' refuse those); expand of a 0-d tensor to [0, -1], which
# torch returns with a size of -1.
TORCH_LAX_RESULTS = {
    "softmax": _empty_not_float,
    "log_softmax": _empty_not_float,
    "dropout": _empty_not_float,
    "interpolate": _interpolate_lax,
    "expand": _negative_size,
}


# Inputs torch runs on but should not: the rule must refuse them; torch is not consulted.
# torch 2.13's fused CPU attention path (taken for some 4-d inputs) does not check
# that key and value have the same sequence length, nor that attn_mask and
# is_causal=True are not both given (its docs say that is an error, and the
# math path raises); it returns a result anyway.
TORCH_LAXITY = {"scaled_dot_product_attention": _sdpa_lax}


def run_case(name: str, case: Case, seed: int = 0) -> tuple[str, Any, Any]:
    """Run the op and its rule on ``case``; returns (outcome, torch result/error, rule result/error)."""
    model = args_model(name)
    validated = model.model_validate(case.args)  # what the caller hands over
    args = validated.model_dump(exclude_unset=True)  # defaults NOT applied
    gen_ = torch.Generator().manual_seed(seed)
    tensors = [make(s, gen_) for s in case.inputs]
    metas = tuple(spec_meta(s) for s in case.inputs)
    lax = TORCH_LAXITY.get(name)
    if lax is not None and all(isinstance(m, TensorMeta) for m in metas) and lax(metas, args):
        with pytest.raises(ShapeMismatch):
            OPS[name].rule(args, metas)
        return "refused", None, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = OPS[name].fn(*tensors, **args)
        torch_result: Any = meta_of(out)
        torch_ok = True
    except Exception as err:  # noqa: BLE001 - any failure of the op
        torch_result, torch_ok = err, False
    try:
        rule_result: Any = OPS[name].rule(args, metas)
        rule_ok = True
    except ShapeMismatch as err:
        rule_result, rule_ok = err, False
    detail = (
        f"\nop {name} inputs={[spec_meta(s) for s in case.inputs]} args={args}"
        f"\n  torch: {torch_result!r}\n  rule:  {rule_result!r}"
    )
    lax_result = TORCH_LAX_RESULTS.get(name)
    if (
        torch_ok
        and not rule_ok
        and lax_result is not None
        and lax_result(metas, args, torch_result)
    ):
        return "refused", torch_result, rule_result
    if torch_ok and rule_ok:
        assert rule_result == torch_result, "rule and torch disagree" + detail
        return "ok", torch_result, rule_result
    assert torch_ok == rule_ok, (
        "torch ran but the rule refused" if torch_ok else "torch failed but the rule accepted"
    ) + detail
    return "refused", torch_result, rule_result


def _validates(name: str, args: dict) -> bool:
    try:
        args_model(name).model_validate(args)
        return True
    except ValidationError:
        return False


ALL_OPS = sorted(OPS)


def test_every_op_has_a_case_generator():
    assert sorted(GENS) == ALL_OPS


@pytest.mark.parametrize("name", ALL_OPS)
@_settings(25)
@given(data=st.data())
def test_valid(name, data):
    case = data.draw(GENS[name](name, False))
    assert _validates(name, case.args), case.args
    outcome, torch_result, _ = run_case(name, case)
    assert outcome == "ok", f"a valid case failed in torch: {torch_result!r} ({case})"


@pytest.mark.parametrize("name", ALL_OPS)
@_settings(40)
@given(data=st.data())
def test_wild(name, data):
    case = data.draw(GENS[name](name, True))
    assume(_validates(name, case.args))  # args a config could not express never reach a rule
    outcome, _, _ = run_case(name, case)
    event(outcome)  # --hypothesis-show-statistics shows the ok/refused mix


# =============================================================================
# Hostile and edge inputs
# =============================================================================
def M(*shape, dtype="float32"):
    return TensorMeta(tuple(shape), dtype)


@pytest.mark.parametrize(
    "equation, operands, fragment",
    [
        ("ij,jk->ik->k", 2, "'->'"),
        ("ij;jk->ik", 2, "';'"),
        ("i.j->ij", 1, "'...'"),
        ("....->", 1, "'...'"),
        ("...i...->i", 1, "'...'"),
        ("ij->i,j", 1, "','"),
        ("ij-k", 1, "'->'"),
        ("ij>k", 1, "'->'"),
        ("__import__('os').system('x')", 1, "only letters"),
        ("ij\n->i", 1, "only letters"),
        ("ïj->i", 1, "only letters"),
        ("ij,jk,kl->il", 2, "names 3 operand(s) but 2"),
        ("ij->ii", 1, "more than once"),
        ("ij->k", 1, "does not appear"),
        ("ijk->i", 1, "name 3"),
        ("ij,jk->ik", 2, None),  # sizes 2x3 and 4x5 disagree on j
    ],
)
def test_einsum_malformed(equation, operands, fragment):
    metas = (M(2, 3), M(4, 5))[:operands] if operands == 2 else (M(2, 3),)
    with pytest.raises(ShapeMismatch) as err:
        OPS["einsum"].rule({"equation": equation}, metas)
    msg = str(err.value)
    assert msg and msg[0].islower() and "\n" not in msg, msg
    if fragment:
        assert fragment in msg, msg
    # the op itself refuses before torch parses anything
    tensors = [torch.zeros(m.shape) for m in metas]
    with pytest.raises(ShapeMismatch):
        OPS["einsum"].fn(*tensors, equation=equation)


def test_einsum_oversized_equation():
    for eq in ("a" * (T.EINSUM_MAX_LEN + 1), "ab," * 200 + "ab", "a" * 10**6):
        t0 = time.perf_counter()
        with pytest.raises(ShapeMismatch, match="characters long; the limit is 256"):
            OPS["einsum"].rule({"equation": eq}, (M(2, 2),))
        assert time.perf_counter() - t0 < 0.1
    # the longest accepted equation still works
    eq = "ab" + " " * (T.EINSUM_MAX_LEN - 6) + "->ba"
    assert len(eq) == T.EINSUM_MAX_LEN
    assert OPS["einsum"].rule({"equation": eq}, (M(2, 3),)) == M(3, 2)


def test_einsum_implicit_and_broadcast_match_torch():
    for eq, shapes, want in [
        ("ba,Ab", [(2, 3), (5, 2)], (5, 3)),  # implicit output: sorted, uppercase first
        ("b...a", [(5, 2, 3)], (2, 3, 5)),  # ellipsis first
        ("ij,jk->ik", [(2, 1), (3, 4)], (2, 4)),  # size-1 label broadcasts
        ("...i,...i->...", [(2, 1, 3), (4, 3)], (2, 4)),
        ("ii->i", [(3, 3)], (3,)),
        ("i,i->", [(3,), (3,)], ()),
    ]:
        got = OPS["einsum"].rule({"equation": eq}, tuple(M(*s) for s in shapes))
        real = torch.einsum(eq, *[torch.zeros(s) for s in shapes])
        assert got == M(*want) == meta_of(real), (eq, got)
    with pytest.raises(ShapeMismatch, match="repeated in operand 0"):
        OPS["einsum"].rule({"equation": "ii->i"}, (M(3, 1),))


def test_expand_to_a_trillion_elements_allocates_nothing():
    rule = OPS["expand"].rule
    tracemalloc.start()
    try:
        out = rule({"size": [10**6, 10**6]}, (M(1, 1),))
        out2 = rule({"size": [10**4, -1, 10**8]}, (M(1, 1),))
        out3 = OPS["expand_as"].rule({}, (M(1), M(10**6, 10**6)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out == M(10**6, 10**6) and math.prod(out.shape) == 10**12
    assert out2 == M(10**4, 1, 10**8)
    assert out3 == M(10**6, 10**6)
    assert peak < 200_000, peak
    # and the same shape from torch (a stride-0 view: no memory either)
    assert tuple(torch.zeros(1, 1).expand(10**6, 10**6).shape) == out.shape


def test_huge_shapes_stay_arithmetic():
    big = M(10**6, 10**6, 10**3)
    assert OPS["reshape"].rule({"shape": [-1, 10**3]}, (big,)) == M(10**12, 10**3)
    assert OPS["sum"].rule({"dim": [0, 1]}, (big,)) == M(10**3)
    assert OPS["matmul"].rule({}, (big, M(10**3, 7))) == M(10**6, 10**6, 7)
    with pytest.raises(ShapeMismatch, match="64-bit"):
        OPS["expand"].rule({"size": [2**63]}, (M(1),))


@pytest.mark.parametrize(
    "shape, target, fragment",
    [
        ((2, 3), [4, 4], "invalid for an input of 6 elements"),
        ((2, 3), [-1, -1], "only one dimension"),
        ((2, 3), [-1, 4], "invalid for an input of 6 elements"),
        ((0, 3), [0, -1], "ambiguous"),
        ((2, 3), [-2, -3], "invalid size -2"),
        ((2, 3), [], "invalid for an input of 6 elements"),
    ],
)
def test_impossible_reshape(shape, target, fragment):
    for name, key in (("reshape", "shape"), ("view", "size")):
        with pytest.raises(ShapeMismatch, match=fragment):
            OPS[name].rule({key: target}, (M(*shape),))
        with pytest.raises(RuntimeError):
            OPS[name].fn(torch.zeros(shape), **{key: target})


def test_input_kinds_and_counts():
    with pytest.raises(ShapeMismatch, match="expects 2 inputs, got 1"):
        OPS["matmul"].rule({}, (M(2, 2),))
    with pytest.raises(ShapeMismatch, match="expects 3 to 4 inputs, got 2"):
        OPS["scaled_dot_product_attention"].rule({}, (M(2, 2), M(2, 2)))
    with pytest.raises(ShapeMismatch, match="tuple of 2 values, not a tensor"):
        OPS["relu"].rule({}, ((M(2), M(2)),))
    with pytest.raises(ShapeMismatch, match="picks an element of a tuple"):
        OPS["getitem"].rule({"index": 0}, (M(2),))
    with pytest.raises(ShapeMismatch, match="unknown dtype"):
        OPS["relu"].rule({}, (TensorMeta((2,), "float99"),))
    with pytest.raises(ShapeMismatch, match="invalid shape"):
        OPS["relu"].rule({}, (TensorMeta((2, -1), "float32"),))
    with pytest.raises(ShapeMismatch, match="None"):
        OPS["relu"].rule({}, (None,))
    # an omitted optional attn_mask may be passed as None
    q = M(2, 3, 4)
    assert OPS["scaled_dot_product_attention"].rule({}, (q, q, q, None)) == q
    # getitem on split's nested output
    parts = OPS["split"].rule({"split_size_or_sections": [1, 2]}, (M(3, 4),))
    assert parts == (M(1, 4), M(2, 4))
    assert OPS["getitem"].rule({"index": -1}, (parts,)) == M(2, 4)


def test_messages_read_after_the_op_prefix():
    cases = [
        ("transpose", {"dim0": 0, "dim1": 5}, (M(2, 3),)),
        ("cat", {"dim": 1}, (M(2, 3), M(3, 3))),
        ("add", {}, (M(2, 3), M(4, 3))),
        ("layer_norm", {"normalized_shape": [4]}, (M(2, 3),)),
        ("scaled_dot_product_attention", {}, (M(2, 3, 4), M(2, 5, 8), M(2, 5, 6))),
        ("interpolate", {"size": 4}, (M(2, 3),)),
    ]
    for name, args, inputs in cases:
        with pytest.raises(ShapeMismatch) as err:
            OPS[name].rule(args, inputs)
        msg = str(err.value)
        line = f"op '{name}' got input shapes {[list(i.shape) for i in inputs]}: {msg}"
        assert msg[0].islower() and "\n" not in msg and len(msg) < 200, line


def test_defaults_come_from_the_signature():
    x = M(2, 3, 4)
    assert OPS["flatten"].rule({}, (x,)) == M(2, 12)  # start_dim 1, as nn.Flatten
    assert OPS["softmax"].rule({}, (x,)) == x
    assert OPS["sum"].rule({}, (x,)) == M()
    assert OPS["sum"].rule({"keepdim": True}, (x,)) == M(1, 1, 1)
    assert OPS["chunk"].rule({"chunks": 2}, (x,)) == (M(1, 3, 4), M(1, 3, 4))
    # defaults already applied are fine too
    assert OPS["flatten"].rule({"start_dim": 0, "end_dim": -1}, (x,)) == M(24)
    with pytest.raises(TypeError, match="missing required"):
        OPS["transpose"].rule({"dim0": 0}, (x,))
    with pytest.raises(TypeError, match="unknown argument"):
        OPS["transpose"].rule({"dim0": 0, "dim1": 1, "dims": 2}, (x,))


def test_dtype_promotion_common_cases():
    rt = T.result_type
    assert rt(M(2), M(2)) == "float32"
    assert rt(M(2), M(2, dtype="float64")) == "float64"
    assert (
        rt(M(2), M(dtype="float64")) == "float32"
    )  # a 0-d tensor does not promote a dimensioned one
    assert (
        rt(M(2, dtype="int64"), M(dtype="float64")) == "float64"
    )  # ... unless of a higher category
    assert rt(M(2, dtype="int64"), 1.5) == "float32"
    assert rt(M(2, dtype="bool"), M(2, dtype="int64")) == "int64"
    assert OPS["lt"].rule({}, (M(2), M(2))) == M(2, dtype="bool")
    assert OPS["arange"].rule({"dim": 1}, (M(2, 5),)) == M(5, dtype="int64")
    assert OPS["masked_fill"].rule({"value": 1.5}, (M(2, dtype="int64"), M(2, dtype="bool"))) == M(
        2, dtype="int64"
    )
    assert OPS["div"].rule({}, (M(2, dtype="int64"), M(2, dtype="int64"))) == M(2)
    assert OPS["masked_fill"].rule({"value": float("-inf")}, (M(2), M(2, 2, dtype="bool"))) == M(
        2, 2
    )


# ops of the language before this set, named after what they do rather than a torch function
_OWN_NAMES = ("getitem", "slice", "add_scalar", "mul_scalar", "center", "halve_while_abs_sum_gt")


def test_rules_pickle_and_names_follow_torch():
    restored = pickle.loads(pickle.dumps({name: op.rule for name, op in OPS.items()}))
    assert sorted(restored) == ALL_OPS
    assert restored["transpose"]({"dim0": 0, "dim1": 1}, (M(2, 3),)) == M(3, 2)
    for name, opdef in OPS.items():
        assert "<" not in opdef.fn.__qualname__  # no lambdas/closures
        if name not in _OWN_NAMES:
            assert any(hasattr(ns, name) for ns in (torch, torch.Tensor, F)), name


def test_every_builtin_op_has_an_argument_model_and_a_rule():
    for name in ALL_OPS:
        entry = REGISTRY.get(name)
        assert isinstance(entry.infer, T.OpShapeRule), name
        assert issubclass(entry.args_model, BaseModel), name
