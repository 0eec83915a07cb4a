"""The ``parallel=fsdp`` side of the run job: every rank builds its shards, runs, and saves with DCP.

Called by :func:`modelfactory.app.job.run_job` on every rank that torchrun or
srun started. Rank 0 prints and writes the run's files; all ranks take part in
the build, the forward, the weight statistics and the checkpoint, which are
collectives. The run directory is rank 0's (each rank's Hydra picks its own,
and the timestamps may differ by a second): pass ``hydra.run.dir`` to fix it.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig

from ..builder.forward import make_input, run_forward
from ..builder.sharded import build_sharded, local_parameter_bytes
from ..checker.shapes import CheckedSpec
from ..distributed import (
    broadcast_object,
    gather_objects,
    launch_env,
    process_group,
    rank,
    rank_device,
    world_size,
)
from ..io.dcp import dcp_to_safetensors, save_dcp
from ..spec.parallel import ParallelSpec
from ..tables import format_init_report, format_parameter_table, format_table, parameter_counts

__all__ = ["run_sharded_job"]

CHECKPOINT_DIR = "model.dcp"


def _peak_rss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _weight_stats(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Mean and std of each parameter over all its shards (one small all-reduce each)."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    stats = []
    for name, param in model.named_parameters():
        local = param.to_local() if isinstance(param, DTensor) else param
        values = local.detach().double().reshape(-1)
        sums = torch.stack([values.sum(), values.square().sum()]).cpu()
        sums = torch.cat([sums, torch.tensor([float(values.numel())], dtype=torch.float64)])
        if isinstance(param, DTensor) and dist.is_initialized():
            sums = sums.to(local.device)
            dist.all_reduce(sums)
            sums = sums.cpu()
        total, squares, count = sums.tolist()
        row: dict[str, Any] = {"name": name, "shape": list(param.shape)}
        if count:
            mean = total / count
            var = max(squares - count * mean * mean, 0.0) / (count - 1) if count > 1 else 0.0
            row.update(mean=mean, std=var**0.5)
        stats.append(row)
    return stats


def _shard_table(model: torch.nn.Module) -> str:
    """Each FSDP unit: its parameters in all, and what this rank holds."""
    from torch.distributed.tensor import DTensor

    plan = model.modelfactory_shard_plan
    totals: dict[str, list[int]] = {label: [0, 0] for label in plan.labels}
    for name, param in model.named_parameters():
        unit = plan.unit_of[name.rpartition(".")[0]]
        local = param.to_local() if isinstance(param, DTensor) else param
        totals[unit][0] += param.numel()
        totals[unit][1] += local.numel()
    rows = [[label, f"{a:,}", f"{b:,}"] for label, (a, b) in totals.items()]
    return format_table(["FSDP unit", "parameters", f"on rank {rank()}"], rows, {1, 2})


def run_sharded_job(
    cfg: DictConfig,
    parallel: ParallelSpec,
    checked: CheckedSpec,
    init: Any,
    *,
    output_dir: Path,
    label: str | None,
    timings: dict[str, float],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Build, run and save one model sharded over every rank; rank 0 returns the metrics."""
    env = launch_env()
    device = rank_device(cfg.device, env.local_rank, env.world_size)
    with process_group(device, parallel.backend):
        out = Path(broadcast_object(str(output_dir)))  # rank 0's run directory, on every rank
        leader = rank() == 0
        spec = checked.spec
        start = time.perf_counter()
        model = build_sharded(checked, shard=parallel, device=device, seed=_seed(cfg), init=init)
        timings["build_s"] = time.perf_counter() - start
        info = model.modelfactory_info
        if leader and cfg.get("print_model", True):
            print(model, end="\n\n")
            print(_shard_table(model), end="\n\n")
            print(format_parameter_table(model), end="\n\n")
            print(format_init_report(info.init_report), end="\n\n")

        x = make_input(spec.input, seed=_seed(cfg), device=device)
        result = run_forward(model, x)  # the same input on every rank
        timings["forward_s"] = result.seconds
        stats = result.output_stats()
        weights = _weight_stats(model)
        if leader:
            print(
                f"output: shape {tuple(stats['shape'])}"
                + "".join(
                    f", {k} {stats[k]:.6g}" for k in ("mean", "std", "min", "max") if k in stats
                )
            )

        checkpoint = out / CHECKPOINT_DIR
        start = time.perf_counter()
        save_dcp(model, checkpoint, overwrite=True)
        timings["save_s"] = time.perf_counter() - start
        single = None
        if parallel.safetensors:
            if leader:
                single = dcp_to_safetensors(checkpoint, out / "model.safetensors")
            broadcast_object(None)  # no rank leaves before the file is there
        per_rank = gather_objects(
            {
                "rank": rank(),
                "device": str(device),
                "local_parameter_bytes": local_parameter_bytes(model),
                "peak_rss_bytes": _peak_rss_bytes(),
                "peak_cuda_bytes": torch.cuda.max_memory_allocated(device)
                if device.type == "cuda"
                else None,
            }
        )
        if not leader:
            return {}
        (out / "init_report.json").write_text(json.dumps(info.init_report, indent=2) + "\n")
        (out / "architecture.yaml").write_text(
            yaml.safe_dump(info.spec.model_dump(mode="json"), sort_keys=False)
        )
        metrics = {
            "status": "ok",
            "model": spec.name or label,
            "init": (init or {}).get("name") if isinstance(init, dict) else None,
            "strategy": "fsdp",
            "device": str(device),
            "seed": _seed(cfg),
            "input_shape": list(spec.input.shape),
            "output": stats,
            "parameters": parameter_counts(model),
            "timings": timings,
            "checkpoint": str(checkpoint),
            "checkpoint_safetensors": str(single) if single else None,
            "parallel": {
                "world_size": world_size(),
                "units": info.facts["units"],
                "reshard_after_forward": parallel.reshard_after_forward,
                "ranks": per_rank,
            },
            "activations": result.activations,
            "weights": weights,
            **extra,
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"wrote {out}")
        return metrics


def _seed(cfg: DictConfig) -> int:
    from .job import job_seed  # job imports this module lazily; the seed check lives there

    return job_seed(cfg)
