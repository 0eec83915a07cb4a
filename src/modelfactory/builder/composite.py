"""The runtime of a composite block: named children, constants, and a forward program.

The program is data validated by :class:`~modelfactory.spec.CompositeNode`;
here it is only executed. Each block name gets its own ``CompositeModule``
subclass so that ``print(model)`` shows ``NestMLP(...)`` just like the
hand-written class. Those classes live in :mod:`modelfactory.blocks`, where
pickle finds them again by name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

__all__ = [
    "CompositeModule",
    "ProgramStep",
    "UnpackError",
    "composite_class",
    "sequential_class",
    "BLOCKS_MODULE",
    "SEQUENTIALS_MODULE",
]

BLOCKS_MODULE = "modelfactory.blocks"  # where composite classes are found by name
SEQUENTIALS_MODULE = "modelfactory.sequentials"  # where named Sequential classes are found
DISCARD = "_"

@dataclass(frozen=True)
class ProgramStep:
    """One executable step: call child ``target`` or apply ``fn`` to the named inputs."""

    inputs: tuple[str, ...]
    output: Any  # a name, or nested tuples of names that unpack the result ("_" drops)
    child: str | None = None
    fn: Callable[..., Tensor] | None = None
    path: tuple[Any, ...] = ()  # the step's config path, for error messages
    op: str | None = None  # the op's registered name
    kwargs: tuple[tuple[str, Any], ...] = ()  # a child call's literal keyword arguments
    kwarg_values: tuple[tuple[str, str], ...] = ()  # keyword -> the named value passed


class CompositeModule(nn.Module):
    """A module whose forward runs a validated list of steps over named values."""

    def __init__(
        self, inputs: Sequence[str], program: Sequence[ProgramStep], outputs: Sequence[str]
    ) -> None:
        super().__init__()
        self._mf_inputs = tuple(inputs)
        self._mf_program = tuple(program)
        self._mf_outputs = tuple(outputs)

    def forward(self, *args: Tensor) -> Any:
        if len(args) != len(self._mf_inputs):
            raise TypeError(
                f"{type(self).__name__} takes {len(self._mf_inputs)} input(s) "
                f"{list(self._mf_inputs)}, got {len(args)}"
            )
        values: dict[str, Any] = dict(zip(self._mf_inputs, args, strict=True))
        values.update(self._buffers)  # constants, wherever the module has been moved
        values.update(self._parameters)  # learned tensors (the current Parameter objects)
        modules = self._modules
        for step in self._mf_program:
            inputs = [values[name] for name in step.inputs]
            if step.child is not None:
                if step.kwargs or step.kwarg_values:
                    keywords = dict(step.kwargs)
                    keywords.update((key, values[name]) for key, name in step.kwarg_values)
                    result = modules[step.child](*inputs, **keywords)
                else:
                    result = modules[step.child](*inputs)
            else:
                assert step.fn is not None
                result = step.fn(*inputs)
            if isinstance(step.output, str):
                if step.output != DISCARD:
                    values[step.output] = result
            else:
                _unpack(step.output, result, values)
        if len(self._mf_outputs) == 1:
            return values[self._mf_outputs[0]]
        return tuple(values[name] for name in self._mf_outputs)


class UnpackError(ValueError):
    """A step's ``out`` pattern does not match the structure of what it returned."""


def _unpack(pattern: tuple[Any, ...], result: Any, values: dict[str, Any]) -> None:
    """Bind the names of ``pattern`` (nested tuples, ``_`` drops) to the parts of ``result``."""
    if not isinstance(result, (tuple, list)) or len(result) != len(pattern):
        got = f"{len(result)} values" if isinstance(result, (tuple, list)) else "one tensor"
        raise UnpackError(f"step unpacks {len(pattern)} values {_shown(pattern)}, got {got}")
    for part, value in zip(pattern, result, strict=True):
        if isinstance(part, str):
            if part != DISCARD:
                values[part] = value
        else:
            _unpack(part, value, values)


def _shown(pattern: Any) -> Any:
    return [_shown(p) for p in pattern] if isinstance(pattern, tuple) else pattern


@functools.cache
def sequential_class(name: str) -> type[nn.Sequential]:
    """The ``nn.Sequential`` subclass printed as ``name`` (``Conv2dNormActivation(...)``)."""
    return type(name, (nn.Sequential,), {"__module__": SEQUENTIALS_MODULE, "__qualname__": name})


@functools.cache
def composite_class(name: str) -> type[CompositeModule]:
    """The ``CompositeModule`` subclass printed as ``name`` (one class per name)."""
    return type(name, (CompositeModule,), {"__module__": BLOCKS_MODULE, "__qualname__": name})
