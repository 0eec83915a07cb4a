"""Tied parameters and shared modules survive build, .to(), checkpoints, loading and init."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import CONF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelfactory as mf
from modelfactory.errors import SpecError
from modelfactory.tables import parameter_counts

TIED_LM = CONF / "model" / "tied_lm.yaml"


def lm_spec(**ties):
    import yaml

    data = yaml.safe_load(TIED_LM.read_text())
    data["ties"] = ties
    return data


def only_problem(data) -> mf.ModelFactoryError:
    with pytest.raises(mf.ModelFactoryError) as info:
        mf.build(data)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


# --- validation -----------------------------------------------------------------
def test_tie_to_a_path_that_does_not_exist():
    p = only_problem(lm_spec(**{"head.weight": "embedding.weigth"}))
    assert p.path == "ties['head.weight']"
    assert (
        p.message
        == "tie source 'embedding.weigth' is not a parameter of this model. Did you mean 'embedding.weight'?"
    )


def test_tie_with_incompatible_shapes():
    p = only_problem(lm_spec(**{"head.bias": "body.0.bias"}))
    assert p.path == "ties['head.bias']"
    assert (
        p.message
        == "shapes differ: 'head.bias' is [100], 'body.0.bias' is [32]; tied parameters must have the same shape"
    )


def test_tie_chain_that_forms_a_cycle():
    data = lm_spec(**{"head.weight": "embedding.weight", "embedding.weight": "head.weight"})
    with pytest.raises(SpecError) as info:
        mf.validate(data)
    (p,) = info.value.problems
    assert p.path == "ties.embedding.weight"
    assert p.message.startswith(
        "ties form a cycle: embedding.weight -> head.weight -> embedding.weight"
    )


def test_tie_to_a_constant_or_buffer():
    spec = {
        "input": {"shape": [2, 4]},
        "network": {
            "name": "Net",
            "constants": {"c": {"shape": [4], "fill": "ones"}},
            "children": {"lin": {"type": "Linear", "in_features": 4, "out_features": 4}},
            "forward": [{"call": "lin", "out": "h"}, {"op": "add", "in": ["h", "c"]}],
        },
        "ties": {"lin.bias": "c"},
    }
    p = only_problem(spec)
    assert p.path == "ties['lin.bias']"
    assert (
        p.message
        == "tie source 'c' is a buffer (a constant or running statistic), not a parameter; only parameters can be tied"
    )


def test_tie_chains_resolve_to_the_root():
    spec = {
        "input": {"shape": [2, 4]},
        "network": [{"type": "Linear", "in_features": 4, "out_features": 4} for _ in range(3)],
        "ties": {"2.weight": "1.weight", "1.weight": "0.weight"},
    }
    model = mf.build(spec)
    assert model[2].weight is model[1].weight is model[0].weight


# --- invariants -----------------------------------------------------------------
def assert_tied(model):
    assert model.head.weight is model.embedding.weight


@pytest.mark.parametrize("strategy", ["direct", "meta"])
def test_tied_lm_build_and_device_moves(strategy):
    model = mf.build(TIED_LM, strategy=strategy)
    assert_tied(model)
    assert type(model).__name__ == "TiedLM"
    model.to(torch.float64)
    assert_tied(model)
    model.to("meta")
    assert_tied(model)
    assert model.head.weight.device.type == "meta"
    model.to_empty(device="cpu")
    assert_tied(model)


def test_tied_lm_survives_save_and_load(tmp_path):
    model = mf.build(TIED_LM, seed=4)
    mf.save(model, tmp_path / "lm.safetensors")
    clone = mf.load(tmp_path / "lm.safetensors")
    assert_tied(clone)
    x = torch.randint(0, 100, (2, 8))
    assert torch.equal(clone(x), model(x))


def test_tied_lm_survives_load_state_dict_plain_and_assign():
    model = mf.build(TIED_LM, seed=1)
    state = {k: v.clone() + 1 for k, v in mf.build(TIED_LM, seed=2).state_dict().items()}
    model.load_state_dict(state)
    assert_tied(model)
    assert torch.equal(model.embedding.weight, state["embedding.weight"])
    model.load_state_dict(state, assign=True)  # replaces Parameters: the ties are re-asserted
    assert_tied(model)


def test_backward_accumulates_both_uses_into_the_one_tensor():
    model = mf.build(TIED_LM, seed=0)
    untied = mf.build(lm_spec(), seed=0)
    untied.load_state_dict(model.state_dict())
    assert untied.head.weight is not untied.embedding.weight
    x = torch.randint(0, 100, (2, 8))
    model(x).square().mean().backward()
    untied(x).square().mean().backward()
    expected = untied.head.weight.grad + untied.embedding.weight.grad
    torch.testing.assert_close(model.embedding.weight.grad, expected)


def test_shared_modules_survive_the_same_moves(tmp_path):
    model = mf.build(CONF / "model" / "shared.yaml")
    mf.save(model, tmp_path / "s.safetensors")
    clone = mf.load(tmp_path / "s.safetensors")
    assert clone[2] is clone[4]
    clone.load_state_dict(model.state_dict())
    assert clone[2].weight is clone[4].weight
    clone.to("meta")
    assert clone[2].weight is clone[4].weight


def test_checkpoint_stores_the_tied_tensor_once(tmp_path):
    tied, untied = mf.build(TIED_LM), mf.build(lm_spec())
    mf.save(tied, tmp_path / "tied.safetensors")
    mf.save(untied, tmp_path / "untied.safetensors")
    saved = (tmp_path / "untied.safetensors").stat().st_size - (
        tmp_path / "tied.safetensors"
    ).stat().st_size
    weight_bytes = 100 * 32 * 4
    assert abs(saved - weight_bytes) < 512  # the metadata differs a little too
    from safetensors import safe_open

    with safe_open(str(tmp_path / "tied.safetensors"), "pt") as f:
        assert len([k for k in f.keys() if k in ("embedding.weight", "head.weight")]) == 1


def test_unique_and_total_parameter_counts():
    counts = parameter_counts(mf.build(TIED_LM))
    total = 100 * 32 + (32 * 32 + 32) + (100 * 32 + 100)
    assert counts == {
        "total": total,
        "unique": total - 100 * 32,
        "shared": 0,
        "tied": 100 * 32,  # the head's weight is the embedding's
        "trainable_unique": total - 100 * 32,
        "buffers": 0,
    }
    # the text's shared net: 8*4+8 + 8*8+8 + 8+1
    assert parameter_counts(mf.build(CONF / "model" / "shared.yaml"))["unique"] == 121


# --- init ---------------------------------------------------------------------------
def test_rule_aimed_at_the_non_owner_path_applies_to_the_owner_once(registrations):
    calls = []

    @mf.register_init("count_fill")
    def count_fill(tensor, *, value: float = 0.0):
        calls.append(tuple(tensor.shape))
        with torch.no_grad():
            return tensor.fill_(value)

    for strategy in ("direct", "meta"):
        calls.clear()
        model = mf.build(
            TIED_LM,
            init=[{"module": "head", "param": "weight", "scheme": "count_fill", "value": 3.0}],
            strategy=strategy,
        )
        assert_tied(model)
        assert torch.all(model.embedding.weight == 3)
        assert calls == [(100, 32)]
        (row,) = [
            r for r in model.modelfactory_info.init_report if r["param"] == "embedding.weight"
        ]
        assert row["aliases"] == ["head.weight"] and row["rule"] == "init.rules[0]"


def test_meta_path_default_init_of_a_tied_tensor_matches_the_direct_path():
    direct = mf.build(TIED_LM, strategy="direct", seed=7)
    meta = mf.build(TIED_LM, strategy="meta", seed=7)
    for key, value in direct.state_dict().items():
        assert torch.equal(value, meta.state_dict()[key]), key
    # the tied tensor keeps the embedding's default init (N(0, 1)), not the Linear's
    assert 0.8 < meta.embedding.weight.std().item() < 1.2


# --- property test ------------------------------------------------------------------
@st.composite
def tie_graphs(draw):
    n = draw(st.integers(min_value=2, max_value=5))
    ties = {}
    for i in range(1, n):
        for name in ("weight", "bias"):
            if draw(st.booleans()):
                ties[f"{i}.{name}"] = f"{draw(st.integers(0, i - 1))}.{name}"
    cyclic = draw(st.booleans()) and len(ties) > 0
    if cyclic:  # close one chain back on itself
        target = draw(st.sampled_from(sorted(ties)))
        ties[ties[target]] = target
    return n, ties, cyclic


def groups_by_identity(model):
    groups = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), set()).add(name)
    return sorted(sorted(g) for g in groups.values())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(graph=tie_graphs())
def test_random_tie_graphs_hold_everywhere(graph, tmp_path):
    n, ties, cyclic = graph
    spec = {
        "input": {"shape": [2, 3]},
        "network": [{"type": "Linear", "in_features": 3, "out_features": 3} for _ in range(n)],
        "ties": ties,
    }
    if cyclic:
        with pytest.raises(SpecError, match="ties form a cycle"):
            mf.build(spec)
        return
    model = mf.build(spec, strategy="meta")
    expected = groups_by_identity(model)
    for target, source in ties.items():
        root = source
        while root in ties:
            root = ties[root]
        assert model.get_parameter(target) is model.get_parameter(root)
    assert groups_by_identity(mf.build(spec, strategy="direct")) == expected

    path = tmp_path / f"m{abs(hash(str(ties)))}.safetensors"
    mf.save(model, path)
    reloaded = mf.load(path)
    assert groups_by_identity(reloaded) == expected
    x = torch.rand(2, 3)
    assert torch.equal(reloaded(x), model(x))

    # gradients: tied tensor's gradient is the sum over its uses
    untied = mf.build({**spec, "ties": {}})
    untied.load_state_dict({k: v for k, v in model.state_dict().items()})
    model(x).sum().backward()
    untied(x).sum().backward()
    for group in expected:
        want = sum(untied.get_parameter(name).grad for name in group)
        torch.testing.assert_close(model.get_parameter(group[0]).grad, want)

    moved = copy.deepcopy(model).to("meta")
    assert groups_by_identity(moved) == expected
