"""Property test: random stacks of ops in a composite's forward; the shape rules agree with the real ops.

Each example draws a chain of forward steps, each valid for the shape the
previous one produced, writes them as a model file's composite, and checks
that three answers agree on the output's shape and dtype:

- the ops' registered shape rules, composed step by step (no tensor anywhere);
- the model built from the file and run on a real CPU input;
- the pipeline's shape check (``modelfactory.check``), which evaluates the
  spec with those rules (so this also checks how it threads values, tuples and
  names through a composite).

Examples: OP_STACKS_EXAMPLES (default 30), derandomized.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import modelfactory as mf
from modelfactory.builder.forward import make_input
from modelfactory.registry import OPS
from modelfactory.registry.symbolic import ShapeMismatch, TensorMeta

_N = int(os.environ.get("OP_STACKS_EXAMPLES", "30"))
MAX_ELEMENTS = 4096


class Chain:
    """The steps drawn so far, and the rule-derived meta of every value."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.steps: list[dict[str, Any]] = []
        self.metas: dict[str, Any] = {"x": TensorMeta(shape, "float32")}
        self.current = "x"

    @property
    def meta(self) -> TensorMeta:
        return self.metas[self.current]

    def add(self, op: str, inputs: list[str] | None = None, **args: Any) -> str:
        """Append ``{op, in, out, **args}``; its output meta comes from the op's shape rule."""
        inputs = inputs or [self.current]
        name = f"v{len(self.steps)}"
        self.metas[name] = OPS.get(op).infer(args, tuple(self.metas[i] for i in inputs))
        self.steps.append({"op": op, "in": inputs, "out": name, **args})
        self.current = name
        return name


def _dims(draw, nd: int, extra: int = 0) -> int:
    n = nd + extra
    return draw(st.integers(-n, n - 1))


def _regroup(draw, sizes: tuple[int, ...]) -> list[int]:
    out: list[int] = []
    for s in draw(st.permutations(list(sizes))):
        if out and draw(st.booleans()):
            out[-1] *= s
        else:
            out.append(s)
    if draw(st.booleans()):
        out.insert(draw(st.integers(0, len(out))), 1)
    if out and draw(st.booleans()):
        out[draw(st.integers(0, len(out) - 1))] = -1
    return out or [1]


