"""The registries: tables of names. How things are built lives elsewhere.

A registry maps a type name to an entry: what to call, and a pydantic model of
its arguments (derived from the signature unless given). Users extend the
registries from their own Python code with the decorators re-exported by the
package; a model file can only *name* registered entries, never import code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

from .errors import RegistryError, did_you_mean
from .signatures import SignatureModel, args_model_from_signature

__all__ = [
    "LayerEntry",
    "OpEntry",
    "InitEntry",
    "Registry",
    "LAYERS",
    "OPS",
    "INITS",
    "register_layer",
    "register_op",
    "register_init",
    "origin_of",
]


def origin_of(obj: Any) -> str:
    """Where ``obj`` was defined, as ``module.qualname (file:line)`` when known."""
    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    try:
        file = inspect.getsourcefile(obj)
        line = inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return name
    return f"{name} ({file}:{line})"


@dataclass
class _Entry:
    name: str
    target: Callable[..., Any]
    explicit_args_model: type[BaseModel] | None = None
    _args_model: type[BaseModel] | None = field(default=None, init=False, repr=False)
    _origin: str | None = field(default=None, init=False, repr=False)

    @property
    def origin(self) -> str:
        """Where the target is defined, ``module.qualname (file:line)``.

        Computed on first use: finding the line parses the defining module's
        source, which for the ~150 torch.nn classes took 2 s of import time.
        """
        if self._origin is None:
            self._origin = origin_of(self.target)
        return self._origin

    def _derive_args_model(self) -> type[BaseModel]:
        raise NotImplementedError

    @property
    def args_model(self) -> type[BaseModel]:
        """The pydantic model of this entry's config arguments (derived lazily)."""
        if self._args_model is None:
            self._args_model = self.explicit_args_model or self._derive_args_model()
        return self._args_model


@dataclass
class LayerEntry(_Entry):
    """A layer type: a ``nn.Module`` factory and its argument model.

    ``shape_rule`` maps an omitted size argument to the input dimension it is
    read from (``{"in_features": -1}``), so shape inference needs no central
    table of layer types.
    """

    shape_rule: dict[str, int] = field(default_factory=dict)

    def _derive_args_model(self) -> type[BaseModel]:
        return args_model_from_signature(self.target, model_name=f"{self.name}Args")


@dataclass
class OpEntry(_Entry):
    """A functional op used in forward steps.

    Positional parameters of the function are tensor inputs; keyword-only
    parameters are config arguments. ``arity`` is the number of tensor inputs,
    or ``None`` for a variadic op (``*tensors``).
    """

    arity: int | None = 1

    def _derive_args_model(self) -> type[BaseModel]:
        return args_model_from_signature(
            self.target, model_name=f"{self.name}OpArgs", keyword_only=True
        )


@dataclass
class InitEntry(_Entry):
    """An initialisation scheme: ``fn(tensor, *, generator, **args)`` fills in place."""

    def _derive_args_model(self) -> type[BaseModel]:
        return args_model_from_signature(
            self.target, model_name=f"{self.name}InitArgs", keyword_only=True
        )


E = TypeVar("E", bound=_Entry)


class Registry(Generic[E]):
    """A table of names for one kind of thing (layers, ops or inits)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, E] = {}

    def add(self, entry: E) -> E:
        """Register ``entry``; a duplicate name is an error naming both definitions."""
        existing = self._entries.get(entry.name)
        if existing is not None:
            raise RegistryError(
                f"'{entry.name}' is already registered in the {self.kind} registry at "
                f"{existing.origin}; the second definition is {entry.origin}. "
                "Pick another name, or pass name=... to the decorator."
            )
        self._entries[entry.name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests and interactive sessions re-registering a layer)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> E:
        """Look up ``name``; an unknown name is an error with a did-you-mean."""
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """The standard message for an unknown name in this registry."""
        return f"unknown {self.kind} type '{name}'.{did_you_mean(name, self._entries)}"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)


LAYERS: Registry[LayerEntry] = Registry("layer")
OPS: Registry[OpEntry] = Registry("op")
INITS: Registry[InitEntry] = Registry("init")


T = TypeVar("T", bound=Callable[..., Any])


@overload
def register_layer(target: T, /) -> T: ...
@overload
def register_layer(
    *,
    name: str | None = None,
    args_model: type[BaseModel] | None = None,
    shape_rule: dict[str, int] | None = None,
) -> Callable[[T], T]: ...
def register_layer(
    target: Any = None,
    /,
    *,
    name: str | None = None,
    args_model: type[BaseModel] | None = None,
    shape_rule: dict[str, int] | None = None,
) -> Any:
    """Register an ``nn.Module`` class (or factory) as a layer type.

    Use bare (``@register_layer``) or with options
    (``@register_layer(name="MyLinear", shape_rule={"in_units": -1})``). The
    argument model is derived from the constructor signature unless given.
    ``shape_rule`` names size arguments that may be omitted and the input
    dimension each is read from.
    """

    def decorate(obj: T) -> T:
        LAYERS.add(
            LayerEntry(
                name=name or obj.__name__,
                target=obj,
                explicit_args_model=args_model,
                shape_rule=dict(shape_rule or {}),
            )
        )
        return obj

    return decorate(target) if target is not None else decorate


def register_op(
    name: str | None = None, *, args_model: type[SignatureModel] | None = None
) -> Callable[[T], T]:
    """Register a function as a forward-step op.

    Positional parameters are the op's tensor inputs (``*tensors`` for a
    variadic op); keyword-only parameters are its config arguments::

        @register_op("scale")
        def scale(x: Tensor, *, factor: float) -> Tensor:
            return x * factor
    """

    def decorate(fn: T) -> T:
        params = inspect.signature(fn).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
        OPS.add(
            OpEntry(
                name=name or fn.__name__,
                target=fn,
                explicit_args_model=args_model,
                arity=None if variadic else len(positional),
            )
        )
        return fn

    return decorate


def register_init(
    name: str | None = None, *, args_model: type[SignatureModel] | None = None
) -> Callable[[T], T]:
    """Register an initialisation scheme.

    The function fills its first argument in place; keyword-only parameters
    are config arguments, and ``generator`` (if accepted) is the
    per-parameter random stream::

        @register_init("my_init")
        def my_init(tensor, *, generator=None, low=-10.0, high=10.0): ...
    """

    def decorate(fn: T) -> T:
        INITS.add(
            InitEntry(
                name=name or fn.__name__,
                target=fn,
                explicit_args_model=args_model,
            )
        )
        return fn

    return decorate
