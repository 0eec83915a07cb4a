"""Parameter ties: one ``nn.Parameter`` object reachable under several names, kept through moves and loads.

``ties: {head.weight: embedding.weight}`` makes ``model.head.weight`` *be*
``model.embedding.weight`` (the same object, so ``is`` holds, gradients from
both uses accumulate into one tensor, and a checkpoint stores it once).

PyTorch silently unties parameters whenever it replaces Parameter objects:
``to_empty``, ``.to("meta")`` and ``load_state_dict(assign=True)`` all do
(torchtitan#2252, pytorch#188346). A model with ties therefore gets its root class extended with
a re-tie step after every ``_apply`` (the engine of ``.to``/``.cuda``/
``.half``/``to_empty``) and after every ``load_state_dict``.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn

from ..errors import ConfigProblem, SpecError, did_you_mean

__all__ = ["resolve_ties", "apply_ties", "keep_ties", "TieKeeping"]


def resolve_ties(ties: dict[str, str]) -> dict[str, str]:
    """Follow chains (``a -> b -> c``) so every target maps to its root source.

    Cycles are rejected by spec validation, so every chain ends.
    """
    resolved = {}
    for target in ties:
        source = ties[target]
        while source in ties:
            source = ties[source]
        resolved[target] = source
    return resolved


def tie_path(target: str) -> str:
    """The config path of one tie, e.g. ``ties['head.weight']``."""
    return f"ties[{target!r}]"


def _check_endpoint(model: nn.Module, name: str, role: str, target: str) -> ConfigProblem | None:
    params = dict(model.named_parameters(remove_duplicate=False))
    if name in params:
        return None
    buffers = dict(model.named_buffers(remove_duplicate=False))
    if name in buffers:
        return ConfigProblem(
            tie_path(target),
            f"tie {role} '{name}' is a buffer (a constant or running statistic), not a parameter; "
            "only parameters can be tied",
        )
    return ConfigProblem(
        tie_path(target),
        f"tie {role} '{name}' is not a parameter of this model.{did_you_mean(name, params)}",
    )


def apply_ties(model: nn.Module, ties: dict[str, str]) -> list[tuple[str, str]]:
    """Bind every tie target to its source Parameter; return the resolved (target, source) pairs.

    The model then re-asserts its ties by itself (:func:`keep_ties`), so later
    stages (materialising from meta, moving devices) need not know about them.

    Every problem (unknown path, buffer, shape mismatch) is reported at once.
    """
    if not ties:
        return []
    resolved = resolve_ties(ties)
    problems = []
    for target, source in resolved.items():
        for role, name in (("target", target), ("source", source)):
            found = _check_endpoint(model, name, role, target)
            if found is not None:
                problems.append(found)
    if not problems:
        for target, source in resolved.items():
            t_shape = list(model.get_parameter(target).shape)
            s_shape = list(model.get_parameter(source).shape)
            if t_shape != s_shape:
                problems.append(
                    ConfigProblem(
                        tie_path(target),
                        f"shapes differ: '{target}' is {t_shape}, '{source}' is {s_shape}; "
                        "tied parameters must have the same shape",
                    )
                )
    if problems:
        raise SpecError(f"invalid ties: {len(problems)} problem(s)", problems)
    pairs = sorted(resolved.items())
    retie_paths(model, pairs)
    keep_ties(model, pairs)  # and keep them through to_empty, .to() and load_state_dict
    return pairs


def retie_paths(model: nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Point each target attribute at its source's current Parameter object."""
    for target, source in pairs:
        module_path, _, attr = target.rpartition(".")
        owner = model.get_submodule(module_path)
        owner._parameters[attr] = model.get_parameter(source)


class TieKeeping:
    """Mixin for a model root: re-assert ties after anything that replaces Parameters."""

    _mf_tie_pairs: list[tuple[str, str]]

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        result = super()._apply(fn, recurse)  # type: ignore[misc]
        retie_paths(self, self._mf_tie_pairs)  # type: ignore[arg-type]
        return result

    def __reduce_ex__(self, protocol: Any) -> Any:
        # This class is made at run time, so pickle could not find it by name:
        # store the original class, and make the tie-keeping one again on load.
        base = type(self).__mro__[2]
        return (_remake_tie_keeping, (base,), self.__getstate__())


def _remake_tie_keeping(base: type[nn.Module]) -> nn.Module:
    """Unpickling: an empty instance of ``base``'s tie-keeping class (its state is set next)."""
    cls = _tie_keeping_class(base)
    return cls.__new__(cls)


@functools.cache
def _tie_keeping_class(cls: type[nn.Module]) -> type[nn.Module]:
    # Same name, so printing is unchanged; still an instance of the original class.
    return type(
        cls.__name__,
        (TieKeeping, cls),
        {"__module__": cls.__module__, "__qualname__": cls.__qualname__},
    )


def _retie_after_load(module: nn.Module, incompatible_keys: Any) -> None:
    del incompatible_keys
    retie_paths(module, module._mf_tie_pairs)


def keep_ties(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """Make ``model`` re-assert ``pairs`` after ``.to()``/``to_empty()``/``load_state_dict``."""
    if not pairs:
        return model
    model._mf_tie_pairs = list(pairs)
    if not isinstance(model, TieKeeping):
        model.__class__ = _tie_keeping_class(type(model))
        model.register_load_state_dict_post_hook(_retie_after_load)
    return model