def _step(draw, c: Chain) -> None:
    """Draw one op (or a short idiom of ops) valid for the current value, and append it."""
    x = c.meta
    nd, shape = x.ndim, x.shape
    kinds = ["reshape", "view", "flatten", "permute", "transpose", "unsqueeze", "squeeze"]
    kinds += ["expand", "split", "chunk", "cat", "stack", "select", "narrow", "slice"]
    kinds += ["einsum", "softmax", "norm", "mask", "arith", "unary", "reduce", "positions"]
    kinds += ["pad"]
    if nd >= 2:
        kinds += ["matmul", "sdpa", "tri"]
    if nd == 3:
        kinds += ["bmm", "interpolate"]
    kind = draw(st.sampled_from(kinds))
    prev = c.current
    if kind in ("reshape", "view"):
        if kind == "view":
            c.add("contiguous")
            c.add("view", size=_regroup(draw, shape))
        else:
            c.add("reshape", shape=_regroup(draw, shape))
    elif kind == "flatten":
        n = max(nd, 1)
        start, end = sorted([draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))])
        c.add("flatten", start_dim=start, end_dim=end - n * draw(st.booleans()))
    elif kind == "permute":
        c.add("permute", dims=list(draw(st.permutations(range(nd)))))
    elif kind == "transpose" and nd:
        c.add("transpose", dim0=_dims(draw, nd), dim1=_dims(draw, nd))
    elif kind == "unsqueeze":
        c.add("unsqueeze", dim=_dims(draw, nd, extra=1))
    elif kind == "squeeze":
        c.add("squeeze", dim=None if not nd or draw(st.booleans()) else _dims(draw, nd))
    elif kind == "expand":
        size = [
            draw(st.integers(1, 3)) if s == 1 else draw(st.sampled_from([s, -1])) for s in shape
        ]
        c.add("expand", size=[draw(st.integers(1, 2))] * draw(st.integers(0, 1)) + size)
    elif kind in ("split", "chunk") and nd:
        d = _dims(draw, nd)
        if kind == "split":
            parts = c.add("split", split_size_or_sections=draw(st.integers(1, 3)), dim=d)
        else:
            parts = c.add("chunk", chunks=draw(st.integers(1, 3)), dim=d)
        count = len(c.metas[parts])
        c.add("getitem", [parts], index=draw(st.integers(-count, count - 1)))
    elif kind in ("cat", "stack"):
        extra = 1 if kind == "stack" else 0
        if nd or extra:
            c.add(kind, [c.current, c.current], dim=_dims(draw, nd, extra=extra))
    elif kind == "select" and nd:
        d = _dims(draw, nd)
        c.add("select", dim=d, index=draw(st.integers(-shape[d], shape[d] - 1)))
    elif kind == "narrow" and nd:
        d = _dims(draw, nd)
        start = draw(st.integers(0, shape[d] - 1))
        c.add("narrow", dim=d, start=start, length=draw(st.integers(1, shape[d] - start)))
    elif kind == "slice" and nd:
        start = draw(st.none() | st.integers(-4, 4))
        c.add("slice", dim=_dims(draw, nd), start=start, step=draw(st.integers(1, 2)))
    elif kind == "einsum" and nd:
        if nd >= 2 and draw(st.booleans()):
            c.add("einsum", equation="...ij->...ji")
        else:
            c.add("einsum", [c.current, c.current], equation="...i,...i->...")
    elif kind == "softmax" and nd:
        c.add(draw(st.sampled_from(["softmax", "log_softmax"])), dim=_dims(draw, nd))
    elif kind == "norm" and nd:
        c.add(draw(st.sampled_from(["layer_norm", "rms_norm"])), normalized_shape=[shape[-1]])
    elif kind == "mask":
        mask = c.add("gt", [prev], other=0.0)
        if draw(st.booleans()):
            c.add("masked_fill", [prev, mask], value=draw(st.sampled_from([0.0, -1.5])))
        else:
            c.add("where", [mask, prev, prev])
    elif kind == "arith":
        op = draw(st.sampled_from(["add", "mul", "sub", "div"]))
        if draw(st.booleans()):
            c.add(op, [c.current], other=draw(st.sampled_from([2.0, -0.5])))
        else:
            c.add(op, [c.current, c.current])
    elif kind == "unary":
        op = draw(st.sampled_from(["neg", "exp", "cos", "sin", "relu", "gelu", "silu", "tanh"]))
        c.add(op)
    elif kind == "reduce" and nd:
        dims = sorted(set(draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd))))
        op = draw(st.sampled_from(["sum", "mean", "amax"]))
        c.add(op, dim=dims if len(dims) > 1 else dims[0], keepdim=draw(st.booleans()))
    elif kind == "positions" and nd:
        positions = c.add("arange", dim=-1)
        c.add("add", [prev, positions])
    elif kind == "pad" and nd:
        c.add("pad", pad=[draw(st.integers(0, 2)), draw(st.integers(0, 2))], value=0.5)
    elif kind == "matmul":
        t = c.add("transpose", dim0=-2, dim1=-1)
        c.add("matmul", [prev, t])
    elif kind == "sdpa":
        c.add(
            "scaled_dot_product_attention",
            [c.current] * 3,
            is_causal=draw(st.booleans()),
            scale=draw(st.none() | st.just(0.5)),
        )
    elif kind == "tri":
        c.add(draw(st.sampled_from(["tril", "triu"])), diagonal=draw(st.integers(-1, 1)))
    elif kind == "bmm":
        t = c.add("transpose", dim0=1, dim1=2)
        c.add("bmm", [prev, t])
    elif kind == "interpolate":
        c.add("interpolate", size=draw(st.integers(1, 5)), mode="nearest")


@st.composite
def chains(draw) -> Chain:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    chain = Chain(shape)
    for _ in range(draw(st.integers(1, 6))):
        snapshot = (list(chain.steps), dict(chain.metas), chain.current)
        try:
            _step(draw, chain)
        except ShapeMismatch:  # an edge the drawing did not foresee (an emptied dim): skip it
            chain.steps, chain.metas, chain.current = snapshot
            continue
        meta = chain.meta
        # keep values small (cat and expand grow them) and floating (arange is int64)
        if meta.numel > MAX_ELEMENTS or meta.ndim > 5:
            break
    return chain


def _unused_to_output(chain: Chain) -> list[str]:
    """Every value must be used: the ones no later step reads become extra outputs."""
    used = {name for step in chain.steps for name in step["in"]}
    return [s["out"] for s in chain.steps if s["out"] not in used]


@settings(
    max_examples=_N,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(chain=chains())
def test_rules_agree_with_real_ops_and_the_shape_check(chain):
    outputs = _unused_to_output(chain)
    event(f"{len(chain.steps)} steps")
    for step in chain.steps:
        event(step["op"])
    if "x" not in {n for s in chain.steps for n in s["in"]}:
        outputs = ["x", *outputs]
    shape = list(chain.metas["x"].shape)
    spec = {
        "input": {"shape": shape, "dist": "randn"},
        "network": {"name": "Stack", "forward": chain.steps, "outputs": outputs},
    }
    expected = [chain.metas[name] for name in outputs]

    checked = mf.check(spec)
    assert checked.output_shapes == [list(m.shape) for m in expected], chain.steps

    model = mf.build(checked, seed=0)
    out = model(make_input(checked.spec.input, seed=0))
    outs = out if isinstance(out, tuple) else (out,)
    real = [TensorMeta(tuple(o.shape), str(o.dtype)) for o in outs]
    assert real == expected, chain.steps
