"""Stage: validated spec -> ``nn.Module`` tree.

Lists become ``nn.Sequential``; layers are built from the registry; every block
reference is a fresh instance; every ``shared`` reference is the same object.
Nothing here re-validates: the spec is already known to be well formed.
"""

from __future__ import annotations

import functools
import gc
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import ConfigProblem, ModelFactoryError, format_path
from .graph import ProgramStep, composite_class
from .registry import LAYERS, OPS
from .spec import (
    BlockRef,
    CompositeNode,
    ConstantSpec,
    LayerNode,
    ModelSpec,
    NamedSequential,
    RepeatNode,
    SharedRef,
)

__all__ = [
    "BuildInfo",
    "construct",
    "derive_seed",
    "make_generator",
    "seed_default_generator",
    "fill_constant",
    "draw",
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


def make_generator(seed: int, path: str) -> torch.Generator:
    """A CPU generator for ``path``'s own random stream (identical on every device)."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(seed, path))


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
    count = 1  # arange: 0, 1, 2, ... laid out in the requested shape
    for size in shape:
        count *= size
    return torch.arange(count, dtype=dtype).reshape(shape)


def fill_constant(
    spec: ConstantSpec, *, seed: int, path: str, device: torch.device
) -> torch.Tensor:
    """Create a constant's tensor from its own seeded stream, drawn on the CPU."""
    dtype = TORCH_DTYPES[spec.dtype]
    if device.type == "meta":
        return torch.empty(spec.shape, dtype=dtype, device=device)
    tensor = draw(
        spec.fill, spec.shape, dtype=dtype, generator=make_generator(seed, path), value=spec.value
    )
    return tensor.to(device)


@dataclass
class BuildInfo:
    """What a built model was made from; attached to the root module as ``modelfactory_info``."""

    spec: ModelSpec
    seed: int
    device: str
    init: Any = None  # the rules applied, in order, with where each was written
    facts: dict[str, Any] = field(default_factory=dict)
    # which rule set each parameter; a callable until first read (cheap builds need no report)
    report: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]] = field(
        default_factory=list, repr=False
    )

    @property
    def init_report(self) -> list[dict[str, Any]]:
        """One row per parameter tensor: the rule (or ``default``) that initialised it."""
        if callable(self.report):
            self.report = self.report()
        return self.report


@dataclass
class BuildRecord:
    """What construction made, for the stages after it (materialisation, init, checks).

    ``layers`` lists every registry-built layer with its module path, in
    construction order; ``constants`` every constant buffer with its spec and
    random-stream name.
    """

    layers: list[tuple[str, nn.Module]] = field(default_factory=list)
    constants: list[tuple[nn.Module, str, ConstantSpec, str]] = field(default_factory=list)
    config_paths: dict[int, tuple[Any, ...]] = field(
        default_factory=dict
    )  # id(module) -> config path
    block_types: dict[str, type] = field(default_factory=dict)  # composite block name -> class
    nodes: dict[int, LayerNode] = field(default_factory=dict)  # id(layer module) -> its spec node


def _join(module_path: str, name: str | int) -> str:
    return f"{module_path}.{name}" if module_path else str(name)


