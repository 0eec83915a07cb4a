"""Devices: parsing, availability errors, try_gpu, the meta device, and materialised buffers."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch
from conftest import CONF

import modelfactory as mf
from modelfactory.devices import resolve_device
from modelfactory.errors import DeviceError

NO_CUDA = not torch.cuda.is_available()


def test_cpu_and_meta_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("META") == torch.device("meta")


def test_auto_picks_cpu_without_gpu_and_logs_the_choice(caplog, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="modelfactory.devices"):
        assert resolve_device("auto") == torch.device("cpu")
    assert "device=auto resolved to cpu (available: cpu)" in caplog.text


def test_auto_picks_the_first_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda:0")
    assert mf.try_gpu(1) == torch.device("cuda:1")
    assert mf.try_gpu(2) == torch.device("cpu")
    assert mf.try_all_gpus() == [torch.device("cuda:0"), torch.device("cuda:1")]


def test_try_gpu_falls_back_to_cpu_as_in_the_text(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mf.try_gpu() == torch.device("cpu")
    assert mf.try_gpu(10) == torch.device("cpu")
    assert mf.try_all_gpus() == [torch.device("cpu")]


def test_unavailable_cuda_lists_devices_and_suggests_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError) as info:
        resolve_device("cuda:1")
    assert str(info.value) == (
        "device: 'cuda:1' is not available (torch has no CUDA support or sees no GPU). "
        "Available: cpu. Use device=auto to pick the best available one."
    )


def test_torch_without_cuda_raising_assertion_error_is_handled(monkeypatch):
    def not_compiled() -> bool:
        raise AssertionError("Torch not compiled with CUDA enabled")

    monkeypatch.setattr(torch.cuda, "is_available", not_compiled)
    with pytest.raises(DeviceError, match=r"device: 'cuda' is not available .* Use device=auto"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "gpu",
            "device: unknown device 'gpu'. Use one of cpu, cuda, cuda:N, mps, meta or auto.",
            id="unknown",
        ),
        pytest.param("cpu:1", "device: 'cpu' takes no index, found 'cpu:1'", id="cpu-index"),
        pytest.param("auto:0", "device: 'auto' takes no index, found 'auto:0'", id="auto-index"),
    ],
)
def test_malformed_devices(text, message):
    with pytest.raises(DeviceError) as info:
        resolve_device(text)
    assert str(info.value) == message


def test_mps_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"device: 'mps' is not available\. Available: cpu"):
        resolve_device("mps")


def test_devices_command_lists_the_cpu():
    proc = subprocess.run(
        [sys.executable, "-m", "modelfactory", "devices"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("cpu ")
    if NO_CUDA:
        assert "(current: device=auto picks this)" in proc.stdout


def test_build_on_meta_allocates_nothing_and_keeps_ties():
    model = mf.build(CONF / "model" / "tied_lm.yaml", device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert model.head.weight is model.embedding.weight
    assert model.modelfactory_info.device == "meta"


def test_meta_path_restores_buffers_such_as_batchnorm_running_stats():
    spec = {
        "input": {"shape": [4, 8]},
        "network": [
            {"type": "Linear", "in_features": 8, "out_features": 16},
            {"type": "BatchNorm1d", "num_features": 16},
            {"type": "Linear", "in_features": 16, "out_features": 2},
        ],
    }
    meta = mf.build(spec, strategy="meta", seed=3)
    direct = mf.build(spec, strategy="direct", seed=3)
    assert torch.equal(meta[1].running_mean, torch.zeros(16))
    assert torch.equal(meta[1].running_var, torch.ones(16))
    assert meta[1].num_batches_tracked.item() == 0
    for key, value in direct.state_dict().items():
        assert torch.equal(value, meta.state_dict()[key]), key


def test_auto_strategy_uses_meta_for_big_models_only():
    small = mf.build(CONF / "model" / "mlp.yaml")
    assert small.modelfactory_info.facts["strategy"] == "direct"
    big = mf.build(CONF / "model" / "big_mlp.yaml", device="meta")
    assert big.modelfactory_info.facts["strategy"] == "meta"


def test_layer_without_reset_parameters_falls_back_to_direct(caplog, registrations):
    @mf.register_layer(name="NoReset")
    class NoReset(torch.nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(n))

        def forward(self, x):
            return x * self.w

    spec = {"input": {"shape": [2, 3]}, "network": [{"type": "NoReset", "n": 3}]}
    with caplog.at_level(logging.INFO, logger="modelfactory.pipeline"):
        model = mf.build(spec, strategy="meta")
    assert model.modelfactory_info.facts["strategy"] == "direct"
    assert "has parameters or buffers but no reset_parameters()" in caplog.text
    assert torch.isfinite(model[0].w).all()


def test_cpu_generator_option_gives_cpu_values_on_any_device():
    """The device move itself is exercised on CUDA in test_cuda.py; here its logic on meta."""
    spec = CONF / "model" / "param_net.yaml"
    init = {"cpu_generator": True, "rules": [{"param": "weight", "scheme": "xavier_uniform"}]}
    on_meta = mf.build(spec, init=init, device="meta")
    assert on_meta.modelfactory_info.facts["cpu_generator"] is False  # meta: nothing to draw
    cpu = mf.build(spec, init=init)
    assert cpu.modelfactory_info.facts["cpu_generator"] is False  # already on the CPU


def test_strict_load_of_a_big_model_skips_the_init_pass(tmp_path, monkeypatch):
    spec = {
        "input": {"shape": [2, 8]},
        "network": [
            {"type": "Linear", "in_features": 8, "out_features": 8},
            {"type": "BatchNorm1d", "num_features": 8},
        ],
    }
    model = mf.build(spec, seed=1)
    with torch.no_grad():
        model[1].running_var.fill_(3.0)
    mf.save(model, tmp_path / "m.safetensors")
    import modelfactory.pipeline as api

    calls = []
    original = api.replay_default_init
    monkeypatch.setattr(
        api,
        "replay_default_init",
        lambda record, **kw: calls.append(kw["skip"]) or original(record, **kw),
    )
    monkeypatch.setattr(api, "META_THRESHOLD", 0)  # take the meta path for this small model
    loaded = mf.load(tmp_path / "m.safetensors")
    assert calls and len(calls[0]) == 2  # both layers skipped: the checkpoint overwrites them
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
