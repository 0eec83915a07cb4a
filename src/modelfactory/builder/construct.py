"""Stage: the checked spec's module tree, constructed (on meta or on the target device).

Lists become ``nn.Sequential``; layers are built from the registry; every block
reference is a fresh instance; every ``shared`` reference is the same object.
Nothing here re-validates: the spec is already known to be well formed.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ConfigProblem, ModelFactoryError, format_path
from ..registry import LAYERS, OPS
from ..spec.model import ModelSpec
from ..spec.nodes import CompositeNode, LayerNode, NamedSequential
from ..spec.program import is_value_ref, kept
from ..spec.tensors import ConstantSpec, ParameterSpec, TensorFill
from ..spec.walk import children, reference
from .composite import ProgramStep, composite_class, sequential_class
from .streams import (
    TORCH_DTYPES,
    constant_stream,
    derive_seed,
    draw,
    layer_stream,
    learned_stream,
    make_generator,
    seed_default_generator,
)

__all__ = ["BuildInfo", "BuildRecord", "construct", "fill_constant"]


def fill_constant(
    spec: TensorFill, *, seed: int, stream: str, device: torch.device
) -> torch.Tensor:
    """Create a constant's (or learned parameter's) tensor from its own seeded stream, on the CPU.

    ``tril``/``triu`` then keep one triangle of the last two dimensions.
    """
    dtype = TORCH_DTYPES[spec.dtype]
    shape = spec.concrete_shape()
    assert shape is not None  # placeholders are substituted when blocks are expanded
    if device.type == "meta":
        return torch.empty(shape, dtype=dtype, device=device)
    generator = make_generator(seed, stream)
    value = spec.value if not isinstance(spec.value, dict) else None
    tensor = draw(spec.fill, shape, dtype=dtype, generator=generator, value=value)
    if spec.tril is not None:
        tensor = torch.tril(tensor, diagonal=spec.tril)
    if spec.triu is not None:
        tensor = torch.triu(tensor, diagonal=spec.triu)
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

    def __getstate__(self) -> dict[str, Any]:
        # A pickled model carries its report, not the callable that would make it.
        return {**self.__dict__, "report": self.init_report}


@dataclass
class BuildRecord:
    """What construction made, for the stages after it (materialisation, init, checks).

    ``layers`` lists every registry-built layer with its module path, in
    construction order; ``constants`` every constant buffer and ``learned``
    every composite-owned parameter, each with its owner, name, spec and
    random-stream name.
    """

    layers: list[tuple[str, nn.Module]] = field(default_factory=list)
    constants: list[tuple[nn.Module, str, ConstantSpec, str]] = field(default_factory=list)
    learned: list[tuple[nn.Module, str, ParameterSpec, str]] = field(default_factory=list)
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
        self.on_default_device = device == torch.get_default_device()
        self.record = BuildRecord()

    def build(
        self, node: Any, path: tuple[Any, ...], where: str, class_name: str | None = None
    ) -> nn.Module:
        """Build ``node`` (at config ``path``) to sit at module path ``where``."""
        found = reference(self.spec, node)
        if found is not None:
            (section, name), definition = found
            if section == "blocks":  # a fresh instance at every use
                return self.build(definition, (section, name), where, name)
            if name not in self.shared:  # one module, wherever it is used
                self.shared[name] = self.build(definition, (section, name), where, name)
            return self.shared[name]
        if isinstance(node, LayerNode):
            module = self._layer(node, path, where)
        elif isinstance(node, CompositeNode):
            module = self._composite(node, path, where, class_name)
        else:  # lists, repeats and named sequentials: a Sequential of their children
            name = node.name if isinstance(node, NamedSequential) else None
            module = sequential_class(name)() if name else nn.Sequential()
            if name:
                self.record.block_types[name] = type(module)
            for child in children(node):
                for name in child.names or ():
                    module.add_module(
                        name, self.build(child.node, path + child.key, _join(where, name))
                    )
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
            seed_default_generator(self.device, derive_seed(self.seed, layer_stream(where)))
        try:
            module = (
                entry.target(**node.args)
                if self.on_default_device and entry.factory is None
                else entry.make(node.args, self.device)
            )
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
            if isinstance(output, tuple) and len(output) == 1 and isinstance(output[0], str):
                output = output[0]
            where_in_config = path + ("forward", index)
            if step.call is not None:
                refs = {k: v["value"] for k, v in step.kwargs.items() if is_value_ref(v)}
                program.append(
                    ProgramStep(
                        inputs,
                        output,
                        child=step.call,
                        path=where_in_config,
                        kwargs=tuple((k, v) for k, v in step.kwargs.items() if k not in refs),
                        kwarg_values=tuple(refs.items()),
                    )
                )
            else:
                assert step.op is not None
                fn = OPS.get(step.op).target
                bound = functools.partial(fn, **step.args) if step.args else fn
                program.append(
                    ProgramStep(inputs, output, fn=bound, path=where_in_config, op=step.op)
                )
            kept_values = kept(step, index)
            current = kept_values[0] if len(kept_values) == 1 else ""
        cls = composite_class(node.name or class_name or "Block")
        self.record.block_types[cls.__name__] = cls
        module = cls(node.inputs, program, node.resolved_outputs())
        for child in children(node):
            name = child.key[-1]
            module.add_module(name, self.build(child.node, path + child.key, _join(where, name)))
        for name, learned in node.parameters.items():
            stream = learned_stream(_join(where, name))
            tensor = fill_constant(learned, seed=self.seed, stream=stream, device=self.device)
            module.register_parameter(name, nn.Parameter(tensor))
            self.record.learned.append((module, name, learned, stream))
        if node.parameters:
            module._mf_fills = {name: p.fill for name, p in node.parameters.items()}
        for name, constant in node.constants.items():
            stream = constant_stream(_join(where, name))
            tensor = fill_constant(constant, seed=self.seed, stream=stream, device=self.device)
            module.register_buffer(name, tensor, persistent=constant.persistent)
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
    # Layers are given their device directly (LayerEntry.make), not through a
    # ``torch.device`` context, which routes every torch call through a function
    # mode: several times slower for small layers, and 1.4 s of imports on first use.
    with torch.random.fork_rng(devices=fork_devices), _gc_paused():
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
