"""Parameters that compute: the expression grammar (data, never eval), expressions in blocks, when: conditions."""

from __future__ import annotations

import re
import textwrap

import pytest
import torch

import modelfactory as mf
from modelfactory.errors import SpecError
from modelfactory.spec.expr import (
    MAX_EXPR_DEPTH,
    MAX_EXPR_LENGTH,
    MAX_EXPR_TOKENS,
    ExprError,
    evaluate,
    names,
    parse,
)

ENV = {"a": 3, "b": 4, "s": 1, "p": 0.5, "act": "relu", "flag": True}


# --- the grammar -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a * b + 1", 13),
        ("a + b * 2", 11),
        ("(a + b) * 2", 14),
        ("a // 2", 1),
        ("a / 2", 1.5),
        ("a - b - 1", -2),
        ("-a + -(-b)", 1),
        ("min(a, b, 2) * max(a, b)", 8),
        ("p * 2", 1.0),
        ("1e3 // 10", 100.0),
        ("s == 1 and a != b", True),
        ("not flag or a < b", True),
        ("a >= 3 and a <= 3 and a > 2", True),
        ("act == 'relu'", True),
        ("true", True),
        ("false or a == 3", True),
    ],
)
def test_expressions_evaluate_as_python_would(text, value):
    result = evaluate(text, ENV)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a / 0", "division by zero"),
        ("a // (b - 4)", "division by zero"),
        ("a +", "ends too early"),
        ("a b", "unexpected 'b'"),
        ("a ** 2", "unexpected '*'"),
        ("a.real", "unexpected character '.'"),
        ("a[0]", "unexpected character '['"),
        ("__import__('os').system('true')", "unexpected character '.'"),
        ("f(a)", "unexpected '('"),
        ("x + 1", "unknown parameter 'x'"),
        ("a < b < 5", "cannot be chained"),
        ("flag + 1", "'+' needs numbers, found true/false"),
        ("act * 2", "'*' needs numbers, found text 'relu'"),
        ("a == 'relu'", "cannot compare number 3 with text 'relu'"),
        ("a and flag", "'and' needs true/false"),
        ("1e400", "not a finite number"),
        ("9" * 20, "overflow"),
        ("", "empty"),
        ("min()", "unexpected ')'"),
    ],
)
def test_bad_expressions_are_clean_errors(text, message):
    with pytest.raises(ExprError, match=re.escape(message)):
        evaluate(text, ENV)


def test_intermediate_values_are_bounded():
    # 2**30 * 2**30 would be an exact Python int; every intermediate is bounded instead
    with pytest.raises(ExprError, match="overflow"):
        evaluate("a * a * a", {"a": 2**30})
    with pytest.raises(ExprError, match="overflow"):
        evaluate("a - 1", {"a": 2**60})  # a parameter value beyond the bound, too


