"""Stage: validated spec -> ``nn.Module`` tree.

Lists become ``nn.Sequential``; layers are built from the registry; every block
reference is a fresh instance; every ``shared`` reference is the same object.
Nothing here re-validates: the spec is already known to be well formed.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import ConfigProblem, ModelFactoryError, format_path
from .graph import ProgramStep, composite_class
from .registry import LAYERS, OPS
from .spec import BlockRef, CompositeNode, ConstantSpec, LayerNode, ModelSpec, RepeatNode, SharedRef

__all__ = [
    "BuildInfo",
    "construct",
    "derive_seed",
    "make_generator",
    "fill_constant",
    "TORCH_DTYPES",
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


def derive_seed(seed: int, path: str) -> int:
    """A 63-bit seed for ``path``: changing one tensor's rules never shifts another's stream."""
    digest = hashlib.sha256(f"{seed}\x00{path}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, path: str) -> torch.Generator:
    """A CPU generator for ``path``'s own random stream (identical on every device)."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(seed, path))


def fill_constant(
    spec: ConstantSpec, *, seed: int, path: str, device: torch.device
) -> torch.Tensor:
    """Create a constant's tensor from its own seeded stream, drawn on the CPU."""
    dtype = TORCH_DTYPES[spec.dtype]
    if device.type == "meta":
        return torch.empty(spec.shape, dtype=dtype, device=device)
    gen = make_generator(seed, path)
    if spec.fill == "rand":
        tensor = torch.rand(spec.shape, generator=gen, dtype=dtype)
    elif spec.fill == "randn":
        tensor = torch.randn(spec.shape, generator=gen, dtype=dtype)
    elif spec.fill == "zeros":
        tensor = torch.zeros(spec.shape, dtype=dtype)
    elif spec.fill == "ones":
        tensor = torch.ones(spec.shape, dtype=dtype)
    elif spec.fill == "full":
        tensor = torch.full(spec.shape, float(spec.value or 0.0), dtype=dtype)
    else:  # arange: 0, 1, 2, ... laid out in the requested shape
        count = 1
        for size in spec.shape:
            count *= size
        tensor = torch.arange(count, dtype=dtype).reshape(spec.shape)
    return tensor.to(device)


@dataclass
class BuildInfo:
    """What a built model was made from; attached to the root module as ``modelfactory_info``."""

    spec: ModelSpec
    seed: int
    device: str
    init: Any = None
    facts: dict[str, Any] = field(default_factory=dict)


class _Builder:
    def __init__(self, spec: ModelSpec, *, seed: int, device: torch.device) -> None:
        self.spec = spec
        self.seed = seed
        self.device = device
        self.shared: dict[str, nn.Module] = {}

    def build(self, node: Any, path: tuple[Any, ...], class_name: str | None = None) -> nn.Module:
        if isinstance(node, LayerNode):
            return self._layer(node, path)
        if isinstance(node, (list, tuple)):
            return nn.Sequential(*(self.build(item, path + (i,)) for i, item in enumerate(node)))
        if isinstance(node, BlockRef):
            return self.build(self.spec.blocks[node.block], ("blocks", node.block), node.block)
        if isinstance(node, SharedRef):
            if node.shared not in self.shared:
                self.shared[node.shared] = self.build(
                    self.spec.shared[node.shared], ("shared", node.shared), node.shared
                )
            return self.shared[node.shared]
        if isinstance(node, RepeatNode):
            seq = nn.Sequential()
            for name in node.child_names():
                seq.add_module(name, self.build(node.body, path + ("body",)))
            return seq
        if isinstance(node, CompositeNode):
            return self._composite(node, path, class_name)
        raise TypeError(
            f"not a validated node at {format_path(path)}: {node!r}"
        )  # pragma: no cover

    def _layer(self, node: LayerNode, path: tuple[Any, ...]) -> nn.Module:
        entry = LAYERS.get(node.type)
        try:
            return entry.target(**node.args)
        except Exception as err:  # torch's own argument checks, in its own words
            raise ModelFactoryError(
                f"could not build layer {node.type}",
                [
                    ConfigProblem(
                        format_path(path), f"{node.type}({_call_args(node.args)}) failed: {err}"
                    )
                ],
            ) from err

    def _composite(
        self, node: CompositeNode, path: tuple[Any, ...], class_name: str | None
    ) -> nn.Module:
        program = []
        assert node.forward is not None  # filled in by validation
        current = node.inputs[0]
        for index, step in enumerate(node.forward):
            inputs = step.inputs if step.inputs is not None else (current,)
            output = step.out if step.out is not None else f"%{index}"
            label = format_path(path + ("forward", index))
            if step.call is not None:
                program.append(ProgramStep(inputs, output, child=step.call, label=label))
            else:
                assert step.op is not None
                fn = OPS.get(step.op).target
                bound = functools.partial(fn, **step.args) if step.args else fn
                program.append(ProgramStep(inputs, output, fn=bound, label=label))
            current = output
        cls = composite_class(node.name or class_name or "Block")
        module = cls(node.inputs, program, node.resolved_outputs())
        for name, child in node.children.items():
            module.add_module(name, self.build(child, path + ("children", name)))
        for name, constant in node.constants.items():
            tensor = fill_constant(
                constant,
                seed=self.seed,
                path=format_path(path + ("constants", name)),
                device=self.device,
            )
            module.register_buffer(name, tensor, persistent=True)
        return module


def _call_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def construct(spec: ModelSpec, *, device: torch.device, seed: int) -> nn.Module:
    """Build the module tree of ``spec`` with its tensors created on ``device``.

    Layers' own default initialisation draws from torch's global generator; it
    runs inside ``fork_rng`` seeded with ``seed`` so a build is reproducible
    and leaves the caller's random state untouched.
    """
    builder = _Builder(spec, seed=seed, device=device)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        with device:
            return builder.build(spec.network, ("network",))
