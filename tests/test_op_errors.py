"""Errors of the op surface through the pipeline: each a ModelFactoryError with its config path.

Unknown ops, malformed or oversized einsum equations, impossible reshapes,
integers torch cannot take, and outputs of 10**12 elements (which the ops'
shape rules compute without allocating, and the shape check refuses).
"""

from __future__ import annotations

import textwrap
import tracemalloc

import pytest

import modelfactory as mf
from modelfactory.registry.ops import EINSUM_MAX_LEN


def composite(*steps, shape=(2, 3)):
    return {"input": {"shape": list(shape)}, "network": {"name": "Ops", "forward": list(steps)}}


def problems(spec):
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.check(spec)
    return info.value.problems


def only(spec):
    found = problems(spec)
    assert len(found) == 1, found
    return found[0]


def test_unknown_op_names_close_ops_and_how_to_register_one():
    p = only(composite({"op": "tranpose", "dim0": 0, "dim1": 1}))
    assert p.path == "network.forward[0].op"
    assert p.message.startswith("unknown op 'tranpose'. Did you mean 'transpose'?")
    assert "@modelfactory.register_op in a plugin module" in p.message
    assert "`modelfactory ls ops`" in p.message
    p = only(composite({"op": "frobnicate_everything"}))
    assert "No op has a similar name" in p.message or "Did you mean" in p.message
    assert "register_op" in p.message


def test_unknown_op_arguments_get_a_did_you_mean():
    found = {
        p.path: p.message for p in problems(composite({"op": "transpose", "dim0": 0, "dim_1": 1}))
    }
    assert (
        "unknown argument 'dim_1' for op transpose. Did you mean 'dim1'?"
        in found["network.forward[0].dim_1"]
    )
    assert found["network.forward[0].dim1"] == "missing required argument 'dim1' for op transpose"


@pytest.mark.parametrize(
    "equation, fragment",
    [
        ("ij,jk->ik->k", "'-' and '>' may only appear together, once, as '->'"),
        ("__import__('os').system('x')", "only letters, ',', '->' and '...' are allowed"),
        ("i.j->ij", "'.' may only appear as a single '...'"),
        ("ij->i,j", "the output (after '->') cannot contain ','"),
        ("a" * 10**6, f"einsum equation is 1000000 characters long; the limit is {EINSUM_MAX_LEN}"),
    ],
)
def test_malformed_or_oversized_einsum_is_refused_at_validation(equation, fragment):
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.validate(composite({"op": "einsum", "in": ["x", "x"], "equation": equation}))
    (p,) = info.value.problems
    assert p.path == "network.forward[0].equation"
    assert fragment in p.message
    assert len(p.message) < 500  # a megabyte equation is not echoed back


def test_einsum_that_does_not_fit_its_inputs_is_a_shape_error():
    p = only(composite({"op": "einsum", "in": ["x", "x"], "equation": "ij,jk->ik"}))
    assert p.path == "network.forward[0]"
    assert "op 'einsum' got input shapes [[2, 3], [2, 3]]" in p.message
    assert "einsum subscript 'j' has size 3 in operand 0 but 2 in operand 1" in p.message


@pytest.mark.parametrize(
    "shape, fragment",
    [
        ([4, 4], "shape [4, 4] is invalid for an input of 6 elements"),
        ([-1, -1], "only one dimension of shape [-1, -1] can be -1"),
        ([-2, 3], "invalid size -2 in shape [-2, 3]"),
    ],
)
def test_impossible_reshape_is_a_shape_error_at_its_step(tmp_path, shape, fragment):
    path = tmp_path / "reshape.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            input: {{shape: [2, 3]}}
            network:
              name: Ops
              forward:
                - relu
                - {{op: reshape, shape: {shape}}}
            """
        )
    )
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.check(path)
    (p,) = info.value.problems
    assert p.path == "network.forward[1]"
    assert p.message == f"op 'reshape' got input shapes [[2, 3]]: {fragment}"
    assert p.source == f"{path}:6:7"


@pytest.mark.parametrize(
    "step, where",
    [
        ({"op": "pad", "pad": [2**70, 0]}, "network.forward[0].pad[0]"),
        ({"op": "expand", "size": [2, 2**64]}, "network.forward[0].size[1]"),
        ({"op": "reshape", "shape": [-(2**64)]}, "network.forward[0].shape[0]"),
        ({"op": "interpolate", "size": 2**63}, "network.forward[0].size"),
        ({"op": "interpolate", "scale_factor": float("inf")}, "network.forward[0].scale_factor"),
        ({"op": "interpolate", "scale_factor": -2.0}, "network.forward[0].scale_factor"),
        ({"op": "chunk", "chunks": 0}, "network.forward[0].chunks"),
        ({"op": "dropout", "p": 1.5}, "network.forward[0].p"),
    ],
)
def test_arguments_torch_cannot_take_are_refused_at_validation(step, where):
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.validate(composite(step))
    assert [p.path for p in info.value.problems] == [where]


def test_attention_takes_three_or_four_inputs():
    p = only(composite({"op": "scaled_dot_product_attention", "in": ["x", "x"]}))
    assert p.message == (
        "op 'scaled_dot_product_attention' takes 3 to 4 input(s), found 2: ['x', 'x']"
    )


def test_a_tensor_where_a_tuple_is_expected_and_back():
    p = only(composite({"op": "getitem", "index": 0}))
    assert p.path == "network.forward[0]"
    assert "getitem" in p.message
    p = only(composite({"op": "chunk", "chunks": 2, "dim": 1}, "relu"))
    assert p.path == "network.forward[1]"
    assert p.message.startswith("op 'relu' got input shapes [[2, 2], [2, 1]]")


@pytest.mark.parametrize(
    "steps, at, shape",
    [
        (
            [{"op": "reshape", "shape": [6, 1]}, {"op": "expand", "size": [6, 10**12]}],
            "network.forward[1]",
            [6, 10**12],
        ),
        ([{"op": "pad", "pad": [10**12, 10**12]}], "network.forward[0]", [2, 2 * 10**12 + 3]),
        (
            [
                {"op": "reshape", "shape": [1, 1, 6]},
                {"op": "interpolate", "scale_factor": 1e12},
            ],
            "network.forward[1]",
            [1, 1, 6 * 10**12],
        ),
    ],
    ids=["expand", "pad", "interpolate"],
)
def test_huge_outputs_are_refused_before_anything_allocates(steps, at, shape):
    """The op's rule gives the output's shape without allocating; the check refuses it."""
    spec = composite(*steps)
    mf.validate(spec)
    tracemalloc.start()
    try:
        with pytest.raises(mf.limits.LimitError) as info:
            mf.check(spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (p,) = info.value.problems
    assert p.path == at
    assert f"would be a tensor of shape {shape}" in p.message
    assert peak < 50 * 2**20
