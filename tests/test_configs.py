"""Every config under conf/ composes, validates, builds and runs on the CPU."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF, ZOO
from hydra import compose, initialize_config_dir

import modelfactory as mf
from modelfactory.builder.forward import make_input, run_forward


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_composes_builds_and_runs(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model={name}"])
    spec = mf.validate(cfg.model)
    model = mf.build(cfg.model, device=cfg.device, seed=cfg.seed)
    result = run_forward(model, make_input(spec.input, seed=0))
    out = result.output[0] if isinstance(result.output, tuple) else result.output
    assert torch.isfinite(out).all()
    assert result.activations, "every model has at least one leaf module"


def test_default_model_is_mlp():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config")
    assert cfg.model.name == "mlp"
    assert cfg.device == "cpu" and cfg.seed == 0
