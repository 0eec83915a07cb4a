"""The tables of names (layers, ops, init schemes) and the one decorator shape that fills them.

A registry maps a name to an entry: what to call, the pydantic model of its
config arguments (derived from the signature unless given), and what is
declared beside the registration (size constraints, shape rules). How entries
are built into modules lives elsewhere; a model file can only *name* entries.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from ..errors import MAX_SUGGESTION_LENGTH, RegistryError, did_you_mean
from .signatures import args_model_from_signature
from .symbolic import ShapeRule

__all__ = [
    "Constraint",
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

# A size constraint declared beside a registration: checked at validation,
# before torch ever sees the value.
Constraint = Literal["positive", "non_negative"]


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
    constraints: Mapping[str, Constraint] = field(default_factory=dict)
    # made on first use instead of deriving from the signature: for models that
    # need a later import (a nested layer node) or a documented signature that
    # the target hides behind ``*args, **kwargs`` (LSTM)
    args_model_factory: Callable[[], type[BaseModel]] | None = None
    _args_model: type[BaseModel] | None = field(default=None, init=False, repr=False)
    _origin: str | None = field(default=None, init=False, repr=False)

    # How the signature becomes an argument model (overridden per kind).
    _keyword_only = False
    _skip_leading = 0
    _suffix = "Args"

    @property
    def origin(self) -> str:
        """Where the target is defined, ``module.qualname (file:line)``.

        Computed on first use: finding the line parses the defining module's
        source, which for the ~150 torch.nn classes took 2 s of import time.
        """
        if self._origin is None:
            self._origin = origin_of(self.target)
        return self._origin

    @property
    def args_model(self) -> type[BaseModel]:
        """The pydantic model of this entry's config arguments (derived lazily)."""
        if self._args_model is None and self.args_model_factory is not None:
            self._args_model = self.args_model_factory()
        if self._args_model is None:
            self._args_model = self.explicit_args_model or args_model_from_signature(
                self.target,
                model_name=f"{self.name}{self._suffix}",
                keyword_only=self._keyword_only,
                skip_leading=self._skip_leading,
                constraints=self.constraints,
            )
        return self._args_model


@dataclass
class LayerEntry(_Entry):
    """A layer type: an ``nn.Module`` factory and its argument model.

    ``shape_rule`` maps an omitted size argument to the input dimension it is
    read from (``{"in_features": -1}``), so shape inference needs no central
    table of layer types.
    """

    shape_rule: dict[str, int] = field(default_factory=dict)
    # output shape from input shapes and arguments (see registry/symbolic.py);
    # None: the shape check runs the layer on the meta device instead
    infer: ShapeRule | None = None
    # builds the module from validated arguments when ``target(**args)`` cannot
    # (an argument that is itself a layer node, built first): ``factory(args,
    # device)``; ``target`` stays the class, which init rules match with isinstance
    factory: Callable[[dict[str, Any], Any], Any] | None = None
    # arguments that make the constructor build that many submodules (an int, or
    # a list's length): counted before anything is constructed, even on meta
    builds_per: tuple[str, ...] = ()

    def make(self, args: dict[str, Any], device: Any) -> Any:
        """Construct the layer with its tensors on ``device``.

        A declared ``factory`` builds it (nested layer nodes first); torch.nn
        layers take ``device=`` themselves; others are built inside a
        ``torch.device`` context, which routes every call through a function
        mode (slower, and on first use it imports torch._dynamo: 1.4 s).
        """
        if self.factory is not None:
            return self.factory(args, device)
        if self.takes_device:
            return self.target(**args, device=device)
        import torch

        with torch.device(device):
            return self.target(**args)

    @property
    def takes_device(self) -> bool:
        """True if the constructor accepts ``device=`` (every factory-kwargs torch.nn layer)."""
        if self._takes_device is None:
            try:
                params = inspect.signature(self.target).parameters
                self._takes_device = "device" in params
            except (TypeError, ValueError):
                self._takes_device = False
        return self._takes_device

    _takes_device: bool | None = field(default=None, init=False, repr=False)


@dataclass
class OpEntry(_Entry):
    """A functional op used in forward steps.

    Positional parameters of the function are tensor inputs; keyword-only
    parameters are config arguments. ``arity`` is the number of tensor inputs,
    or ``None`` for a variadic op (``*tensors``).
    """

    arity: int | None = 1
    # inputs that must be given when trailing positional ones are optional
    # (scaled_dot_product_attention's attn_mask); None: exactly ``arity``
    min_arity: int | None = None
    infer: ShapeRule | None = None  # as for layers
    _keyword_only = True
    _suffix = "OpArgs"


@dataclass
class InitEntry(_Entry):
    """An initialisation scheme: ``fn(tensor, *, generator, **args)`` fills in place.

    ``skip_leading`` drops leading positional parameters that are not config
    (``torch.nn.init``'s ``tensor``); a user scheme's arguments are keyword-only.
    """

    skip_leading: int = 0
    _suffix = "InitArgs"

    @property
    def args_model(self) -> type[BaseModel]:
        if self._args_model is None and self.explicit_args_model is None:
            self._args_model = args_model_from_signature(
                self.target,
                model_name=f"{self.name}{self._suffix}",
                keyword_only=self.skip_leading == 0,
                skip_leading=self.skip_leading,
                constraints=self.constraints,
            )
        return self._args_model or self.explicit_args_model  # type: ignore[return-value]


E = TypeVar("E", bound=_Entry)


