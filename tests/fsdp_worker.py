"""One rank of the sharded-build checks, run by tests under ``torchrun --nproc_per_node N`` (or alone).

    torchrun --nproc_per_node 2 tests/fsdp_worker.py build --out DIR [--device cpu|cuda]
    python tests/fsdp_worker.py load --out DIR            # world size 1, reads DIR's checkpoints

``build`` builds ``big_mlp`` at a reduced width (and the tie, shared-module,
BatchNorm and uneven models) sharded over every rank, compares the gathered
weights and the forward output with the single-process ``modelfactory.build``
bit for bit, checks gradients, the memory per rank and a refused tie layout,
saves DCP checkpoints into DIR and loads them back (and a 1-process checkpoint
resharded over every rank).
``load`` loads them sharded over its own ranks and compares again. Every check
is an assert; rank 0 writes ``DIR/<phase>-<world>.json`` with what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import modelfactory as mf  # noqa: E402
from modelfactory.builder.forward import make_input  # noqa: E402
from modelfactory.builder.shard_plan import ShardError  # noqa: E402
from modelfactory.builder.sharded import (  # noqa: E402
    build_sharded,
    full_state_dict,
    local_parameter_bytes,
)
from modelfactory.distributed import (  # noqa: E402
    broadcast_object,
    gather_objects,
    process_group,
    rank,
    world_size,
)
from modelfactory.io.dcp import (  # noqa: E402
    dcp_to_safetensors,
    load_dcp,
    safetensors_to_dcp,
    save_dcp,
)

SEED = 1234
TIED_RULE = [{"module": "head", "param": "weight", "scheme": "normal", "std": 0.5}]
MLP_RULES = [{"type": "Linear", "param": "bias", "scheme": "uniform", "a": -0.1, "b": 0.1}]


def big_mlp(width: int) -> dict:
    """conf/model/big_mlp.yaml with its 4096-wide layers narrowed to ``width``."""
    data = yaml.safe_load((ROOT / "conf" / "model" / "big_mlp.yaml").read_text())
    data["blocks"]["layer"][0].update(in_features=width, out_features=width)
    data["input"]["shape"] = [2, width]
    return data


def cases(device: str) -> list[tuple[str, object, list, object]]:
    zoo = ROOT / "conf" / "model"
    return [
        ("big_mlp", big_mlp(96), ["*"], MLP_RULES),
        ("tied_lm", zoo / "tied_lm.yaml", [["embedding", "head"], "body"], TIED_RULE),
        ("shared", zoo / "shared.yaml", ["2"], None),
        ("resnet18", zoo / "resnet18.yaml", ["layer*"], None),  # BatchNorm buffers
        ("uneven", {"input": {"shape": [3, 5]}, "network": [
            {"type": "Linear", "in_features": 5, "out_features": 37}, "ReLU",
            {"type": "Linear", "in_features": 37, "out_features": 1}]}, ["*"], None),
    ]  # fmt: skip


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.cpu(), b.cpu())


def compare(name: str, got: dict, want: dict) -> None:
    """Rank 0's gathered state dict against the reference, bit for bit."""
    if rank() != 0:
        assert got == {}, "the full state dict is gathered on rank 0 only"
        return
    assert sorted(got) == sorted(want), (name, sorted(got), sorted(want))
    differ = [k for k in want if not bits_equal(got[k], want[k])]
    assert not differ, f"{name}: gathered values differ from modelfactory.build: {differ}"


def vmrss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def held_bytes(device: str) -> int:
    """Resident memory of this process (CPU), or memory allocated on its GPU."""
    return torch.cuda.memory_allocated(device) if device.startswith("cuda") else vmrss()


def memory_check(device: str) -> dict:
    """Parameter bytes per rank, and memory added by one sharded build of 32 MiB."""
    spec = big_mlp(1024)  # 8 x Linear(1024, 1024): 8,396,800 parameters, 32.03 MiB
    build_sharded(big_mlp(64), shard=["*"], device=device, seed=0)  # one-time costs first
    before = held_bytes(device)
    model = build_sharded(spec, shard=["*"], device=device, seed=0)
    after = held_bytes(device)
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    return {
        "full_bytes": full,
        "local_bytes": local_parameter_bytes(model),
        "rss_added": after - before,
    }