def test_the_text_is_bounded_in_length_tokens_and_depth():
    with pytest.raises(ExprError, match=f"over the limit of {MAX_EXPR_LENGTH}"):
        parse("1" + " + 1" * MAX_EXPR_LENGTH)
    with pytest.raises(ExprError, match=f"more than {MAX_EXPR_TOKENS} tokens"):
        parse("+".join(["1"] * (MAX_EXPR_TOKENS // 2 + 1)))
    with pytest.raises(ExprError, match=f"deeper than {MAX_EXPR_DEPTH}"):
        parse("(" * (MAX_EXPR_DEPTH + 1) + "1" + ")" * (MAX_EXPR_DEPTH + 1))
    with pytest.raises(ExprError, match=f"deeper than {MAX_EXPR_DEPTH}"):
        parse("-" * (MAX_EXPR_DEPTH + 1) + "1")
    assert evaluate("(" * MAX_EXPR_DEPTH + "1" + ")" * MAX_EXPR_DEPTH, {}) == 1


def test_names_lists_what_an_expression_reads():
    assert names(parse("min(in_ch * expand, 8) // heads + in_ch")) == [
        "in_ch",
        "expand",
        "heads",
        "in_ch",
    ]


def test_expressions_never_reach_eval(monkeypatch):
    import builtins

    def refuse(*args, **kwargs):
        raise AssertionError("eval/exec/compile must not be called")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, refuse)
    assert evaluate("a * b + min(a, 2)", ENV) == 14


# --- expressions in blocks ---------------------------------------------------------------
def write(tmp_path, text):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    return path


MLP = """\
input: {shape: [2, 16]}
blocks:
  MLP:
    params: {dim: null, expand: 4, hidden: {expr: "dim * expand"}}
    body:
      - {type: Linear, in_features: {param: dim}, out_features: {param: hidden}}
      - GELU
      - {type: Linear, in_features: {param: hidden}, out_features: {expr: "max(dim // 2, 1)"}}
network:
  - {block: MLP, with: {dim: 16}}
  - {block: MLP, with: {dim: 8, expand: 2}}
"""


def test_parameters_combine_and_defaults_compute_from_earlier_ones(tmp_path):
    model = mf.build(write(tmp_path, MLP))
    assert (model[0][0].out_features, model[0][2].out_features) == (64, 8)
    assert (model[1][0].in_features, model[1][0].out_features) == (8, 16)
    assert model(torch.rand(2, 16)).shape == (2, 4)
    # the resolved spec holds plain numbers
    assert mf.check(write(tmp_path, MLP)).spec.network[0][0].args["out_features"] == 64


def test_placeholders_inside_list_arguments(tmp_path):
    path = write(
        tmp_path,
        """\
        input: {shape: [2, 12]}
        blocks:
          Unflat:
            params: {c: null}
            body: {type: Unflatten, dim: 1, unflattened_size: [{param: c}, {expr: "12 // c"}, 1]}
        network: {block: Unflat, with: {c: 3}}
        """,
    )
    assert mf.build(path)(torch.rand(2, 12)).shape == (2, 3, 4, 1)


def test_with_values_compute_from_the_outer_block(tmp_path):
    path = write(
        tmp_path,
        """\
        input: {shape: [2, 8]}
        blocks:
          Lin:
            params: {i: null, o: null}
            body: {type: Linear, in_features: {param: i}, out_features: {param: o}}
          Pair:
            params: {w: null}
            body:
              - {block: Lin, with: {i: {param: w}, o: {expr: "w * 2"}}}
              - {block: Lin, with: {i: {expr: "w * 2"}, o: {param: w}}}
        network: {block: Pair, with: {w: 8}}
        """,
    )
    model = mf.build(path)
    assert model[0].out_features == 16 and model[1].in_features == 16


def test_expression_problems_point_at_the_line_that_wrote_them(tmp_path):
    path = write(
        tmp_path,
        """\
        input: {shape: [2, 16]}
        blocks:
          Dense:
            params: {width: null, div: 1, big: 1}
            body:
              - {type: Linear, in_features: 16, out_features: {expr: "width // div"}}
              - {type: Linear, in_features: 16, out_features: {expr: "big * big * big * big"}}
        network:
          - {block: Dense, with: {width: 8, div: 0, big: 100000}}
        """,
    )
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.build(path)
    first, second = info.value.problems
    assert first.path == "blocks.Dense.body[0].out_features"
    assert first.message.startswith("division by zero (8 // 0)")
    assert "(in the instance at network[0][0].out_features)" in first.message
    assert first.source == f"{path}:6:41"
    assert second.message.startswith("overflow: 1e+20 is beyond the limit")
    assert second.source == f"{path}:7:41"


def test_expressions_are_checked_at_validation(tmp_path):
    path = write(
        tmp_path,
        """\
        input: {shape: [2, 16]}
        blocks:
          Dense:
            params: {width: null, out: {expr: "later * 2"}, later: 1}
            body:
              - {type: Linear, in_features: 16, out_features: {expr: "widht * 2"}}
              - {type: Dropout, p: {expr: "width +"}}
              - {type: Linear, in_features: 16, out_features: [{expr: "1 +* 2"}]}
        network:
          - {block: Dense, with: {width: 8}}
          - {type: Linear, in_features: 16, out_features: {expr: "16 * 2"}}
        """,
    )
    with pytest.raises(SpecError) as info:
        mf.validate(path)
    found = {p.path: p.message for p in info.value.problems}
    assert "reads 'later', which is no parameter of this block" in found["blocks.Dense.params.out"]
    assert "declared before it" in found["blocks.Dense.params.out"]
    assert "Did you mean 'width'?" in found["blocks.Dense.body[0].out_features"]
    assert "does not parse: the expression ends too early" in found["blocks.Dense.body[1].p"]
    assert "does not parse" in found["blocks.Dense.body[2].out_features[0]"]
    assert found["network[1].out_features"] == (
        "{expr: ...} is only allowed inside a block definition that declares params"
    )


# --- when: ---------------------------------------------------------------------------------
INVERTED_RESIDUAL = """\
input: {shape: [2, 8, 6, 6]}
blocks:
  IR:
    params: {inp: null, oup: null, stride: 1, t: 6}
    body:
      name: InvertedResidual
      children:
        conv:
          - {type: Conv2d, in_channels: {param: inp}, out_channels: {expr: "inp * t"},
             kernel_size: 1, when: "t != 1"}
          - {type: Conv2d, in_channels: {expr: "inp * t"}, out_channels: {param: oup},
             kernel_size: 3, padding: 1, stride: {param: stride}}
          - {type: BatchNorm2d, num_features: {param: oup}}
      forward:
        - {call: conv, out: y}
        - {op: add, in: [x, y], when: "stride == 1 and inp == oup"}
network:
  - {block: IR, with: {inp: 8, oup: 8, t: 1}}
  - {block: IR, with: {inp: 8, oup: 16, stride: 2}}
"""


def test_when_keeps_a_child_or_step_only_where_the_condition_holds(tmp_path):
    model = mf.build(write(tmp_path, INVERTED_RESIDUAL)).eval()
    first, second = model
    # t == 1: no expansion conv, so the list renumbers (as torchvision's InvertedResidual does)
    assert [type(m).__name__ for m in first.conv] == ["Conv2d", "BatchNorm2d"]
    assert [type(m).__name__ for m in second.conv] == ["Conv2d", "Conv2d", "BatchNorm2d"]
    assert list(first.state_dict())[:2] == ["conv.0.weight", "conv.0.bias"]
    x = torch.rand(2, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(first(x), x + first.conv(x))  # the residual is there
        torch.testing.assert_close(second(x), second.conv(x))  # and here it is not


def test_when_problems(tmp_path):
    path = write(
        tmp_path,
        """\
        input: {shape: [2, 8]}
        blocks:
          Body:
            params: {enabled: true, n: 1}
            body: {type: ReLU, when: "enabled"}
          Odd:
            params: {n: 1}
            body: [{type: ReLU, when: "n + 1"}]
        network:
          - {block: Body, with: {enabled: false}}
          - {block: Odd}
        """,
    )
    with pytest.raises(SpecError) as info:
        mf.build(path)
    messages = [str(p) for p in info.value.problems]
    assert any(
        m.startswith("blocks.Body.body.when: 'when' is false here, but nothing can take")
        and "(in the instance at network[0])" in m
        for m in messages
    ), messages
    assert any("the condition 'n + 1' must be true or false, found 2" in m for m in messages), (
        messages
    )


def test_when_outside_a_block_with_params_is_an_error():
    data = {
        "input": {"shape": [2, 8]},
        "network": [{"type": "ReLU", "when": "x == 1"}, {"block": "B", "when": "true"}],
        "blocks": {"B": ["ReLU"]},
    }
    with pytest.raises(SpecError) as info:
        mf.validate(data)
    assert [p.path for p in info.value.problems] == ["network[0].when", "network[1].when"]
    assert all(
        "'when:' is only allowed inside a block definition that declares params" in p.message
        for p in info.value.problems
    )
