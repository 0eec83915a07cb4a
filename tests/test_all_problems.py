"""Every problem at once: a failing part of a model file hides no problem of another part."""

from __future__ import annotations

import pytest

import modelfactory as mf
from modelfactory.errors import SpecError

LINEAR = {"type": "Linear", "in_features": 4, "out_features": 4}


def found(data) -> list[str]:
    with pytest.raises(SpecError) as info:
        mf.validate(data)
    return [str(p) for p in info.value.problems]


def spec(network, **extra):
    return {"input": {"shape": [2, 4]}, "network": network, **extra}


def test_op_argument_errors_hide_neither_block_names_nor_the_data_flow():
    data = spec(
        ["A", {"block": "Missing"}],
        blocks={
            "A": {
                "children": {"l": LINEAR},
                "forward": [{"op": "softmax", "dimm": 1}, {"call": "l", "in": "zz"}],
            }
        },
    )
    problems = found(data)
    assert any(p.startswith("blocks.A.forward[0].dimm: unknown argument 'dimm'") for p in problems)
    assert any(p.startswith("blocks.A.forward[1].in: input 'zz' is not defined") for p in problems)
    assert any(p.startswith("network[1]: undefined block 'Missing'") for p in problems)


def test_a_broken_child_hides_no_problem_of_the_forward():
    data = spec({"children": {"l": {"type": "Linaer"}}, "forward": [{"call": "l", "in": "zz"}]})
    problems = found(data)
    assert problems[0].startswith("network.children.l: unknown layer type 'Linaer'")
    assert any(p.startswith("network.forward[0].in: input 'zz' is not defined") for p in problems)


@pytest.mark.parametrize(
    ("extra", "network", "expected"),
    [
        (
            {"blocks": {"Linear": ["ReLU"]}},
            [{"type": "Linaer"}],
            "blocks.Linear: block name 'Linear' is also a layer type",
        ),
        (
            {"blocks": {"a": ["b"], "b": ["a"]}},
            [{"type": "Linaer"}],
            "blocks.a: blocks refer to each other in a cycle: a -> b -> a",
        ),
        (
            {"ties": {"a.b": "c.d", "c.d": "a.b"}},
            [{"type": "Linaer"}],
            "ties.a.b: ties form a cycle: a.b -> c.d -> a.b",
        ),
        (
            {},
            [{"params": {"a": 1}, "body": "ReLU"}, {"type": "Linaer"}],
            "network: a block with 'params' is only allowed directly under blocks:",
        ),
        (
            {},
            [
                {"sequential": {"a": {"repeat": 2, "flatten": True, "body": "ReLU"}}},
                {"type": "Linaer"},
            ],
            "network[0].sequential.a.flatten: 'flatten: true' puts a repeat's copies",
        ),
    ],
    ids=["shadowing-block", "block-cycle", "tie-cycle", "misplaced-params", "misplaced-flatten"],
)
def test_checks_across_sections_run_beside_node_errors(extra, network, expected):
    problems = found(spec(network, **extra))
    assert any(p.startswith("network") and "unknown layer type 'Linaer'" in p for p in problems)
    assert any(p.startswith(expected) for p in problems), problems


def test_a_flattened_repeat_in_a_failing_list_is_not_misplaced():
    problems = found(spec([{"repeat": 2, "flatten": True, "body": "ReLU"}, {"type": "Linaer"}]))
    assert len(problems) == 1 and "unknown layer type 'Linaer'" in problems[0]


def test_the_same_problem_is_reported_once():
    data = spec(
        "B",
        blocks={"B": {"children": {"hidden": LINEAR}, "forward": ["hiden"]}},
    )
    problems = found(data)
    assert problems == [
        "blocks.B.forward[0]: unknown child or op 'hiden' in forward step. Did you mean "
        "'hidden'? Children: hidden."
    ]