def gradients(device: str, spec: object, shard: list, init: object) -> None:
    """Forward + backward with each rank on its slice of the batch: grads allclose to one process."""
    model = build_sharded(spec, shard=shard, device=device, seed=SEED, init=init)
    ref = mf.build(spec, device=device, seed=SEED, init=init)
    x = make_input(ref.modelfactory_info.spec.input, seed=5, device=device)
    share = x.shape[0] // world_size()
    mine = x[rank() * share : (rank() + 1) * share]
    model(mine).pow(2).mean().backward()
    ref(x[: share * world_size()]).pow(2).mean().backward()
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.allclose(p.grad.full_tensor(), q.grad, rtol=1e-5, atol=1e-7), name


def build_phase(out: Path, device: str) -> dict:
    report: dict = {"world": world_size()}
    # first, so that no memory freed by earlier builds is reused and hides what this one holds
    report["memory"] = gather_objects(memory_check(device))
    for name, spec, shard, init in cases(device):
        model = build_sharded(spec, shard=shard, device=device, seed=SEED, init=init)
        ref = mf.build(spec, device=device, seed=SEED, init=init) if rank() == 0 else None
        want = ref.state_dict() if ref is not None else {}
        compare(name, full_state_dict(model), want)
        x = make_input(model.modelfactory_info.spec.input, seed=9, device=device)
        model.eval()  # BatchNorm: running statistics, as the reference below
        with torch.no_grad():
            out_x = model(x)  # every rank: the forward gathers each unit from all of them
            if ref is not None:
                assert torch.equal(out_x, ref.eval()(x)), f"{name}: forward output differs"
        if name == "tied_lm":
            assert model.head.weight is model.embedding.weight, "tie kept on the shards"
        if name in ("big_mlp", "tied_lm"):
            save_dcp(model, out / f"{name}.dcp", overwrite=True)
            again = load_dcp(out / f"{name}.dcp", shard=shard, device=device)
            compare(f"{name} (DCP, same world)", full_state_dict(again), want)
            if rank() == 0:
                single = dcp_to_safetensors(out / f"{name}.dcp", out / f"{name}.safetensors")
                loaded = mf.load(single, device=device).state_dict()
                assert all(bits_equal(loaded[k], want[k]) for k in want), name
                safetensors_to_dcp(single, out / f"{name}-1.dcp", overwrite=True)  # world size 1
            broadcast_object(None)
            resharded = load_dcp(out / f"{name}-1.dcp", shard=shard, device=device)
            compare(f"{name} (1-process DCP resharded)", full_state_dict(resharded), want)
    gradients(device, big_mlp(96), ["*"], MLP_RULES)
    try:
        build_sharded(cases(device)[1][1], shard=["embedding"], device=device, seed=SEED)
        raise AssertionError("a tie split across FSDP units was not refused")
    except ShardError as err:
        report["refused"] = str(err)
    return report


def load_phase(out: Path, device: str) -> dict:
    for name, spec, shard, init in cases(device)[:2]:
        model = load_dcp(out / f"{name}.dcp", shard=shard, device=device)
        want = (
            mf.build(spec, device=device, seed=SEED, init=init).state_dict() if rank() == 0 else {}
        )
        compare(f"{name} (DCP loaded at world {world_size()})", full_state_dict(model), want)
    return {"world": world_size()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["build", "load"])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}" if args.device == "cuda" else "cpu")
    with process_group(device):
        phase = build_phase if args.phase == "build" else load_phase
        report = phase(args.out, str(device))
        if rank() == 0:
            path = args.out / f"{args.phase}-{world_size()}.json"
            path.write_text(json.dumps(report, indent=1) + "\n")
            print(f"fsdp_worker {args.phase}: all checks passed on {world_size()} rank(s)")


if __name__ == "__main__":
    main()
