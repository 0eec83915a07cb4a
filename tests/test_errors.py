"""Invalid architectures raise one ModelFactoryError listing every problem, each located."""

from __future__ import annotations

import textwrap

import pytest
import torch

import modelfactory as mf
from modelfactory.errors import SpecError


def spec(network, **extra):
    return {"input": {"shape": [2, 20]}, "network": network, **extra}


def problems_of(data) -> list[str]:
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.build(data)
    return [str(p) for p in info.value.problems]


def only_problem(data):
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.build(data)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def test_missing_required_argument():
    p = only_problem(spec([{"type": "Linear", "in_features": 20}]))
    assert p.path == "network[0].out_features"
    assert p.message == "missing required argument 'out_features' for Linear"


def test_wrong_type():
    p = only_problem(spec([{"type": "Linear", "in_features": "twenty", "out_features": 3}]))
    assert p.path == "network[0].in_features"
    assert (
        "invalid value for Linear argument 'in_features': Input should be a valid integer"
        in p.message
    )
    assert "(found 'twenty')" in p.message


def test_negative_size():
    p = only_problem(spec([{"type": "Linear", "in_features": 20, "out_features": -3}]))
    assert p.path == "network[0].out_features"
    assert (
        p.message
        == "invalid value for Linear argument 'out_features': must be a positive size (found -3)"
    )


def test_misspelled_type_name_gets_did_you_mean():
    p = only_problem(spec([{"type": "Lineer", "in_features": 20, "out_features": 3}]))
    assert p.path == "network[0]"
    assert p.message == "unknown layer type 'Lineer'. Did you mean 'Linear'?"


def test_misspelled_bare_layer_name_gets_did_you_mean():
    p = only_problem(spec(["Relu"]))
    assert p.message == "unknown layer type 'Relu'. Did you mean 'ReLU'?"


def test_misspelled_argument_name_gets_did_you_mean():
    # the misspelling is reported, and so is the argument it left missing
    messages = problems_of(spec([{"type": "Linear", "in_features": 20, "out_feature": 3}]))
    assert messages == [
        "network[0].out_features: missing required argument 'out_features' for Linear",
        "network[0].out_feature: unknown argument 'out_feature' for Linear. Did you mean "
        "'out_features'? Linear takes: in_features, out_features, bias.",
    ]


def test_unknown_child_in_forward_step():
    data = spec(
        "B",
        blocks={
            "B": {
                "children": {"hidden": {"type": "Linear", "in_features": 20, "out_features": 4}},
                "forward": ["hiden"],
            }
        },
    )
    p = only_problem(data)
    assert p.path == "blocks.B.forward[0]"
    assert (
        p.message
        == "unknown child or op 'hiden' in forward step. Did you mean 'hidden'? Children: hidden."
    )


def test_undefined_block():
    p = only_problem(spec([{"block": "block3"}], blocks={"block1": ["ReLU"]}))
    assert p.path == "network[0]"
    assert p.message == "undefined block 'block3'. Did you mean 'block1'? Defined blocks: block1."


def test_undefined_shared_module():
    p = only_problem(spec([{"shared": "lin"}]))
    assert p.message == "undefined shared module 'lin'. Declared shared modules: none."


def test_unknown_top_level_key_gets_did_you_mean():
    p = only_problem({"input": {"shape": [2, 20]}, "netwrk": ["ReLU"], "network": ["ReLU"]})
    assert p.path == "netwrk"
    assert p.message.startswith("unknown key 'netwrk'. Did you mean 'network'?")


def test_mapping_that_is_no_node_kind():
    p = only_problem(spec([{"typ": "Linear"}]))
    assert "found a mapping with keys ['typ']. Did you mean 'type'?" in p.message


def test_block_reference_cycle():
    p = only_problem(spec("a", blocks={"a": ["b"], "b": [{"block": "a"}]}))
    assert p.path == "blocks.a"
    assert p.message == "blocks refer to each other in a cycle: a -> b -> a"


