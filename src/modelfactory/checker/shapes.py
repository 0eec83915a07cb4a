"""Stage 3: :class:`ResolvedSpec` -> :class:`CheckedSpec`. Shapes by a dry run on ``meta``; the budget.

The model is built on ``meta`` (no memory, no init) and run on a meta tensor of
the declared input shape. Along the way:

- size arguments left out (``in_features``, ``in_channels``, ...) are read from
  the incoming shape, following each layer type's ``shape_rule`` (declared
  beside its registration), and written into the resolved spec;
- a shape mismatch anywhere is reported with the failing step's config path,
  the incoming shape(s), and what the layer expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

from ..builder.composite import STEP_TRACE, CompositeModule, UnpackError
from ..builder.construct import construct
from ..builder.streams import TORCH_DTYPES
from ..errors import ConfigProblem, ShapeError, format_path
from ..registry import LAYERS
from ..resolve import ResolvedSpec
from ..spec.model import ModelSpec
from ..spec.nodes import LayerNode
from .limits import enforce_parameter_budget

__all__ = ["CheckedSpec", "check"]

Path = tuple[Any, ...]


@dataclass(frozen=True)
class CheckedSpec:
    """A spec ready to build: sizes inferred and filled in, shapes known, budget enforced.

    A function that receives one never validates, resolves or checks again.
    """

    spec: ModelSpec  # the resolved spec with inferred sizes filled in
    resolved: ResolvedSpec  # where each path came from, for errors found later
    output_shapes: list[list[int]]
    inferred: dict[str, dict[str, int]] = field(default_factory=dict)  # config path -> values
    elements: int = 0  # parameter and buffer elements (each tensor once), within the budget


def _shapes(values: Any) -> list[list[int]]:
    if isinstance(values, torch.Tensor):
        return [list(values.shape)]
    if isinstance(values, (list, tuple)):
        return [s for v in values for s in _shapes(v)]
    return []


class _Deferred(nn.Module):
    """Stands in for a layer whose sizes come from its first input; replaces itself then."""

    def __init__(self, node: LayerNode, path: Path, dry_run: _DryRun) -> None:
        super().__init__()
        self.node = node
        self.path = path
        self.dry_run = dry_run
        self.resolved: nn.Module | None = None

    def forward(self, *inputs: Any) -> Any:
        if self.resolved is None:
            self.resolved = self.dry_run.materialise(self, inputs)
        return self.resolved(*inputs)


class _DryRun:
    def __init__(self, resolved: ResolvedSpec) -> None:
        self.resolved = resolved
        self.inferred: dict[Path, dict[str, int]] = {}
        self.layers: dict[Path, nn.Module] = {}  # inferred layers, by config path
        self.config_paths: dict[int, Path] = {}
        self.nodes: dict[int, LayerNode] = {}

    def problem(self, path: Path, message: str) -> ConfigProblem:
        return self.resolved.problem(path, message)

    def defer(self, node: LayerNode, path: Path) -> nn.Module:
        return _Deferred(node, path, self)

    def materialise(self, deferred: _Deferred, inputs: tuple[Any, ...]) -> nn.Module:
        """Infer the missing sizes from the first input and build the real (meta) layer."""
        node = deferred.node
        x = inputs[0] if inputs else None
        rule = LAYERS.get(node.type).shape_rule
        values: dict[str, int] = {}
        for arg in node.missing_inferable():
            dim = rule[arg]
            if not isinstance(x, torch.Tensor) or not -x.dim() <= dim < x.dim():
                shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ShapeError(
                    "shape check failed",
                    [
                        self.problem(
                            deferred.path,
                            f"cannot infer {arg} for {node.type}: it is read from input dim {dim}, but the input has shape {shape}",
                        )
                    ],
                )
            values[arg] = int(x.shape[dim])
        try:
            complete = LayerNode.model_validate({"type": node.type, **node.args, **values})
        except Exception as err:  # e.g. an inferred size of 0
            raise ShapeError(
                "shape check failed",
                [
                    self.problem(
                        deferred.path, f"inferred {values} for {node.type} is not valid: {err}"
                    )
                ],
            ) from None
        with torch.device("meta"):
            layer = LAYERS.get(node.type).target(**complete.args)
        self.inferred[deferred.path] = values
        self.layers[deferred.path] = layer
        self.config_paths[id(layer)] = deferred.path
        self.nodes[id(layer)] = complete
        return layer

    def expected(self, module: nn.Module, shapes: list[list[int]]) -> str:
        """What a layer expected of its input, from its shape rule, when that is what broke."""
        node = self.nodes.get(id(module))
        if node is None or not shapes:
            return ""
        rule = LAYERS.get(node.type).shape_rule
        for arg, dim in rule.items():
            want = node.args.get(arg)
            shape = shapes[0]
            if isinstance(want, int) and -len(shape) <= dim < len(shape) and shape[dim] != want:
                return f"; {node.type} expects input dim {dim} = {arg} = {want}, found {shape[dim]}"
        return ""

    def explain(
        self,
        err: Exception,
        stack: list[tuple[nn.Module, list[list[int]]]],
        steps: list,
        model: nn.Module,
    ) -> ConfigProblem:
        """Turn the innermost failing module or op step into a located problem."""
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        module, shapes = stack[-1] if stack else (model, [])
        if isinstance(module, CompositeModule) and steps:
            step, inputs = steps[-1]
            if isinstance(err, UnpackError):
                return self.problem(
                    step.path + ("out",),
                    f"{text}; match 'out' to what the step returns (a list per tuple, '_' to drop)",
                )
            if step.op is not None:
                return self.problem(
                    step.path, f"op '{step.op}' got input shapes {_shapes(inputs)}: {text}"
                )
        path = self.config_paths.get(id(module), ("network",))
        names = {id(m): n for n, m in model.named_modules()}
        kind = self.nodes[id(module)].type if id(module) in self.nodes else type(module).__name__
        return self.problem(
            path,
            f"{kind} (module '{names.get(id(module), '?')}') got input shape(s) {shapes}{self.expected(module, shapes)} "
            f"(torch: {text}). Fix the layer's sizes or the input shape.",
        )

    def run(self, spec: ModelSpec) -> tuple[Any, int]:
        """Run the dry run; return the output (meta tensors) and the parameter count."""
        model, record = construct(spec, device=torch.device("meta"), seed=0, defer=self.defer)
        # The budget is enforced once: before the run when every size is known
        # (a hostile spec is refused before its shapes are looked at), else
        # after it, once the inferred layers exist. Nothing on meta is allocated.
        deferred = any(isinstance(m, _Deferred) for m in model.modules())
        elements = None if deferred else enforce_parameter_budget(model)
        self.config_paths.update(record.config_paths)
        self.nodes.update(record.nodes)
        # made on meta directly: a declared input is never allocated by the check
        dtype = TORCH_DTYPES[spec.input.resolved_dtype]
        x = torch.empty(spec.input.shape, dtype=dtype, device="meta")
        stack: list[tuple[nn.Module, list[list[int]]]] = []
        steps: list = []

        def pre(module: nn.Module, args: Any) -> None:
            stack.append((module, _shapes(args)))

        def post(module: nn.Module, args: Any, output: Any) -> None:
            stack.pop()

        handles = [
            module_hooks.register_module_forward_pre_hook(pre),
            module_hooks.register_module_forward_hook(post),
        ]
        token = STEP_TRACE.set(steps)
        try:
            with torch.no_grad():
                output = model(x)
        except ShapeError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure in the dry run is a config problem
            raise ShapeError(
                "shape check failed", [self.explain(err, stack, steps, model)]
            ) from None
        finally:
            STEP_TRACE.reset(token)
            for handle in handles:
                handle.remove()
        never = [m for m in model.modules() if isinstance(m, _Deferred) and m.resolved is None]
        if never:
            raise ShapeError(
                "shape check failed",
                [
                    self.problem(
                        m.path,
                        f"{m.node.type} never ran in the dry run, so {', '.join(m.node.missing_inferable())} cannot be inferred; give it explicitly",
                    )
                    for m in never
                ],
            )
        if elements is None:
            elements = enforce_parameter_budget(model)
        return output, elements


def _with_node(node: Any, key: Path, new: LayerNode) -> Any:
    """``node`` with the node at relative config path ``key`` replaced by ``new`` (no re-validation)."""
    if not key:
        return new
    head, rest = key[0], key[1:]
    if isinstance(node, (list, tuple)):
        items = list(node)
        items[head] = _with_node(items[head], rest, new)
        return items
    value = getattr(node, head)  # a mapping field of a composite or named sequential
    name, deeper = rest[0], rest[1:]
    return node.model_copy(update={head: {**value, name: _with_node(value[name], deeper, new)}})


def _filled(spec: ModelSpec, completed: dict[Path, LayerNode]) -> ModelSpec:
    """``spec`` with each inferred layer replaced by its completed (already validated) node."""
    network, shared = spec.network, dict(spec.shared)
    for path, node in completed.items():
        if path[0] == "network":
            network = _with_node(network, path[1:], node)
        else:  # ("shared", name, ...)
            shared[path[1]] = _with_node(shared[path[1]], path[2:], node)
    filled = spec.model_copy(update={"network": network, "shared": shared})
    filled._source, filled._root = spec.source, spec.root
    return filled


def check(resolved: ResolvedSpec) -> CheckedSpec:
    """Infer omitted sizes, dry-run on ``meta`` and enforce the budget; raise :class:`ShapeError`.

    Problems are located in the user's file through ``resolved`` (``model.network[0]``,
    ``conf/model/mlp.yaml:5:5``).
    """
    dry = _DryRun(resolved)
    output, elements = dry.run(resolved.spec)
    completed = {path: dry.nodes[id(dry.layers[path])] for path in dry.inferred}
    final = _filled(resolved.spec, completed) if completed else resolved.spec
    inferred = {format_path(p, resolved.root): v for p, v in dry.inferred.items()}
    return CheckedSpec(final, resolved, _shapes(output), inferred, elements)
