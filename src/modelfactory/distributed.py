"""The process group and device mesh a sharded build runs on: torchrun, srun, or one process.

Nothing distributed is written here: ``torch.distributed`` does the work. This
module only reads the launcher's environment (``torchrun`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; under
``srun`` they are derived from ``SLURM_*``), picks each rank's device and
backend, and makes the 1-D mesh over all ranks that FSDP2 shards on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from .devices import resolve_device
from .errors import DeviceError, ModelFactoryError

__all__ = [
    "LaunchEnv",
    "launch_env",
    "rank_device",
    "process_group",
    "device_mesh",
    "rank",
    "world_size",
    "broadcast_object",
    "gather_objects",
]

DEFAULT_PORT = "29500"


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in the job, as the launcher said."""

    rank: int
    world_size: int
    local_rank: int
    launcher: str  # "torchrun", "slurm" or "single"
    variables: dict[str, str]  # what init_process_group reads from the environment


def _int(env: Mapping[str, str], key: str) -> int:
    text = env.get(key, "")
    if not text.isdigit():
        raise ModelFactoryError(
            f"environment: {key}={text!r} is not a non-negative integer; it is set by the "
            "launcher (torchrun or srun). Start the run with torchrun --nproc_per_node N or srun."
        )
    return int(text)


def launch_env(env: Mapping[str, str] | None = None) -> LaunchEnv:
    """This process's rank, world size and local rank, from torchrun's or SLURM's variables.

    Without either (a plain ``python run.py``) the run is one process. Under
    ``srun`` with more than one task, ``MASTER_ADDR`` must be exported (the
    first node of the allocation); ``MASTER_PORT`` defaults to 29500.
    """
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return LaunchEnv(
            _int(env, "RANK"),
            _int(env, "WORLD_SIZE"),
            _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
            "torchrun",
            {},
        )
    tasks = env.get("SLURM_NTASKS") or env.get("SLURM_NPROCS")
    if tasks and tasks.isdigit() and int(tasks) > 1 and "SLURM_PROCID" in env:
        if not env.get("MASTER_ADDR"):
            raise ModelFactoryError(
                "environment: running under srun with several tasks, but MASTER_ADDR is not set. "
                'Export it before srun: export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" '
                "| head -n 1) (see docs/scale.md)."
            )
        rank_, world = _int(env, "SLURM_PROCID"), int(tasks)
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        variables = {
            "RANK": str(rank_),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(local),
            "MASTER_ADDR": env["MASTER_ADDR"],
            "MASTER_PORT": env.get("MASTER_PORT") or DEFAULT_PORT,
        }
        return LaunchEnv(rank_, world, local, "slurm", variables)
    return LaunchEnv(0, 1, 0, "single", {})


def rank_device(requested: str | torch.device, local_rank: int, world: int) -> torch.device:
    """The device of this rank: the CPU, or the GPU ``cuda:LOCAL_RANK``.

    ``cuda`` and ``auto`` give each rank its own GPU. An explicit ``cuda:N``
    is accepted only for a one-process run; ``meta`` cannot hold shards.
    """
    text = str(requested).strip().lower()
    if text in ("cuda", "auto") or (text.startswith("cuda") and world == 1):
        if text == "auto" and resolve_device("auto").type != "cuda":
            return torch.device("cpu")
        wanted = f"cuda:{local_rank}" if text in ("cuda", "auto") else text
        return resolve_device(wanted)
    if text.startswith("cuda"):
        raise DeviceError(
            f"device: '{requested}' names one GPU, but a sharded run gives each rank its own "
            "(cuda:LOCAL_RANK). Use device=cuda."
        )
    target = resolve_device(text)
    if target.type not in ("cpu", "cuda"):
        raise DeviceError(
            f"device: a sharded build needs real memory on cpu or cuda, found '{requested}'. "
            "Use device=cpu or device=cuda."
        )
    return target


def _backend(device: torch.device, backend: str) -> str:
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ModelFactoryError(
            f"parallel.backend: nccl runs on GPUs only, but the device is {device}. "
            "Use backend: gloo (or auto) for device=cpu."
        )
    return backend


@contextmanager
def process_group(device: torch.device, backend: str = "auto") -> Iterator[LaunchEnv]:
    """Join the job's process group for the duration of the block (and leave it after).

    Under torchrun or srun every rank must enter it; a plain one-process run
    gets a one-rank group with no network at all. A group that already exists
    is used as it is and left open.
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise ModelFactoryError("parallel: this torch build has no torch.distributed support")
    if dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        yield LaunchEnv(dist.get_rank(), dist.get_world_size(), local, "existing", {})
        return
    env = launch_env()
    os.environ.update(env.variables)
    name = _backend(device, backend)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        if env.launcher == "single":
            dist.init_process_group(name, store=dist.HashStore(), rank=0, world_size=1)
        else:
            dist.init_process_group(name, device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError) as err:
        raise ModelFactoryError(
            f"parallel: could not join the process group ({env.launcher}, backend {name}, rank "
            f"{env.rank} of {env.world_size}): {str(err)[:300]}. Check that every rank was "
            "started with the same command and can reach MASTER_ADDR:MASTER_PORT."
        ) from err
    try:
        yield env
    finally:
        dist.destroy_process_group()


def device_mesh(device: torch.device) -> Any:
    """The 1-D mesh over every rank of the default group, on ``device``'s type."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if not (dist.is_available() and dist.is_initialized()):
        raise ModelFactoryError(
            "parallel: no process group. Run under torchrun (or srun), or wrap the call in "
            "modelfactory.distributed.process_group(device)."
        )
    return init_device_mesh(device.type, (dist.get_world_size(),))


def _initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    import torch.distributed as dist

    return dist.get_rank() if _initialized() else 0


def world_size() -> int:
    """The number of ranks (1 without a process group)."""
    import torch.distributed as dist

    return dist.get_world_size() if _initialized() else 1


def broadcast_object(value: Any, src: int = 0) -> Any:
    """``value`` as rank ``src`` has it, on every rank (itself without a process group)."""
    if not _initialized():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not _initialized():
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out
