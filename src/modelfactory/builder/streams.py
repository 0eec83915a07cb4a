"""The random streams: every name a seed is derived from, and the draws made from them.

Each tensor draws from its own stream, derived from the build's seed and a
stream name, so changing one layer or rule never shifts another's values and
the meta path (construct on meta, then reset each layer) reproduces the
direct path bit for bit. Both paths name their streams only through the
functions here.
"""

from __future__ import annotations

import hashlib
import math

import torch

__all__ = [
    "TORCH_DTYPES",
    "INPUT_STREAM",
    "layer_stream",
    "param_stream",
    "constant_stream",
    "learned_stream",
    "derive_seed",
    "make_generator",
    "seed_default_generator",
    "draw",
]

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "bool": torch.bool,
}

INPUT_STREAM = "input"  # the random input of the forward pass


def layer_stream(module_path: str) -> str:
    """The stream of a layer's own default init (``reset_parameters``)."""
    return f"layer:{module_path}"


def param_stream(name: str) -> str:
    """The stream of an init rule applied to the parameter ``name``."""
    return f"param:{name}"


def constant_stream(module_path: str) -> str:
    """The stream a constant is filled from (``module_path`` is the buffer's full name)."""
    return f"constant:{module_path}"


def learned_stream(module_path: str) -> str:
    """The stream a composite's learned parameter is filled from (its full name, e.g. ``cls_token``).

    Distinct from :func:`param_stream`: an init rule that later re-initialises
    the parameter draws from its own stream, never this one.
    """
    return f"learned:{module_path}"


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream``: changing one tensor's rules never shifts another's stream."""
    digest = hashlib.sha256(f"{seed}\x00{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seed_default_generator(device: torch.device, seed: int) -> None:
    """Seed the generator that default init on ``device`` draws from.

    Not ``torch.manual_seed``: on a machine where CUDA is not initialised it
    records a formatted stack trace per call (about 0.5 ms), which dominated
    building models of many small layers.
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def make_generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for ``stream`` (on the CPU unless ``device`` says otherwise)."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, stream))


def draw(
    kind: str,
    shape: tuple[int, ...],
    *,
    dtype: torch.dtype,
    generator: torch.Generator,
    value: float | None = None,
    high: int | None = None,
) -> torch.Tensor:
    """A CPU tensor filled as ``kind`` says (rand, randn, zeros, ones, full, arange, randint)."""
    if kind == "rand":
        return torch.rand(shape, generator=generator, dtype=dtype)
    if kind == "randn":
        return torch.randn(shape, generator=generator, dtype=dtype)
    if kind == "randint":
        assert high is not None  # checked by InputSpec
        return torch.randint(0, high, shape, generator=generator, dtype=dtype)
    if kind == "zeros":
        return torch.zeros(shape, dtype=dtype)
    if kind == "ones":
        return torch.ones(shape, dtype=dtype)
    if kind == "full":
        return torch.full(shape, float(value or 0.0), dtype=dtype)
    # arange: 0, 1, 2, ... laid out in the requested shape
    return torch.arange(math.prod(shape), dtype=dtype).reshape(shape)
