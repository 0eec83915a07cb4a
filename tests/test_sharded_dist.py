"""CI: 2 CPU processes under torchrun (gloo): a sharded big_mlp equals the single-process build,
each rank holds half of it, and its DCP checkpoint loads back at world size 1.

Everything runs in a few processes started once (``tests/fsdp_worker.py``); about 30 s in all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import CONF, ROOT, torchrun

import modelfactory as mf
from modelfactory.builder.forward import make_input
from modelfactory.io.dcp import load_dcp, read_dcp

WORKER = ROOT / "tests" / "fsdp_worker.py"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Run the build checks on 2 ranks once; the tests below read what they left."""
    out = tmp_path_factory.mktemp("fsdp2")
    # freed memory goes back to the OS at once, so resident memory measures what is held
    proc = torchrun(
        2, str(WORKER), "build", "--out", str(out), env={"MALLOC_MMAP_THRESHOLD_": "1048576"}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "all checks passed on 2 rank(s)" in proc.stdout
    return out, json.loads((out / "build-2.json").read_text())


def test_two_ranks_build_big_mlp_equal_to_one_process_and_save_with_dcp(built):
    out, report = built
    assert report["world"] == 2  # the asserts in fsdp_worker.py passed on both ranks
    for name in ("big_mlp", "tied_lm"):
        checkpoint = read_dcp(out / f"{name}.dcp")
        assert checkpoint.world_size == 2
        assert sorted(p.name for p in (out / f"{name}.dcp").glob("*.distcp")) == [
            "__0_0.distcp",
            "__1_0.distcp",
        ]


def test_each_rank_holds_half_of_the_parameters(built):
    _, report = built
    assert len(report["memory"]) == 2
    for row in report["memory"]:
        assert row["local_bytes"] * 2 == row["full_bytes"] == 33_587_200
        # resident memory added by the build: its half of the parameters plus little else
        assert 0.4 * row["full_bytes"] < row["rss_added"] < 0.75 * row["full_bytes"], row


def test_a_tie_split_across_units_is_refused_on_every_rank(built):
    _, report = built
    assert "tied parameter 'embedding.weight' = 'head.weight' would be split" in report["refused"]


def test_the_two_rank_checkpoint_loads_at_world_size_one(built):
    out, _ = built
    # sharded over one rank, in a process of its own
    proc = subprocess.run(
        [sys.executable, str(WORKER), "load", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "all checks passed on 1 rank(s)" in proc.stdout
    # and as one plain model in this process, equal to the single-process build
    sys.path.insert(0, str(ROOT / "tests"))
    from fsdp_worker import MLP_RULES, SEED, big_mlp

    model = load_dcp(out / "big_mlp.dcp")
    want = mf.build(big_mlp(96), seed=SEED, init=MLP_RULES).state_dict()
    assert sorted(model.state_dict()) == sorted(want)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in want.items())
    single = mf.load(out / "big_mlp.safetensors")  # converted from the DCP dir on rank 0
    assert all(torch.equal(single.state_dict()[k], v) for k, v in want.items())


def test_run_py_parallel_fsdp_under_torchrun(tmp_path):
    overrides = [
        "model=big_mlp",
        "model.blocks.layer.0.in_features=64",
        "model.blocks.layer.0.out_features=64",
        "model.input.shape=[2,64]",
        "parallel=fsdp",
        "parallel.safetensors=true",
        "print_model=false",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = torchrun(2, str(ROOT / "run.py"), *overrides)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert proc.stdout.count("output: shape (2, 64)") == 1  # rank 0 prints
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["strategy"] == "fsdp" and metrics["parallel"]["world_size"] == 2
    assert metrics["parallel"]["units"] == [str(i) for i in range(8)] + ["<root>"]
    ranks = metrics["parallel"]["ranks"]
    assert [r["local_parameter_bytes"] for r in ranks] == [8 * (64 * 64 + 64) * 2] * 2
    spec = mf.validate(CONF / "model" / "big_mlp.yaml").model_dump(mode="json")
    spec["blocks"]["layer"][0].update(in_features=64, out_features=64)
    spec["input"]["shape"] = [2, 64]
    ref = mf.build(spec, seed=0)
    out = ref(make_input(ref.modelfactory_info.spec.input, seed=0))
    assert metrics["output"]["mean"] == pytest.approx(out.mean().item(), rel=1e-6)
    loaded = load_dcp(tmp_path / "model.dcp")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in ref.state_dict().items())
    assert all(torch.equal(mf.load(tmp_path / "model.safetensors").state_dict()[k], v)
               for k, v in ref.state_dict().items())  # fmt: skip


def test_run_py_refuses_a_split_tie_cleanly(tmp_path):
    # the plan is checked the same way on every rank; one process (no torchrun) shows the message
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "model=tied_lm", "parallel=fsdp",
         "parallel.shard=[embedding]", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "error: invalid shard plan: 1 problem(s)" in proc.stderr
    assert "parallel.shard[0]: tied parameter 'embedding.weight' = 'head.weight'" in proc.stderr
