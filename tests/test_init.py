"""Initialisation as data: every conf/init scheme, the rule language, determinism, sharing."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from conftest import CONF
from torch import nn

import modelfactory as mf
from modelfactory.errors import InitError
from modelfactory.registry import INITS

INIT = CONF / "init"
BIG = {
    "input": {"shape": [2, 512]},
    "network": [
        {"type": "Linear", "in_features": 512, "out_features": 512},
        "ReLU",
        {"type": "Linear", "in_features": 512, "out_features": 256},
    ],
}


def build(spec=BIG, init=None, **kwargs):
    return mf.build(spec, init=init, **kwargs)


def test_every_init_config_is_tested_here():
    tested = {
        "default",
        "normal",
        "constant",
        "xavier",
        "mixed",
        "my_init",
        "kaiming",
        "orthogonal",
        "trunc_normal",
    }
    assert {p.stem for p in INIT.glob("*.yaml")} == tested


def test_default_keeps_pytorch_default_distribution():
    model = build(init=INIT / "default.yaml")
    bound = 1 / math.sqrt(512)
    w = model[0].weight
    assert w.abs().max() <= bound
    # kaiming_uniform(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)): std = bound / sqrt(3)
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    assert model[0].bias.abs().max() <= bound


def test_normal_has_std_001_and_zero_bias():
    model = build(init=INIT / "normal.yaml")
    for layer in (model[0], model[2]):
        assert abs(layer.weight.std().item() - 0.01) < 0.001  # within 10%
        assert abs(layer.weight.mean().item()) < 0.001
        assert torch.all(layer.bias == 0)


def test_constant_is_exactly_one_and_zero():
    model = build(init=INIT / "constant.yaml")
    assert torch.all(model[0].weight == 1) and torch.all(model[2].weight == 1)
    assert torch.all(model[0].bias == 0) and torch.all(model[2].bias == 0)


def test_xavier_is_within_the_glorot_bound_and_fills_it():
    model = build(init=INIT / "xavier.yaml")
    w = model[2].weight  # fan_in 512, fan_out 256
    bound = math.sqrt(6 / (512 + 256))
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.95 * bound
    assert torch.all(model[2].bias == 0)


def test_kaiming_normal_std():
    model = build(init=INIT / "kaiming.yaml")
    expected = math.sqrt(2 / 512)
    assert abs(model[0].weight.std().item() - expected) < 0.05 * expected


def test_orthogonal_rows_are_orthonormal():
    model = build(init=INIT / "orthogonal.yaml")
    w = model[2].weight  # 256 x 512: rows orthonormal
    torch.testing.assert_close(w @ w.T, torch.eye(256), atol=1e-4, rtol=0)


def test_trunc_normal_stays_within_bounds():
    model = build(init=INIT / "trunc_normal.yaml")
    w = model[0].weight
    assert w.min() >= -0.04 and w.max() <= 0.04
    assert 0.01 < w.std().item() < 0.02  # truncation at 2 std shrinks it below 0.02


def test_my_init_is_zero_or_between_5_and_10():
    model = build(init=INIT / "my_init.yaml")
    w = model[0].weight
    nonzero = w[w != 0].abs()
    assert torch.all((w == 0) | ((w.abs() >= 5) & (w.abs() <= 10)))
    assert 0.3 < (w == 0).float().mean().item() < 0.7  # about half of U(-10, 10) has |w| < 5
    assert nonzero.numel() > 0
    assert INITS.get("my_init").origin.startswith("modelfactory.registry.inits.my_init")


def test_mixed_is_the_texts_example():
    model = build(CONF / "model" / "param_net.yaml", init=INIT / "mixed.yaml")
    bound = math.sqrt(6 / (4 + 8))
    assert model[0].weight.abs().max() <= bound
    assert torch.all(model[2].weight == 42)


def test_unmatched_rule_is_an_error_naming_rule_path_and_nearest_modules():
    rules = yaml.safe_load((INIT / "mixed.yaml").read_text())["rules"]  # without its models: list
    with pytest.raises(InitError) as info:
        build(CONF / "model" / "rgnet.yaml", init=rules)
    problems = {p.path: p.message for p in info.value.problems}
    assert set(problems) == {"init.rules[0]", "init.rules[1]"}
    assert problems["init.rules[1]"].startswith(
        "init rule constant(val=42.0) on module='2' param='weight' matched no parameter. No module path matches '2'."
    )
    assert "Module paths in this model: '0', '0.block 0'" in problems["init.rules[1]"]
    assert "to reach parameters of submodules, use '0.**'" in problems["init.rules[0]"]


def test_later_rule_overrides_earlier_for_the_same_parameter():
    rules = [
        {"scheme": "constant", "val": 1.0},
        {"module": "2", "param": "weight", "scheme": "constant", "val": 7.0},
    ]
    model = build(init=rules)
    assert torch.all(model[0].weight == 1) and torch.all(model[0].bias == 1)
    assert torch.all(model[2].weight == 7) and torch.all(model[2].bias == 1)


def test_module_globs_type_with_subclasses_and_param_names(registrations):
    spec = {
        "input": {"shape": [2, 4]},
        "network": {
            "name": "Net",
            "children": {
                "net": [
                    {"type": "Linear", "in_features": 4, "out_features": 4},
                    {"type": "Linear", "in_features": 4, "out_features": 4},
                ],
                "linear": {"type": "Linear", "in_features": 4, "out_features": 4},
                "norm": {"type": "LayerNorm", "normalized_shape": 4},
            },
        },
    }
    model = build(
        spec,
        init=[
            {"module": "net.*", "param": "weight", "scheme": "constant", "val": 2.0},
            {"module": "**.linear", "param": "b*", "scheme": "constant", "val": 3.0},
            {"type": "LayerNorm", "param": "*", "scheme": "constant", "val": 5.0},
        ],
    )
    assert torch.all(model.net[0].weight == 2) and torch.all(model.net[1].weight == 2)
    assert not torch.all(model.net[0].bias == 3)
    assert torch.all(model.linear.bias == 3) and not torch.all(model.linear.weight == 2)
    assert torch.all(model.norm.weight == 5) and torch.all(model.norm.bias == 5)

    class Wide(nn.Linear):
        pass

    mf.register_layer(name="WideLinear")(Wide)
    sub = build(
        {
            "input": {"shape": [2, 4]},
            "network": [{"type": "WideLinear", "in_features": 4, "out_features": 4}],
        },
        init=[{"type": "Linear", "param": "weight", "scheme": "constant", "val": 9.0}],
    )
    assert torch.all(sub[0].weight == 9)  # subclasses match their base type


def test_same_seed_and_rules_give_bitwise_identical_weights():
    a = build(init=INIT / "xavier.yaml", seed=5)
    b = build(init=INIT / "xavier.yaml", seed=5)
    c = build(init=INIT / "xavier.yaml", seed=6)
    for key in a.state_dict():
        assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a[0].weight, c[0].weight)


@pytest.mark.parametrize(
    "init",
    [None, INIT / "xavier.yaml", INIT / "my_init.yaml"],
    ids=["default", "xavier", "my_init"],
)
def test_changing_a_rule_for_one_layer_leaves_other_layers_alone(init):
    base = build(init=init, seed=2)
    from modelfactory.pipeline import to_init_spec

    rules = [r.model_dump() for r in to_init_spec(init).rules]
    changed = build(
        init=rules + [{"module": "2", "param": "weight", "scheme": "orthogonal"}], seed=2
    )
    assert torch.equal(base[0].weight, changed[0].weight)
    assert torch.equal(base[0].bias, changed[0].bias)
    assert torch.equal(base[2].bias, changed[2].bias)
    assert not torch.equal(base[2].weight, changed[2].weight)


def test_shared_parameter_is_initialised_once_and_two_paths_resolve_by_rule_order(registrations):
    calls = []

    @mf.register_init("counting_ones")
    def counting_ones(tensor, *, value: float = 1.0):
        calls.append(tuple(tensor.shape))
        with torch.no_grad():
            tensor.fill_(value)
        return tensor

    model = build(
        CONF / "model" / "shared.yaml",
        init=[
            {"module": "2", "param": "weight", "scheme": "counting_ones", "value": 2.0},
            {"module": "4", "param": "weight", "scheme": "counting_ones", "value": 4.0},
        ],
    )
    assert model[2].weight is model[4].weight
    assert torch.all(model[2].weight == 4)  # reached through both paths: the later rule wins
    assert calls == [(8, 8)]  # ... and the tensor was initialised exactly once
    report = {row["param"]: row for row in model.modelfactory_info.init_report}
    assert report["2.weight"]["rule"] == "init.rules[1]"
    assert report["2.weight"]["aliases"] == ["4.weight"]
    assert "4.weight" not in report


def test_model_file_rules_apply_first_and_init_argument_overrides_them():
    spec = dict(BIG, init=[{"scheme": "constant", "val": 3.0}])
    model = build(spec)
    assert torch.all(model[0].weight == 3)
    model = build(spec, init=[{"param": "weight", "scheme": "zeros"}])
    assert torch.all(model[0].weight == 0) and torch.all(model[0].bias == 3)


def test_unknown_scheme_and_bad_arguments_are_located_errors():
    with pytest.raises(InitError) as info:
        build(
            init=[
                {"scheme": "xavier_unifrom"},
                {"scheme": "kaiming_normal", "mode": "fan_middle"},
                {"scheme": "normal", "sd": 1},
            ]
        )
    messages = [str(p) for p in info.value.problems]
    assert (
        messages[0]
        == "init.rules[0].scheme: unknown init scheme 'xavier_unifrom'. Did you mean 'xavier_uniform'?"
    )
    assert messages[1].startswith(
        "init.rules[1].mode: invalid value for init scheme kaiming_normal argument 'mode'"
    )
    assert messages[2].startswith(
        "init.rules[2].sd: unknown argument 'sd' for init scheme normal. Did you mean 'std'?"
    )


def test_scheme_that_cannot_apply_to_a_parameter_names_rule_and_parameter():
    with pytest.raises(
        InitError,
        match=r"init.rules\[0\]: xavier_uniform\(\) on param='bias' cannot initialise '0.bias' \(shape \[512\]\)",
    ):
        build(init=[{"param": "bias", "scheme": "xavier_uniform"}])


def test_direct_value_setting_through_the_python_api(tmp_path):
    """The text sets values by hand after building; a built model is an ordinary module for that."""
    model = build(CONF / "model" / "param_net.yaml")
    before = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight[:] += 1
        model[0].weight[0, 0] = 42
    expected = before + 1
    expected[0, 0] = 42
    # the values set by hand are what the model computes with and what it saves
    x = torch.rand(2, model[0].in_features)
    assert torch.equal(model[0](x), x @ expected.T + model[0].bias)
    loaded = mf.load(mf.save(model, tmp_path / "m.safetensors"))
    assert torch.equal(loaded[0].weight, expected)


@pytest.mark.parametrize("name", ["param_net", "chimera", "rgnet", "shared", "fixed_hidden_mlp"])
@pytest.mark.parametrize(
    "init", [None, "xavier.yaml", "my_init.yaml"], ids=["default", "xavier", "my_init"]
)
def test_meta_path_gives_the_same_values_as_the_direct_path(name, init):
    path = CONF / "model" / f"{name}.yaml"
    rules = INIT / init if init else None
    direct = mf.build(path, init=rules, seed=11, strategy="direct")
    meta = mf.build(path, init=rules, seed=11, strategy="meta")
    assert meta.modelfactory_info.facts["strategy"] == "meta"
    assert direct.modelfactory_info.facts["strategy"] == "direct"
    for key, value in direct.state_dict().items():
        assert torch.equal(value, meta.state_dict()[key]), key
    if name == "shared":
        assert meta[2] is meta[4]


def test_meta_path_skips_default_init_of_layers_the_rules_fully_cover(registrations):
    resets = []

    @mf.register_layer(name="CountingLinear")
    class CountingLinear(nn.Linear):
        def reset_parameters(self) -> None:
            resets.append(self.weight.device.type)
            super().reset_parameters()

    spec = {
        "input": {"shape": [2, 4]},
        "network": [{"type": "CountingLinear", "in_features": 4, "out_features": 4}],
    }
    mf.build(spec, init=INIT / "xavier.yaml", strategy="meta")
    # constructor calls on meta only (shape check, then the build): no real default init
    assert set(resets) == {"meta"}
    resets.clear()
    mf.build(spec, strategy="meta")  # no rules: the default init runs once, on the real tensors
    assert [d for d in resets if d != "meta"] == ["cpu"]
