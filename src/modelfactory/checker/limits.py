"""Size limits checked before anything is allocated: the module tree, the tensors, the parameter budget.

A model file from someone else can ask for more than a machine has. Each limit
here is refused with a clear error *before* memory is committed:

- a module tree that would expand (repeats times blocks) to more than
  ``max_modules`` modules, counted from the spec without building anything
  (:func:`check_structure`);
- constants and the input over ``max_parameters`` elements (also there);
- a model whose parameters and buffers hold more than ``max_parameters``
  elements, counted on the ``meta`` device, which allocates no memory
  (:func:`enforce_parameter_budget`).

(Plain data nested too deep or too large is refused earlier, by
:func:`modelfactory.spec.validate.check_data_shape`.) Budgets are
configurable for a block of code with :func:`budget`.
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

from ..errors import ConfigProblem, LimitError, format_path
from ..registry import LAYERS
from ..sharing import unique_tensors
from ..spec.model import ModelSpec
from ..spec.nodes import CompositeNode, LayerNode
from ..spec.tensors import TensorFill
from ..spec.walk import fold, is_module, iter_located

__all__ = [
    "Limits",
    "LimitError",
    "DEFAULT_LIMITS",
    "budget",
    "set_budget",
    "current_limits",
    "count_modules",
    "check_structure",
    "enforce_parameter_budget",
]


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


def count_modules(spec: ModelSpec) -> int:
    """Modules the spec expands to, counted from the spec alone (nothing is built).

    Blocks are counted at every reference (each is a fresh instance), shared
    modules once, repeats as ``repeat`` copies of their body, and a layer
    whose constructor loops (``num_layers``) as that many more.
    """

    def count(node: Any, parts: list[tuple[int, int]]) -> int:
        own = 1 if is_module(node) else 0
        if isinstance(node, LayerNode):
            own += _submodules(node)
        return own + sum(copies * result for copies, result in parts)

    return fold(spec, spec.network, count)


def _submodules(node: LayerNode) -> int:
    """Submodules a layer's constructor builds per its arguments (declared per layer type,
    plus any ``num_*layers`` argument of a user layer)."""
    declared = LAYERS.get(node.type).builds_per
    total = 0
    for key, value in node.args.items():
        if key in declared or _LAYER_COUNT_ARG.match(key):
            if isinstance(value, int) and not isinstance(value, bool):
                total += max(value, 0)
            elif isinstance(value, (list, tuple)):
                total += len(value)
    return total


def _constants(spec: ModelSpec) -> Iterator[tuple[tuple[Any, ...], TensorFill]]:
    """Every constant and learned parameter in the spec, with its config path (each written once)."""
    roots = [(("network",), spec.network)]
    roots += [(("blocks", name), node) for name, node in spec.blocks.items()]
    roots += [(("shared", name), node) for name, node in spec.shared.items()]
    for root_path, root in roots:
        for path, node in iter_located(root_path, root):
            if isinstance(node, CompositeNode):
                for name, constant in node.constants.items():
                    yield path + ("constants", name), constant
                for name, learned in node.parameters.items():
                    yield path + ("parameters", name), learned


def check_structure(spec: ModelSpec) -> None:
    """Refuse a spec whose module tree or input is over the current limits (nothing is built)."""
    limits = current_limits()
    root = spec.root
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
        shape = constant.concrete_shape()
        if shape is None:  # placeholders: counted on the expanded spec by the shape check
            continue
        elements = math.prod(shape)
        if elements > limits.max_parameters:
            problems.append(
                ConfigProblem(
                    format_path(path + ("shape",), root),
                    f"the {'parameter' if path[-2] == 'parameters' else 'constant'} has "
                    f"{elements:,} elements, over the budget of "
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


def enforce_parameter_budget(model: torch.nn.Module, max_parameters: int | None = None) -> int:
    """Refuse ``model`` (typically on ``meta``) if its unique tensors exceed the budget."""
    limit = current_limits().max_parameters if max_parameters is None else max_parameters
    total = sum(t.numel() for t in unique_tensors(model))
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