class _Builder:
    def __init__(
        self, spec: ModelSpec, *, seed: int, device: torch.device, defer: Any = None
    ) -> None:
        self.defer = defer  # makes a stand-in for a layer whose sizes are still to be inferred
        self.spec = spec
        self.seed = seed
        self.device = device
        self.shared: dict[str, nn.Module] = {}
        self.record = BuildRecord()

    def build(
        self, node: Any, path: tuple[Any, ...], where: str, class_name: str | None = None
    ) -> nn.Module:
        """Build ``node`` (at config ``path``) to sit at module path ``where``."""
        if isinstance(node, BlockRef):
            return self.build(
                self.spec.blocks[node.block], ("blocks", node.block), where, node.block
            )
        if isinstance(node, SharedRef):
            if node.shared not in self.shared:
                definition = self.spec.shared[node.shared]
                self.shared[node.shared] = self.build(
                    definition, ("shared", node.shared), where, node.shared
                )
            return self.shared[node.shared]
        if isinstance(node, LayerNode):
            module = self._layer(node, path, where)
        elif isinstance(node, (list, tuple)):
            module = nn.Sequential(
                *(self.build(item, path + (i,), _join(where, i)) for i, item in enumerate(node))
            )
        elif isinstance(node, RepeatNode):
            module = nn.Sequential()
            for name in node.child_names():
                module.add_module(name, self.build(node.body, path + ("body",), _join(where, name)))
        elif isinstance(node, NamedSequential):
            module = nn.Sequential()
            for name, child in node.sequential.items():
                module.add_module(
                    name, self.build(child, path + ("sequential", name), _join(where, name))
                )
        elif isinstance(node, CompositeNode):
            module = self._composite(node, path, where, class_name)
        else:  # pragma: no cover - validation guarantees a node kind
            raise TypeError(f"not a validated node at {format_path(path)}: {node!r}")
        self.record.config_paths[id(module)] = path
        return module

    def _layer(self, node: LayerNode, path: tuple[Any, ...], where: str) -> nn.Module:
        entry = LAYERS.get(node.type)
        missing = node.missing_inferable()
        if missing:
            if self.defer is None:
                raise ModelFactoryError(
                    f"could not build layer {node.type}",
                    [
                        ConfigProblem(
                            format_path(path),
                            f"{', '.join(missing)} must be inferred first: run the shape check (modelfactory.check) or give them",
                        )
                    ],
                )
            module = self.defer(node, path)
            self.record.nodes[id(module)] = node
            return module
        if self.device.type != "meta":
            # Each layer draws its default init from its own stream, so the meta
            # path (reset after materialising) reproduces these exact values and
            # one layer's values never depend on another's.
            seed_default_generator(self.device, derive_seed(self.seed, f"layer:{where}"))
        try:
            module = entry.target(**node.args)
        except Exception as err:  # torch's own argument checks, in its own words
            problem = ConfigProblem(
                format_path(path), f"{node.type}({_call_args(node.args)}) failed: {err}"
            )
            raise ModelFactoryError(f"could not build layer {node.type}", [problem]) from err
        self.record.layers.append((where, module))
        self.record.nodes[id(module)] = node
        return module

    def _composite(
        self, node: CompositeNode, path: tuple[Any, ...], where: str, class_name: str | None
    ) -> nn.Module:
        program = []
        assert node.forward is not None  # filled in by validation
        current = node.inputs[0]
        for index, step in enumerate(node.forward):
            inputs = step.inputs if step.inputs is not None else (current,)
            output = step.out if step.out is not None else f"%{index}"
            if isinstance(output, tuple) and len(output) == 1:
                output = output[0]
            where_in_config = path + ("forward", index)
            if step.call is not None:
                program.append(ProgramStep(inputs, output, child=step.call, path=where_in_config))
            else:
                assert step.op is not None
                fn = OPS.get(step.op).target
                bound = functools.partial(fn, **step.args) if step.args else fn
                program.append(
                    ProgramStep(inputs, output, fn=bound, path=where_in_config, op=step.op)
                )
            current = output if isinstance(output, str) else f"%{index}"
        cls = composite_class(node.name or class_name or "Block")
        self.record.block_types[cls.__name__] = cls
        module = cls(node.inputs, program, node.resolved_outputs())
        for name, child in node.children.items():
            module.add_module(
                name, self.build(child, path + ("children", name), _join(where, name))
            )
        for name, constant in node.constants.items():
            stream = f"constant:{_join(where, name)}"
            tensor = fill_constant(constant, seed=self.seed, path=stream, device=self.device)
            module.register_buffer(name, tensor, persistent=True)
            self.record.constants.append((module, name, constant, stream))
        return module


def _call_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def construct(
    spec: ModelSpec, *, device: torch.device, seed: int, defer: Any = None
) -> tuple[nn.Module, BuildRecord]:
    """Build the module tree of ``spec`` with its tensors created on ``device``.

    Layers' own default initialisation draws from torch's global generator,
    re-seeded per layer from ``seed`` and the layer's module path, inside
    ``fork_rng`` so the caller's random state is untouched. ``defer(node,
    path)`` (dry runs only) stands in for layers whose sizes are inferred.
    """
    builder = _Builder(spec, seed=seed, device=device, defer=defer)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    # The device context routes every torch call through a TorchFunctionMode,
    # which made small layers several times slower to build; skip it when the
    # target already is the default device.
    placement = nullcontext() if device == torch.get_default_device() else device
    with torch.random.fork_rng(devices=fork_devices), placement, _gc_paused():
        module = builder.build(spec.network, ("network",), "")
    return module, builder.record


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while constructing (restored afterwards).

    Building allocates many objects and frees none, so the collector's full
    passes over the (large, torch-filled) heap are pure cost: measured, 10,000
    layers took 0.73 s with it and 0.42 s without (docs/benchmarks.md).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
