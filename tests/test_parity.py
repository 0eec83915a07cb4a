"""Every zoo model is a drop-in for its hand-written reference from the text."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF
from reference_models import REFERENCES, RGNET_PRINTED

import modelfactory as mf

ZOO_WITH_REFERENCE = sorted(REFERENCES)
PURE_SEQUENTIAL = ["mlp", "param_net", "rgnet", "shared", "centered"]


def build_pair(name: str):
    factory, shape = REFERENCES[name]
    torch.manual_seed(0)
    reference = factory()
    ours = mf.build(CONF / "model" / f"{name}.yaml", seed=1)
    return ours, reference, shape


def reference_constants(reference: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The text keeps FixedHiddenMLP.rand_weight as a plain attribute, outside the state_dict."""
    return {
        f"{prefix}{'.' if prefix else ''}rand_weight": module.rand_weight
        for prefix, module in reference.named_modules()
        if hasattr(module, "rand_weight")
    }


def test_every_zoo_model_has_a_reference():
    assert set(REFERENCES) <= {p.stem for p in (CONF / "model").glob("*.yaml")}


@pytest.mark.parametrize("name", ZOO_WITH_REFERENCE)
def test_state_dict_keys_and_shapes_match(name):
    ours, reference, _ = build_pair(name)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    expected |= {k: tuple(v.shape) for k, v in reference_constants(reference).items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    ours_params = [(n, tuple(p.shape)) for n, p in ours.named_parameters()]
    assert ours_params == [(n, tuple(p.shape)) for n, p in reference.named_parameters()]


@pytest.mark.parametrize("name", ZOO_WITH_REFERENCE)
def test_outputs_match_with_the_reference_weights(name):
    ours, reference, shape = build_pair(name)
    ours.load_state_dict(reference.state_dict() | reference_constants(reference), strict=True)
    x = torch.rand(shape)
    with torch.no_grad():
        expected = reference(x.clone())
        got = ours(x.clone())
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ZOO_WITH_REFERENCE)
def test_printed_module_tree_matches(name):
    ours, reference, _ = build_pair(name)
    assert str(ours) == str(reference)


def test_pure_sequential_models_are_sequential():
    for name in PURE_SEQUENTIAL:
        assert type(mf.build(CONF / "model" / f"{name}.yaml")) is torch.nn.Sequential


def test_rgnet_prints_exactly_as_in_the_text():
    assert str(mf.build(CONF / "model" / "rgnet.yaml")) == RGNET_PRINTED


def test_composite_blocks_print_their_block_name_as_class_name():
    model = mf.build(CONF / "model" / "chimera.yaml")
    assert type(model[0]).__name__ == "NestMLP"
    assert type(model[2]).__name__ == "FixedHiddenMLP"
    assert str(model).splitlines()[1] == "  (0): NestMLP("


def test_shared_layer_is_one_object_and_accumulates_both_gradients():
    model = mf.build(CONF / "model" / "shared.yaml")
    assert model[2] is model[4]
    assert model[2].weight is model[4].weight

    # Untied twin with the same values: the shared gradient must be the sum of both uses.
    _, reference, _ = build_pair("shared")
    untied = torch.nn.Sequential(
        *[torch.nn.Linear(8, 8) if i in (2, 4) else m for i, m in enumerate(reference)]
    )
    untied.load_state_dict(model.state_dict())
    x = torch.rand(2, 4)
    model(x).sum().backward()
    untied(x).sum().backward()
    torch.testing.assert_close(model[2].weight.grad, untied[2].weight.grad + untied[4].weight.grad)
    assert not torch.allclose(untied[2].weight.grad, untied[4].weight.grad)


def test_fixed_hidden_mlp_reuses_its_linear_layer():
    model = mf.build(CONF / "model" / "fixed_hidden_mlp.yaml")
    assert [n for n, _ in model.named_parameters()] == ["linear.weight", "linear.bias"]
    assert model.rand_weight.requires_grad is False
    assert "rand_weight" in model.state_dict()


def test_block_references_build_fresh_instances():
    model = mf.build(CONF / "model" / "rgnet.yaml")
    blocks = list(model[0].children())
    assert len({id(b) for b in blocks}) == 4
    assert blocks[0][0].weight is not blocks[1][0].weight
    assert not torch.equal(blocks[0][0].weight, blocks[1][0].weight)


def test_sequential_indexing_and_apply_behave_as_in_the_text():
    net = mf.build(CONF / "model" / "param_net.yaml")
    assert isinstance(net[2], torch.nn.Linear)
    assert [(n, tuple(p.shape)) for n, p in net.named_parameters()] == [
        ("0.weight", (8, 4)),
        ("0.bias", (8,)),
        ("2.weight", (1, 8)),
        ("2.bias", (1,)),
    ]

    def init_constant(m):
        if type(m) is torch.nn.Linear:
            torch.nn.init.constant_(m.weight, 1)
            torch.nn.init.zeros_(m.bias)

    net.apply(init_constant)
    assert torch.all(net[0].weight == 1) and torch.all(net[0].bias == 0)
    assert set(net.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_same_seed_same_weights_and_different_seed_different_weights():
    a = mf.build(CONF / "model" / "chimera.yaml", seed=3)
    b = mf.build(CONF / "model" / "chimera.yaml", seed=3)
    c = mf.build(CONF / "model" / "chimera.yaml", seed=4)
    for (ka, va), (_, vb), (_, vc) in zip(
        a.state_dict().items(), b.state_dict().items(), c.state_dict().items(), strict=True
    ):
        assert torch.equal(va, vb), ka
        assert not torch.equal(va, vc), ka


def test_build_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    mf.build(CONF / "model" / "mlp.yaml", seed=9)
    assert torch.equal(torch.rand(3), expected)
