"""Stage: the forward pass on the declared random input, with per-layer activation statistics.

Looking at a model never changes it: every forward pass here runs with the
model's buffers restored afterwards (:func:`buffers_kept`), so a BatchNorm's
running statistics and ``num_batches_tracked`` are what the build made, and a
checkpoint saved after the run equals a fresh build bit for bit. The model
stays in the mode it was built in (training mode: BatchNorm normalises with
the batch's statistics, dropout is active), so the statistics describe the
model as training would first see it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ModelFactoryError
from ..spec.tensors import InputSpec
from .streams import INPUT_STREAM, TORCH_DTYPES, draw, make_generator

__all__ = ["make_input", "ForwardResult", "run_forward", "buffers_kept", "tensor_stats"]


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


@contextlib.contextmanager
def buffers_kept(model: nn.Module) -> Iterator[None]:
    """Run the body, then put every buffer of ``model`` back as it was (values, not objects).

    A training-mode forward pass updates BatchNorm's running statistics and
    ``num_batches_tracked``; inside this block it still does, and the values
    are restored on exit (even after an error).
    """
    saved = [
        (buffer, buffer.detach().clone())
        for buffer in model.buffers()
        if buffer.device.type != "meta"
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


@dataclass
class ForwardResult:
    """The output of the forward pass and what was measured along the way.

    ``seconds`` is one forward pass without hooks, timed after the statistics
    pass (so it is warm and measures the model, not the statistics).
    """

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
    # the std of one element is undefined: None (a gap in plots), never 0
    std = f.std().item() if f.numel() > 1 else None
    stats.update(
        mean=_finite(f.mean().item()),
        std=_finite(std),
        min=_finite(f.min().item()),
        max=_finite(f.max().item()),
    )
    return stats


def _finite(value: float | None) -> float | None:
    """``value``, or None for NaN and infinities (JSON has no NaN)."""
    return value if value is not None and math.isfinite(value) else None


def _leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    # Every leaf once, under its first path (a shared module is one module).
    return [(name, m) for name, m in model.named_modules() if not list(m.children()) and name]


def run_forward(model: nn.Module, x: torch.Tensor, *, timed: bool = True) -> ForwardResult:
    """Run ``model(x)`` without gradients, recording each leaf module's output statistics.

    Then (``timed``) one more pass without hooks, which is what ``seconds``
    measures. Buffers are as before either pass.
    """
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
        with buffers_kept(model), torch.no_grad():
            start = time.perf_counter()
            output = model(x)
            seconds = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
    if timed:
        with buffers_kept(model), torch.no_grad():
            _synchronize(x)
            start = time.perf_counter()
            model(x)
            _synchronize(x)
            seconds = time.perf_counter() - start
    return ForwardResult(output=output, seconds=seconds, activations=records)


def _synchronize(x: torch.Tensor) -> None:
    """Wait for queued GPU work, so a timing measures the pass itself."""
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
