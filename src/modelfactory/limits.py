"""Limits checked before anything is allocated: size of the data, of the module tree, of the tensors.

A model file from someone else can ask for more than a machine has. Each limit
here is refused with a clear error *before* memory is committed:

- plain data (a mapping passed to :func:`modelfactory.build`, or a YAML file)
  nested deeper than :data:`~modelfactory.source.MAX_DEPTH` or with more than
  :data:`~modelfactory.source.MAX_NODES` values (:func:`check_data_shape`);
- a module tree that would expand (repeats times blocks) to more than
  ``max_modules`` modules, counted from the spec without building anything
  (:func:`check_structure`);
- a model whose parameters and buffers hold more than ``max_parameters``
  elements, counted by constructing it on the ``meta`` device, which allocates
  no memory (:func:`check_parameter_budget`); the input tensor is held to the
  same budget.

Budgets are configurable for a block of code with :func:`budget`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from .builder import construct
from .errors import ConfigProblem, ModelFactoryError, format_path
from .source import MAX_DEPTH, MAX_NODES
from .spec import (
    BlockRef,
    CompositeNode,
    ConstantSpec,
    LayerNode,
    ModelSpec,
    NamedSequential,
    ParametricBlock,
    RepeatNode,
    SharedRef,
)

__all__ = [
    "Limits",
    "LimitError",
    "DEFAULT_LIMITS",
    "budget",
    "set_budget",
    "current_limits",
    "check_data_shape",
    "count_modules",
    "check_structure",
    "check_parameter_budget",
    "enforce_parameter_budget",
]


class LimitError(ModelFactoryError):
    """A model (or its data) is over a configured size limit."""


@dataclass(frozen=True)
class Limits:
    """Size limits for one build; see :func:`budget` to change them."""

    # Elements in parameters + buffers (and in the input). 10**9 float32 is 4 GB;
    # the zoo's largest model (big_mlp) has 1.3e8.
    max_parameters: int = 1_000_000_000
    # Modules once repeats and blocks are expanded; real networks have < 10**4.
    max_modules: int = 100_000


DEFAULT_LIMITS = Limits()
_CURRENT: contextvars.ContextVar[Limits] = contextvars.ContextVar(
    "modelfactory_limits", default=DEFAULT_LIMITS
)

# Layer arguments that make a layer build that many sub-layers in a Python loop
# (LSTM's num_layers, Transformer's num_encoder_layers): counted as modules, so
# 'num_layers: 1000000000' is refused before the constructor loops forever.
_LAYER_COUNT_ARG = re.compile(r"^num_(\w+_)?layers$")


def current_limits() -> Limits:
    """The limits in force (the defaults unless inside :func:`budget`)."""
    return _CURRENT.get()


@contextlib.contextmanager
def budget(
    *, max_parameters: int | None = None, max_modules: int | None = None
) -> Iterator[Limits]:
    """Change the limits inside a ``with`` block (``None`` keeps the current value).

    ``with modelfactory.limits.budget(max_parameters=5 * 10**9): build(spec)``
    """
    changes = {"max_parameters": max_parameters, "max_modules": max_modules}
    for key, value in changes.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise LimitError(f"{key}: must be a positive integer, found {value!r}")
    limits = replace(current_limits(), **{k: v for k, v in changes.items() if v is not None})
    token = _CURRENT.set(limits)
    try:
        yield limits
    finally:
        _CURRENT.reset(token)


def set_budget(*, max_parameters: int | None = None, max_modules: int | None = None) -> Limits:
    """Set the limits for the rest of the current context (a Hydra job); ``None`` keeps a value."""
    with budget(max_parameters=max_parameters, max_modules=max_modules) as limits:
        pass  # validated there
    _CURRENT.set(limits)
    return limits


def check_data_shape(data: Any, *, root: str = "") -> None:
    """Refuse plain data nested deeper than ``MAX_DEPTH`` or holding more than ``MAX_NODES`` values.

    Walks with an explicit stack (never recursion), so a self-containing list or
    a 10,000-deep mapping is refused instead of overflowing Python's stack.
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    visited = 0
    while stack:
        value, path = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            raise LimitError(
                f"refused: the model data holds more than {MAX_NODES:,} values "
                "(shared sub-structures are counted at every place they appear)"
            )
        if len(path) > MAX_DEPTH:
            raise LimitError(
                f"refused: the model data is nested deeper than {MAX_DEPTH} levels",
                [ConfigProblem(format_path(path[:MAX_DEPTH], root), "nested too deep here")],
            )
        if isinstance(value, dict):
            stack.extend(
                (v, path + (k if isinstance(k, (str, int)) else str(k),)) for k, v in value.items()
            )
        elif isinstance(value, (list, tuple)):
            stack.extend((v, path + (i,)) for i, v in enumerate(value))


