"""Devices: parse and check a requested device, and the text's ``try_gpu`` helpers."""

from __future__ import annotations

import logging
import re

import torch

from .errors import DeviceError

__all__ = ["resolve_device", "try_gpu", "try_all_gpus", "available_devices"]

log = logging.getLogger(__name__)

_DEVICE = re.compile(r"^(cpu|cuda|mps|meta|auto)(?::(\d+))?$")


def _cuda_count() -> int:
    # torch built without CUDA raises AssertionError, not RuntimeError, on some
    # calls (autrainer PR #96); device_count() itself is safe but guard anyway.
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except (AssertionError, RuntimeError):
        return 0


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def available_devices() -> list[str]:
    """Every device this process can use, CPU first."""
    devices = ["cpu"] + [f"cuda:{i}" for i in range(_cuda_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def try_gpu(i: int = 0) -> torch.device:
    """``cuda:i`` if it exists, else the CPU (as in the text)."""
    return torch.device(f"cuda:{i}") if _cuda_count() >= i + 1 else torch.device("cpu")


def try_all_gpus() -> list[torch.device]:
    """All GPUs, or ``[cpu]`` when there are none (as in the text)."""
    return [torch.device(f"cuda:{i}") for i in range(_cuda_count())] or [torch.device("cpu")]


def resolve_device(requested: str | torch.device) -> torch.device:
    """Turn ``cpu|cuda|cuda:N|mps|meta|auto`` into an available ``torch.device``.

    ``auto`` picks the first GPU, else the CPU, and logs the choice. An
    explicit device that is not available is an error listing what is.
    """
    text = str(requested).strip().lower()
    match = _DEVICE.match(text)
    if match is None:
        raise DeviceError(
            f"device: unknown device '{requested}'. Use one of cpu, cuda, cuda:N, mps, meta or auto."
        )
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        if index is not None:
            raise DeviceError(f"device: 'auto' takes no index, found '{requested}'")
        chosen = try_gpu(0)
        log.info(
            "device=auto resolved to %s (available: %s)", chosen, ", ".join(available_devices())
        )
        return chosen
    if kind in ("cpu", "meta"):
        if index not in (None, "0"):
            raise DeviceError(f"device: '{kind}' takes no index, found '{requested}'")
        return torch.device(kind)
    available = available_devices()
    if kind == "cuda":
        count = _cuda_count()
        wanted = int(index) if index is not None else 0
        if wanted >= count:
            reason = (
                "torch has no CUDA support or sees no GPU" if count == 0 else f"only {count} GPU(s)"
            )
            raise DeviceError(
                f"device: '{requested}' is not available ({reason}). "
                f"Available: {', '.join(available)}. Use device=auto to pick the best available one."
            )
        return torch.device(f"cuda:{wanted}")
    if not _mps_available():
        raise DeviceError(
            f"device: 'mps' is not available. Available: {', '.join(available)}. "
            "Use device=auto to pick the best available one."
        )
    return torch.device("mps")
