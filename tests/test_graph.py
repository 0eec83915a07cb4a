"""General layer graphs: named values, shape inference, shape errors, block parameters, summaries."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import CONF
from reference_models import GRAPH_REFERENCES

import modelfactory as mf
from modelfactory.errors import ShapeError, SpecError


def spec(network, **extra):
    return {"input": {"shape": [2, 8]}, "network": network, **extra}


def problems(data, error=mf.ModelFactoryError):
    with pytest.raises(error) as info:
        mf.build(data)
    return [str(p) for p in info.value.problems]


# --- zoo parity ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GRAPH_REFERENCES))
def test_graph_zoo_matches_hand_written_reference(name):
    factory, shape = GRAPH_REFERENCES[name]
    torch.manual_seed(0)
    reference = factory().eval()
    ours = mf.build(CONF / "model" / f"{name}.yaml").eval()
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in reference.state_dict().items()
    }
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(ours(x.clone()), reference(x.clone()))


def test_resnet18_has_torchvisions_parameter_names_and_count():
    model = mf.build(CONF / "model" / "resnet18.yaml", device="meta")
    keys = set(model.state_dict())
    for key in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer4.1.bn2.bias",
        "fc.weight",
    ]:
        assert key in keys
    assert sum(p.numel() for p in model.parameters()) == 11_689_512


# --- shape inference ----------------------------------------------------------------
def test_omitted_sizes_are_inferred_and_written_into_the_resolved_spec():
    model = mf.build(
        spec(
            [{"type": "Linear", "out_features": 16}, "ReLU", {"type": "Linear", "out_features": 3}]
        )
    )
    assert model[0].in_features == 8 and model[2].in_features == 16
    resolved = model.modelfactory_info.spec.model_dump(mode="json")
    assert resolved["network"][0] == {"type": "Linear", "out_features": 16, "in_features": 8}
    assert resolved["network"][2]["in_features"] == 16


def test_check_reports_inferred_values_by_config_path():
    result = mf.check(mf.validate(CONF / "model" / "resnet18.yaml"))
    assert result.output_shapes == [[1, 1000]]
    assert result.inferred["network.children.fc"] == {"in_features": 512}
    assert result.inferred["network.children.layer2[0].children.downsample[1]"] == {
        "num_features": 128
    }
    assert result.inferred["network.children.layer4[0].children.downsample[1]"] == {
        "num_features": 512
    }


def test_user_registered_layer_declares_its_own_shape_rule():
    model = mf.build(
        spec([{"type": "MyLinear", "units": 5}])
    )  # MyLinear: shape_rule in_units <- dim -1
    assert model[0].weight.shape == (8, 5)


def test_blocks_used_at_different_widths_get_their_own_inferred_sizes():
    data = spec(
        ["blk", {"type": "Linear", "out_features": 4}, "blk"],
        blocks={"blk": [{"type": "Linear", "out_features": 6}, "ReLU"]},
    )
    model = mf.build(data)
    assert model[0][0].in_features == 8 and model[2][0].in_features == 4


# --- shape errors before allocation ---------------------------------------------------
def test_shape_mismatch_names_the_layer_incoming_shape_and_expectation():
    messages = problems(
        spec([{"type": "Linear", "in_features": 20, "out_features": 4}]), ShapeError
    )
    assert messages == [
        "network[0]: Linear (module '0') got input shape(s) [[2, 8]]; Linear expects input dim -1 = in_features = 20, found 8. "
        "Fix the layer's sizes or the input shape."
    ]


def test_shape_mismatch_in_an_op_names_the_step():
    data = spec(
        {
            "name": "Res",
            "children": {"fc": {"type": "Linear", "in_features": 8, "out_features": 4}},
            "forward": [{"call": "fc", "out": "h"}, {"op": "add", "in": ["x", "h"]}],
        }
    )
    (message,) = problems(data, ShapeError)
    assert message.startswith("network.forward[1]: op 'add' got input shapes [[2, 8], [2, 4]]: ")


def test_shape_errors_come_before_any_allocation(monkeypatch):
    import modelfactory.pipeline as api

    def no_real_build(*args, **kwargs):
        raise AssertionError("the real build must not start")

    monkeypatch.setattr(api, "construct", no_real_build)
    with pytest.raises(ShapeError):
        mf.build(spec([{"type": "Linear", "in_features": 1000, "out_features": 4}]))


def test_run_py_reports_the_first_linear_for_a_wrong_input_shape(tmp_path):
    from test_app import run_app

    proc = run_app("model=mlp", "model.input.shape=[2,21]", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert (
        "model.network[0]: Linear (module '0') got input shape(s) [[2, 21]]; Linear expects input dim -1 = in_features = 20, found 21"
        in proc.stderr
    )
    assert "conf/model/mlp.yaml:5:5" in proc.stderr


def test_a_layer_that_never_runs_cannot_be_inferred():
    data = spec(
        {
            "name": "N",
            "children": {
                "a": {"type": "Linear", "out_features": 4},
                "unused": {"type": "Linear", "out_features": 2},
            },
            "forward": ["a"],
        }
    )
    (message,) = problems(data, ShapeError)
    assert message.startswith(
        "network.children.unused: Linear never ran in the dry run, so in_features cannot be inferred"
    )


# --- named values -------------------------------------------------------------------
def test_multi_input_multi_output_blocks():
    data = spec(
        "Outer",
        blocks={
            "Pair": {
                "inputs": ["a", "b"],
                "forward": [
                    {"op": "add", "in": ["a", "b"], "out": "s"},
                    {"op": "mul", "in": ["a", "b"], "out": "p"},
                ],
                "outputs": ["s", "p"],
            },
            "Outer": {
                "children": {"fc": {"type": "Linear", "out_features": 8}, "pair": "Pair"},
                "forward": [
                    {"call": "fc", "out": "h"},
                    {"call": "pair", "in": ["x", "h"], "out": ["s", "p"]},
                    {"op": "concat", "in": ["s", "p"], "dim": 1},
                ],
            },
        },
    )
    model = mf.build(data)
    x = torch.rand(2, 8)
    h = model.fc(x)
    torch.testing.assert_close(model(x), torch.cat([x + h, x * h], dim=1))
    s_only, p_only = model.pair(x, h)
    torch.testing.assert_close(p_only, x * h)


@pytest.mark.parametrize(
    ("forward", "message"),
    [
        pytest.param(
            [{"op": "relu", "in": "y"}], "input 'y' is not defined before this step", id="undefined"
        ),
        pytest.param(
            [{"op": "relu", "out": "h"}, {"op": "relu", "in": "h", "out": "h"}],
            "value 'h' is already defined",
            id="produced-twice",
        ),
        pytest.param(
            [{"op": "relu", "in": "h", "out": "g"}, {"op": "relu", "in": "g", "out": "h"}],
            "input 'h' is not defined before this step",
            id="cycle",
        ),
        pytest.param(
            [{"op": "relu", "out": "a"}, {"op": "relu", "in": "x"}],
            "a (output of step 0) is never used",
            id="unused",
        ),
    ],
)
def test_graph_validation_errors(forward, message):
    with pytest.raises(SpecError) as info:
        mf.validate(spec({"name": "G", "forward": forward}))
    assert any(
        message in p.message and p.path.startswith("network.forward") for p in info.value.problems
    ), info.value.problems


# --- block parameters ---------------------------------------------------------------------
def param_block(**use):
    return spec(
        [{"block": "Dense", "with": use}] if use else ["Dense"],
        blocks={
            "Dense": {
                "params": {"width": None, "act": "ReLU"},
                "body": [{"type": "Linear", "out_features": {"param": "width"}}],
            }
        },
    )


def test_block_parameters_are_substituted_per_use():
    data = spec(
        [{"block": "Dense", "with": {"width": 16}}, {"block": "Dense", "with": {"width": 4}}],
        blocks={
            "Dense": {
                "params": {"width": None},
                "body": [{"type": "Linear", "out_features": {"param": "width"}}, "ReLU"],
            }
        },
    )
    model = mf.build(data)
    assert (
        model[0][0].out_features == 16
        and model[1][0].in_features == 16
        and model[1][0].out_features == 4
    )


def test_missing_and_unknown_block_parameters():
    with pytest.raises(SpecError) as info:
        mf.validate(param_block())
    assert [str(p) for p in info.value.problems] == [
        "network[0].with: block 'Dense' needs parameter 'width' (give it in 'with')"
    ]
    with pytest.raises(SpecError) as info:
        mf.validate(param_block(width=3, widht=4))
    assert (
        "network[0].with.widht: block 'Dense' has no parameter 'widht'. Did you mean 'width'?"
        in str(info.value)
    )


def test_placeholder_must_name_a_declared_parameter():
    data = spec(
        ["D"],
        blocks={
            "D": {
                "params": {"width": 4},
                "body": [{"type": "Linear", "out_features": {"param": "wdth"}}],
            }
        },
    )
    with pytest.raises(
        SpecError,
        match=r"\{param: wdth\} names no parameter of this block\. Did you mean 'width'\?",
    ):
        mf.validate(data)
    with pytest.raises(
        SpecError,
        match=r"\{param: w\} is only allowed inside a block definition that declares params",
    ):
        mf.validate(spec([{"type": "Linear", "out_features": {"param": "w"}}]))


def test_invalid_substituted_value_points_at_its_definition(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(param_block(width=-2), sort_keys=False))
    with pytest.raises(SpecError) as info:
        mf.build(path)
    (p,) = info.value.problems
    assert p.path == "blocks.Dense.body[0].out_features"
    assert (
        "must be a positive size (found -2) (in the instance at network[0][0].out_features)"
        in p.message
    )


# --- summary ------------------------------------------------------------------------------
def test_layer_summary_rows_and_flops():
    model = mf.build(CONF / "model" / "mlp.yaml")
    summary = mf.summary(model, torch.rand(2, 20))
    rows = {r.path: r for r in summary.rows}
    assert rows["0"].output_shape == [2, 256] and rows["0"].params == 20 * 256 + 256
    assert rows["0"].flops == 2 * 2 * 20 * 256  # 2 FLOPs per multiply-accumulate
    assert summary.total_flops == 2 * 2 * (20 * 256 + 256 * 10)
    text = summary.format()
    assert "total 30.72k FLOPs (15.36k MACs)" in text


def test_shared_layer_is_one_row_with_its_calls_summed():
    summary = mf.summary(mf.build(CONF / "model" / "shared.yaml"), torch.rand(2, 4))
    rows = {r.path: r for r in summary.rows}
    assert "4" not in rows
    assert rows["2"].calls == 2 and rows["2"].flops == 2 * 2 * 2 * 8 * 8


def test_build_without_the_check_still_expands_parametric_blocks():
    data = spec(
        [{"block": "Dense", "with": {"width": 16}}],
        blocks={
            "Dense": {
                "params": {"width": None},
                "body": [{"type": "Linear", "in_features": 8, "out_features": {"param": "width"}}],
            }
        },
    )
    model = mf.build(data, check=False)
    assert model[0][0].out_features == 16


def test_parameter_estimate_sees_expanded_repeats():
    from modelfactory.builder.materialize import estimate_parameters

    resolved = mf.check(mf.validate(CONF / "model" / "resnet18.yaml")).spec
    layer1 = resolved.network.children["layer1"]  # a repeat, expanded to a named sequential
    only_layer1 = resolved.model_copy(update={"network": layer1})
    assert estimate_parameters(only_layer1) >= 4 * 64 * 64  # four 64->64 convolutions
