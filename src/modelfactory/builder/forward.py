"""Stage: the forward pass on the declared random input, with per-layer activation statistics."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ModelFactoryError
from ..spec.tensors import InputSpec
from .streams import INPUT_STREAM, TORCH_DTYPES, draw, make_generator

__all__ = ["make_input", "ForwardResult", "run_forward"]


def make_input(spec: InputSpec, *, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The seeded random input described by ``input:``, drawn on the CPU then moved."""
    dtype = TORCH_DTYPES[spec.resolved_dtype]
    generator = make_generator(seed, INPUT_STREAM)
    try:
        x = draw(spec.dist, spec.shape, dtype=dtype, generator=generator, high=spec.high)
        return x.to(device)
    except (RuntimeError, MemoryError) as err:  # out of memory for a large declared input
        size = math.prod(spec.shape) * dtype.itemsize
        raise ModelFactoryError(
            f"input: could not allocate the declared input of shape {list(spec.shape)} "
            f"({spec.resolved_dtype}, {size:,} bytes) on {device}: "
            f"{str(err).splitlines()[0][:200] if str(err) else type(err).__name__}. "
            "Declare a smaller input shape."
        ) from None


@dataclass
class ForwardResult:
    """The output of the forward pass and what was measured along the way."""

    output: Any
    seconds: float
    activations: list[dict[str, Any]] = field(default_factory=list)

    def output_stats(self) -> dict[str, Any]:
        """Shape, mean, std, min and max of the (first) output tensor."""
        out = self.output[0] if isinstance(self.output, tuple) else self.output
        return tensor_stats(out)


def tensor_stats(t: torch.Tensor) -> dict[str, Any]:
    """Summary statistics of a tensor as plain floats (NaN-safe, meta-safe)."""
    stats: dict[str, Any] = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
    if t.device.type == "meta" or t.numel() == 0:
        return stats
    f = t.detach().float()
    stats.update(
        mean=f.mean().item(),
        std=f.std().item() if f.numel() > 1 else 0.0,
        min=f.min().item(),
        max=f.max().item(),
    )
    return stats


def _leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    # Every leaf once, under its first path (a shared module is one module).
    return [(name, m) for name, m in model.named_modules() if not list(m.children()) and name]


def run_forward(model: nn.Module, x: torch.Tensor) -> ForwardResult:
    """Run ``model(x)`` without gradients, recording each leaf module's output statistics."""
    records: list[dict[str, Any]] = []
    calls: dict[str, int] = {}

    def hook_for(name: str):
        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                calls[name] = calls.get(name, 0) + 1
                records.append(
                    {
                        "module": name,
                        "type": type(module).__name__,
                        "call": calls[name],
                        **tensor_stats(output),
                    }
                )

        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in _leaf_modules(model)]
    try:
        start = time.perf_counter()
        with torch.no_grad():
            output = model(x)
        seconds = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
    return ForwardResult(output=output, seconds=seconds, activations=records)