def count_modules(spec: ModelSpec) -> int:
    """Modules the spec expands to, counted from the spec alone (nothing is built).

    Blocks are counted at every reference (each is a fresh instance), shared
    modules once, repeats as ``repeat`` copies of their body.
    """
    block_sizes: dict[str, int] = {}
    shared_seen: set[str] = set()

    def count(node: Any) -> int:
        if isinstance(node, LayerNode):
            loops = sum(
                v
                for k, v in node.args.items()
                if _LAYER_COUNT_ARG.match(k) and isinstance(v, int) and not isinstance(v, bool)
            )
            return 1 + max(loops, 0)
        if isinstance(node, (list, tuple)):
            return 1 + sum(count(item) for item in node)
        if isinstance(node, BlockRef):
            if node.block not in block_sizes:  # the spec has rejected reference cycles
                block_sizes[node.block] = count(spec.blocks[node.block])
            return block_sizes[node.block]
        if isinstance(node, ParametricBlock):
            return count(node.body)
        if isinstance(node, NamedSequential):
            return 1 + sum(count(child) for child in node.sequential.values())
        if isinstance(node, SharedRef):
            if node.shared in shared_seen:
                return 0
            shared_seen.add(node.shared)
            return count(spec.shared[node.shared])
        if isinstance(node, RepeatNode):
            return 1 + node.repeat * count(node.body)
        if isinstance(node, CompositeNode):
            return 1 + sum(count(child) for child in node.children.values())
        return 1

    return count(spec.network)


def _constants(spec: ModelSpec) -> Iterator[tuple[tuple[Any, ...], ConstantSpec]]:
    """Every constant declared in the spec, with its config path (each declaration once)."""
    roots = [(("network",), spec.network)]
    roots += [(("blocks", name), node) for name, node in spec.blocks.items()]
    roots += [(("shared", name), node) for name, node in spec.shared.items()]
    stack = list(roots)
    while stack:
        path, node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend((path + (i,), item) for i, item in enumerate(node))
        elif isinstance(node, (RepeatNode, ParametricBlock)):
            stack.append((path + ("body",), node.body))
        elif isinstance(node, NamedSequential):
            stack.extend((path + ("sequential", k), child) for k, child in node.sequential.items())
        elif isinstance(node, CompositeNode):
            for name, constant in node.constants.items():
                yield path + ("constants", name), constant
            stack.extend((path + ("children", k), child) for k, child in node.children.items())


def check_structure(spec: ModelSpec, *, root: str = "") -> None:
    """Refuse a spec whose module tree or input is over the current limits (nothing is built)."""
    limits = current_limits()
    modules = count_modules(spec)
    problems = []
    if modules > limits.max_modules:
        problems.append(
            ConfigProblem(
                format_path(("network",), root),
                f"expands to {modules:,} modules (repeats x blocks), over the limit of "
                f"{limits.max_modules:,}; use fewer or smaller repeats, or raise max_modules",
            )
        )
    for path, constant in _constants(spec):
        elements = math.prod(constant.shape)
        if elements > limits.max_parameters:
            problems.append(
                ConfigProblem(
                    format_path(path + ("shape",), root),
                    f"the constant has {elements:,} elements, over the budget of "
                    f"{limits.max_parameters:,}; use a smaller shape, or raise max_parameters",
                )
            )
    elements = math.prod(spec.input.shape)
    if elements > limits.max_parameters:
        problems.append(
            ConfigProblem(
                format_path(("input", "shape"), root),
                f"the input has {elements:,} elements, over the budget of "
                f"{limits.max_parameters:,}; use a smaller shape, or raise max_parameters",
            )
        )
    if problems:
        raise LimitError("refused: the model is over a size limit", problems)


def check_parameter_budget(spec: ModelSpec, max_parameters: int | None = None) -> int:
    """Count parameter and buffer elements on the ``meta`` device; refuse over ``max_parameters``.

    ``None`` uses the current budget (see :func:`budget`). Returns the count.
    Constructing on ``meta`` creates shapes without storage, so
    ``Linear(10**9, 10**9)`` is counted, not allocated.
    """
    check_structure(spec)  # bounds the work below: at most max_modules modules are created
    model, _ = construct(spec, device=torch.device("meta"), seed=0)
    return enforce_parameter_budget(model, max_parameters)


def enforce_parameter_budget(model: torch.nn.Module, max_parameters: int | None = None) -> int:
    """Refuse ``model`` (typically on ``meta``) if its unique tensors exceed the budget."""
    limit = current_limits().max_parameters if max_parameters is None else max_parameters
    tensors = {id(t): t for t in model.parameters()} | {id(t): t for t in model.buffers()}
    total = sum(t.numel() for t in tensors.values())
    if total > limit:
        largest = sorted(((p.numel(), name) for name, p in model.named_parameters()), reverse=True)[
            :3
        ]
        detail = ", ".join(f"{name} ({n:,})" for n, name in largest)
        raise LimitError(
            "refused: the model is over the parameter budget",
            [
                ConfigProblem(
                    "network",
                    f"{total:,} parameter and buffer elements, over the budget of {limit:,} "
                    f"(largest: {detail or 'buffers'}); shrink the model, or raise the "
                    "budget (max_parameters=..., modelfactory --max-parameters)",
                )
            ],
        )
    return total
