"""A layer node's arguments, validated against the model derived from its constructor (cached).

Models repeat the same layer many times (a 1,000-layer MLP, ResNet stages);
valid scalar arguments are validated once per argument model.
"""

from __future__ import annotations

from typing import Any

from ..registry import LAYERS
from ..registry.signatures import UnsupportedSignature
from .validation import Scope, problem, validate_arguments

__all__ = ["layer_args_problems"]


def layer_args_problems(
    type_name: str, args: dict[str, Any], scope: Scope
) -> tuple[dict[str, Any], list]:
    """Validate ``args`` against the layer's argument model; return (clean args, problems)."""
    entry = LAYERS.get(type_name)
    try:
        model = entry.args_model
    except UnsupportedSignature as err:
        return args, [problem("unsupported_layer", f"layer type '{type_name}' {err}", ("type",))]
    key = _cache_key(model, args)
    if key is not None and key in _VALID_ARGS:
        return dict(_VALID_ARGS[key]), []
    clean, problems = validate_arguments(
        model, args, type_name, scope=scope, inferable=frozenset(entry.shape_rule)
    )
    if key is not None and not problems:
        if len(_VALID_ARGS) >= _VALID_ARGS_MAX:
            _VALID_ARGS.clear()
        _VALID_ARGS[key] = clean
    return clean, problems


# Models repeat the same layer many times (a 1,000-layer MLP, ResNet stages);
# valid scalar arguments are validated once per argument model. Keyed by the
# model class, so re-registering a layer name never hits a stale entry.
_VALID_ARGS: dict[tuple[Any, ...], dict[str, Any]] = {}
_VALID_ARGS_MAX = 4096


def _cache_key(model: type, args: dict[str, Any]) -> tuple[Any, ...] | None:
    items = []
    for key, value in args.items():
        if type(value) not in (int, float, bool, str, type(None)):
            return None  # lists, tuples, placeholders: validate every time
        items.append((key, type(value), value))
    return (model, tuple(sorted(items)))
