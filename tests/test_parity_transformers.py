"""The zoo's transformer and recurrent models against hand-written PyTorch references.

Same state_dict keys in the same order, same shapes, same outputs and
gradients under the same weights; and each survives mf.save / mf.load.
"""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import CONF
from reference_transformers import TRANSFORMER_REFERENCES, LlamaForCausalLM

import modelfactory as mf

NAMES = sorted(TRANSFORMER_REFERENCES)
TOL = {"rtol": 1e-5, "atol": 1e-6}


def build_pair(name: str, spec=None):
    factory, make_input = TRANSFORMER_REFERENCES[name]
    torch.manual_seed(0)
    reference = factory()
    x = make_input()
    ours = mf.build(spec if spec is not None else CONF / "model" / f"{name}.yaml", seed=1)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference, x


def assert_same_outputs_and_gradients(ours, reference, x):
    got, expected = ours(x.clone()), reference(x.clone())
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, **TOL)
    (got.float() ** 2).mean().backward()
    (expected.float() ** 2).mean().backward()
    ours_grads = dict(ours.named_parameters())
    for name, p in reference.named_parameters():
        assert ours_grads[name].grad is not None, name
        torch.testing.assert_close(ours_grads[name].grad, p.grad, **TOL, msg=name)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_order_and_shapes_match(name):
    ours, reference, _ = build_pair(name)
    expected = [(k, tuple(v.shape)) for k, v in reference.state_dict().items()]
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == expected
    expected_params = [(n, tuple(p.shape)) for n, p in reference.named_parameters()]
    assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == expected_params


@pytest.mark.parametrize("name", NAMES)
def test_outputs_and_gradients_match_with_the_reference_weights(name):
    ours, reference, x = build_pair(name)
    assert_same_outputs_and_gradients(ours, reference, x)


@pytest.mark.parametrize("name", NAMES)
def test_outputs_match_in_eval_mode(name):
    ours, reference, x = build_pair(name)
    ours.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x.clone()), reference(x.clone()), **TOL)


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_round_trip(name, tmp_path):
    ours, _, x = build_pair(name)
    path = mf.save(ours, tmp_path / f"{name}.safetensors")
    loaded = mf.load(path)
    assert list(loaded.state_dict()) == list(ours.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(loaded(x.clone()), ours(x.clone()))


def test_llama_tiny_head_is_tied_to_the_embedding():
    ours, _, _ = build_pair("llama_tiny")
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    assert "lm_head.weight" in ours.state_dict()
    assert "lm_head.weight" not in dict(ours.named_parameters())


def test_llama_tiny_untied_head_without_ties():
    spec = yaml.safe_load((CONF / "model" / "llama_tiny.yaml").read_text())
    del spec["ties"]
    torch.manual_seed(0)
    reference = LlamaForCausalLM(tie_word_embeddings=False)
    ours = mf.build(spec, seed=1)
    assert ours.lm_head.weight is not ours.model.embed_tokens.weight
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert_same_outputs_and_gradients(ours, reference, torch.randint(0, 64, (2, 8)))


def test_llama_tiny_rotary_tables_are_not_in_the_state_dict():
    model = mf.build("llama_tiny")
    rotary = model.model.layers[0].self_attn.rotary_emb
    assert {n for n, _ in rotary.named_buffers()} == {"base", "index"}
    assert not any("rotary" in k for k in model.state_dict())


def test_llama_tiny_is_causal():
    model = mf.build("llama_tiny").eval()
    ids = torch.randint(0, 64, (2, 8))
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 64
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


@pytest.mark.parametrize("name", ["llama_tiny", "lstm_classifier"])
def test_other_sequence_lengths_work(name):
    """Positions come from the input's length, not from the declared input."""
    ours, reference, _ = build_pair(name)
    x = torch.randint(0, 64, (3, 5))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOL)