class Registry(Generic[E]):
    """A table of names for one kind of thing (layers, ops or inits)."""

    def __init__(self, kind: str, how_to_add: str = "") -> None:
        self.kind = kind
        self.how_to_add = how_to_add  # the last sentence of an unknown-name error
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
        """Forget ``name`` (tests and interactive sessions re-registering an entry)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> E:
        """Look up ``name``; an unknown name is an error with a did-you-mean."""
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """The standard message for an unknown name: closest names, and how to add one."""
        hint = did_you_mean(name, self._entries)  # bounded work (errors.py)
        close = (
            []
            if len(name) > MAX_SUGGESTION_LENGTH
            else [
                c
                for c in difflib.get_close_matches(name, self._entries, n=4, cutoff=0.5)
                if f"'{c}'" not in hint
            ]
        )
        if close:
            label = "Other close" if hint else "Closest"
            hint += f" {label} {self.kind}s: {', '.join(close)}."
        elif not hint:
            hint = f" No {self.kind} has a similar name."
        return f"unknown {self.kind} '{name}'.{hint} {self.how_to_add}".rstrip()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)


_LOAD_PLUGIN = (
    " in a plugin module and load it: plugins=[mypkg.layers] (run.py), --plugin mypkg.layers "
    "(validate, schema, ls), or import it (Python)"
)
LAYERS: Registry[LayerEntry] = Registry(
    "layer",
    "To add one, register an nn.Module class with @modelfactory.register_layer"
    + _LOAD_PLUGIN
    + "; `modelfactory ls layers` lists them.",
)
OPS: Registry[OpEntry] = Registry(
    "op",
    "To add one, register a function with @modelfactory.register_op"
    + _LOAD_PLUGIN
    + " (positional parameters are tensor inputs, keyword-only ones are arguments); "
    "`modelfactory ls ops` lists them with their arguments.",
)
INITS: Registry[InitEntry] = Registry(
    "init",
    "To add one, register a function with @modelfactory.register_init"
    + _LOAD_PLUGIN
    + "; `modelfactory ls inits` lists them.",
)

T = TypeVar("T", bound=Callable[..., Any])


def _decorator(first: Any, name: str | None, make: Callable[[str, Callable[..., Any]], Any]) -> Any:
    """The one decorator shape: ``@reg``, ``@reg("name")``, or ``@reg(name=..., **options)``.

    A bare decorator that registered nothing would be a silent failure, so
    every form registers or raises.
    """

    def decorate(obj: T) -> T:
        if not callable(obj):
            raise RegistryError(f"can only register a class or function, found {obj!r}")
        make(name or obj.__name__, obj)
        return obj

    if first is None:
        return decorate
    if isinstance(first, str):
        if name is not None:
            raise RegistryError(f"give the name once, found {first!r} and name={name!r}")
        name = first
        return decorate
    return decorate(first)


def register_layer(
    target: Any = None,
    /,
    *,
    name: str | None = None,
    args_model: type[BaseModel] | None = None,
    shape_rule: dict[str, int] | None = None,
    constraints: Mapping[str, Constraint] | None = None,
    infer: ShapeRule | None = None,
) -> Any:
    """Register an ``nn.Module`` class (or factory) as a layer type.

    ``@register_layer``, ``@register_layer("Name")`` or
    ``@register_layer(name="MyLinear", shape_rule={"in_units": -1})``. The
    argument model is derived from the constructor signature unless given.
    ``shape_rule`` names size arguments that may be omitted and the input
    dimension each is read from; ``constraints`` marks arguments as
    ``positive`` or ``non_negative`` sizes; ``infer`` is the output shape rule
    (:mod:`modelfactory.registry.symbolic`).
    """
    return _decorator(
        target,
        name,
        lambda n, obj: LAYERS.add(
            LayerEntry(
                n,
                obj,
                explicit_args_model=args_model,
                constraints=dict(constraints or {}),
                shape_rule=dict(shape_rule or {}),
                infer=infer,
            )
        ),
    )


def register_op(
    target: Any = None,
    /,
    *,
    name: str | None = None,
    args_model: type[BaseModel] | None = None,
    constraints: Mapping[str, Constraint] | None = None,
    infer: ShapeRule | None = None,
) -> Any:
    """Register a function as a forward-step op.

    Positional parameters are the op's tensor inputs (``*tensors`` for a
    variadic op); keyword-only parameters are its config arguments::

        @register_op("scale")
        def scale(x: Tensor, *, factor: float) -> Tensor:
            return x * factor
    """

    def make(op_name: str, fn: Callable[..., Any]) -> OpEntry:
        params = inspect.signature(fn).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
        required = sum(1 for p in positional if p.default is p.empty)
        return OPS.add(
            OpEntry(
                op_name,
                fn,
                explicit_args_model=args_model,
                constraints=dict(constraints or {}),
                arity=None if variadic else len(positional),
                min_arity=None if variadic or required == len(positional) else required,
                infer=infer,
            )
        )

    return _decorator(target, name, make)


def register_init(
    target: Any = None,
    /,
    *,
    name: str | None = None,
    args_model: type[BaseModel] | None = None,
    constraints: Mapping[str, Constraint] | None = None,
    skip_leading: int = 0,
) -> Any:
    """Register an initialisation scheme.

    The function fills its first argument in place; keyword-only parameters
    are config arguments, and ``generator`` (if accepted) is the
    per-parameter random stream::

        @register_init("my_init")
        def my_init(tensor, *, generator=None, low=-10.0, high=10.0): ...
    """
    return _decorator(
        target,
        name,
        lambda n, fn: INITS.add(
            InitEntry(
                n,
                fn,
                explicit_args_model=args_model,
                constraints=dict(constraints or {}),
                skip_leading=skip_leading,
            )
        ),
    )