def test_forward_value_used_before_defined_and_unused_values():
    data = spec(
        "B",
        blocks={
            "B": {
                "children": {"l": {"type": "Linear", "in_features": 20, "out_features": 20}},
                "forward": [
                    {"call": "l", "out": "h"},
                    {"op": "add", "in": ["h", "g"]},
                    {"call": "l", "in": ["h"], "out": "h"},
                ],
            }
        },
    )
    messages = problems_of(data)
    assert any("input 'g' is not defined before this step" in m for m in messages)
    assert any("value 'h' is already defined" in m for m in messages)
    assert any("the result of step 1 (output of step 1) is never used" in m for m in messages)


def test_op_arity_is_checked():
    data = spec("B", blocks={"B": {"forward": [{"op": "matmul"}]}})
    p = only_problem(data)
    assert p.message == "op 'matmul' takes 2 input(s), found 1: ['x']"


def test_every_problem_is_reported_at_once_with_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            input: {shape: [2, 20]}
            network:
              - {type: Lineer, in_features: 20, out_features: 256}
              - {type: Linear, in_features: 20, out_features: -1}
              - Relu
            """
        )
    )
    with pytest.raises(SpecError) as info:
        mf.build(path)
    err = info.value
    assert len(err.problems) == 3
    assert [p.path for p in err.problems] == ["network[0]", "network[1].out_features", "network[2]"]
    assert err.problems[0].source == f"{path}:3:5"
    assert err.problems[1].source == f"{path}:4:37"
    assert err.problems[2].source == f"{path}:5:5"
    assert str(err).startswith(f"invalid model spec in {path}: 3 problems")


def test_invalid_yaml_reports_line():
    with pytest.raises(
        SpecError, match=r"bad\.yaml:\d+:\d+: invalid YAML: did not find expected ',' or ']'"
    ):
        from modelfactory.spec.yaml_reader import load_yaml_text

        load_yaml_text("input: {shape: [2, 20]}\nnetwork: [ReLU\n", "bad.yaml")


def test_torch_constructor_failure_names_the_layer_path():
    with pytest.raises(
        mf.ModelFactoryError,
        match=r"network\[0\]: MultiheadAttention\(embed_dim=10, num_heads=3\) failed: embed_dim must be divisible by num_heads",
    ):
        mf.build(spec([{"type": "MultiheadAttention", "embed_dim": 10, "num_heads": 3}]))


def test_registering_a_name_twice_names_both_definitions(registrations):
    @mf.register_layer(name="TwiceLayer")
    class First(torch.nn.Module):
        pass

    with pytest.raises(
        mf.ModelFactoryError,
        match=r"'TwiceLayer' is already registered in the layer registry at .*First.*second definition is .*Second",
    ):

        @mf.register_layer(name="TwiceLayer")
        class Second(torch.nn.Module):
            pass


def test_user_registered_layer_and_op_are_usable(registrations):
    @mf.register_layer(name="Scale")
    class Scale(torch.nn.Module):
        def __init__(self, factor: float) -> None:
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    @mf.register_op("double")
    def double(x):
        return 2 * x

    model = mf.build(
        spec({"children": {"s": {"type": "Scale", "factor": 3}}, "forward": ["s", "double"]})
    )
    x = torch.ones(2, 20)
    assert torch.equal(model(x), 6 * x)
    with pytest.raises(mf.ModelFactoryError, match=r"invalid value for Scale argument 'factor'"):
        mf.build(spec([{"type": "Scale", "factor": "big"}]))


def test_model_file_cannot_name_an_import_path():
    p = only_problem(spec([{"_target_": "os.system", "command": "echo hi"}]))
    assert "found a mapping with keys ['_target_', 'command']" in p.message


def test_bad_seed_is_an_error():
    with pytest.raises(mf.ModelFactoryError, match="seed: must be a non-negative integer"):
        mf.build(spec(["ReLU"]), seed=-1)
