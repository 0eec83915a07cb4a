"""CUDA-only paths. Marked ``cuda``: skipped cleanly without a GPU (see conftest.py).

Run them all, with the GPU benchmark, through ``scripts/gpu_checks.sh``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import CONF, ROOT, torchrun

import modelfactory as mf

pytestmark = pytest.mark.cuda

XAVIER = CONF / "init" / "xavier.yaml"


@pytest.mark.parametrize("strategy", ["direct", "meta"])
def test_build_directly_on_cuda(strategy):
    model = mf.build(
        CONF / "model" / "chimera.yaml", device="cuda:0", strategy=strategy, init=XAVIER
    )
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert {b.device.type for b in model.buffers()} == {"cuda"}
    out = model(torch.rand(2, 20, device="cuda"))
    assert torch.isfinite(out).all()


def test_meta_and_direct_paths_agree_on_cuda():
    a = mf.build(CONF / "model" / "rgnet.yaml", device="cuda", strategy="meta", init=XAVIER, seed=3)
    b = mf.build(
        CONF / "model" / "rgnet.yaml", device="cuda", strategy="direct", init=XAVIER, seed=3
    )
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_cpu_generator_gives_identical_values_across_devices():
    init = {"cpu_generator": True, "rules": [{"param": "weight", "scheme": "xavier_uniform"}]}
    cpu = mf.build(CONF / "model" / "param_net.yaml", init=init, seed=5)
    gpu = mf.build(CONF / "model" / "param_net.yaml", init=init, seed=5, device="cuda")
    assert gpu.modelfactory_info.facts["cpu_generator"] is True
    for key, value in cpu.state_dict().items():
        assert torch.equal(value, gpu.state_dict()[key].cpu()), key


def test_ties_and_shared_modules_hold_on_cuda(tmp_path):
    lm = mf.build(CONF / "model" / "tied_lm.yaml", device="cuda")
    assert lm.head.weight is lm.embedding.weight
    lm.cpu()
    assert lm.head.weight is lm.embedding.weight
    net = mf.build(CONF / "model" / "shared.yaml", device="cuda")
    mf.save(net, tmp_path / "s.safetensors")
    again = mf.load(tmp_path / "s.safetensors", device="cuda")
    assert again[2] is again[4]
    x = torch.rand(2, 4, device="cuda")
    assert torch.equal(again(x), net(x))


def test_auto_picks_cuda():
    assert mf.build(CONF / "model" / "mlp.yaml", device="auto").modelfactory_info.device == "cuda:0"


def test_big_mlp_builds_on_cuda_via_meta():
    model = mf.build(CONF / "model" / "big_mlp.yaml", device="cuda", init=XAVIER)
    assert model.modelfactory_info.facts["strategy"] == "meta"
    assert torch.cuda.max_memory_allocated() < 1.2 * 134_250_496 * 4 + 64 * 2**20


def test_sharded_build_and_dcp_checkpoint_on_nccl(tmp_path):
    """tests/fsdp_worker.py on the GPUs (NCCL): the checks test_sharded_dist.py runs with gloo."""
    nproc = min(2, torch.cuda.device_count())
    worker = str(ROOT / "tests" / "fsdp_worker.py")
    proc = torchrun(nproc, worker, "build", "--out", str(tmp_path), "--device", "cuda")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    report = json.loads((tmp_path / f"build-{nproc}.json").read_text())
    for row in report["memory"]:
        assert row["local_bytes"] * nproc == row["full_bytes"]
        assert row["rss_added"] < 1.25 * row["full_bytes"] / nproc  # GPU bytes allocated
    proc = subprocess.run(  # the checkpoint at world size 1, on one GPU
        [sys.executable, worker, "load", "--out", str(tmp_path), "--device", "cuda"],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_sharded_build_on_cuda_equals_a_cuda_build():
    from modelfactory.builder.sharded import build_sharded, full_state_dict
    from modelfactory.distributed import process_group

    with process_group(torch.device("cuda", 0)):
        model = build_sharded(
            CONF / "model" / "resnet18.yaml", shard=["layer*"], device="cuda", init=XAVIER
        )
        assert {p.device.type for p in model.parameters()} == {"cuda"}
        got = full_state_dict(model)
    want = mf.build(CONF / "model" / "resnet18.yaml", device="cuda", init=XAVIER).state_dict()
    for key, value in want.items():
        assert torch.equal(got[key], value.cpu()), key
