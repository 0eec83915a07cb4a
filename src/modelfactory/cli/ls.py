"""``modelfactory ls models|layers|ops|inits [PATTERN]``: what a model file can name, with arguments.

Layers, ops and init schemes are listed with their config arguments, one
line each, from the same argument models that validation uses: ``name: type``
for a required argument, ``name: type = default`` otherwise; ``(>0)`` /
``(>=0)`` mark size constraints and ``inferred`` a size the shape check can
fill in when it is left out.
Layers and ops from ``--plugin`` modules are included.
"""

from __future__ import annotations

import argparse
import fnmatch
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel

from ..registry import INITS, LAYERS, OPS, Registry
from ..registry.plugins import load_plugins
from ..registry.signatures import UnsupportedSignature
from ..safety.terminal import printable
from ..zoo import CONF_DIR, first_comment, list_inits, list_models
from .validate import add_trusted_options

__all__ = ["setup", "run", "signature_text", "type_text"]

KINDS = ("models", "layers", "ops", "inits")
_MARKS = {"positive": ">0", "non_negative": ">=0"}


def setup(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ls``."""
    parser.add_argument("kind", choices=KINDS, help="what to list")
    parser.add_argument(
        "pattern",
        nargs="?",
        default=None,
        help="only names matching this glob or substring, case-insensitive (e.g. conv, '*Norm*')",
    )
    add_trusted_options(parser)


def type_text(annotation: Any) -> str:
    """A compact rendering of an argument's type: ``int``, ``int | tuple[int, int]``, ``'a'|'b'``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return type_text(typing.get_args(annotation)[0])
    if origin is Literal:
        return "|".join(repr(a) for a in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(a) for a in typing.get_args(annotation))
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        inner = ", ".join("..." if a is Ellipsis else type_text(a) for a in args)
        return f"{origin.__name__}[{inner}]" if args else origin.__name__
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def signature_text(model: type[BaseModel], constraints: Any = (), inferred: Any = ()) -> str:
    """``a: int>0, b: float = 1.0`` for an argument model."""
    parts = []
    for name, info in model.model_fields.items():
        text = f"{name}: {type_text(info.annotation)}"
        notes = [_MARKS[c] for c in [dict(constraints).get(name)] if c in _MARKS]
        notes += ["inferred"] if name in inferred else []
        if notes:
            text += f" ({', '.join(notes)})"
        if not info.is_required():
            default = info.default
            # a callable default (activation=F.relu) reads as its name, not a memory address
            shown = getattr(default, "__name__", None) if callable(default) else None
            text += f" = {shown or repr(default)}"
        parts.append(text)
    return ", ".join(parts)


def _matches(name: str, pattern: str | None) -> bool:
    if pattern is None:
        return True
    low, pat = name.lower(), pattern.lower()
    return fnmatch.fnmatchcase(low, pat) if any(c in pat for c in "*?[") else pat in low


def _entries(registry: Registry[Any], pattern: str | None, describe: Any) -> list[str]:
    lines = []
    for name in registry:
        if not _matches(name, pattern):
            continue
        entry = registry.get(name)
        try:
            lines.append(describe(name, entry))
        except UnsupportedSignature:
            lines.append(
                f"{name}(...)  [not usable from a file: needs a tensor or module argument]"
            )
    return lines


def _layer(name: str, entry: Any) -> str:
    return f"{name}({signature_text(entry.args_model, entry.constraints, entry.shape_rule)})"


def _op(name: str, entry: Any) -> str:
    inputs = "*tensors" if entry.arity is None else ", ".join(["x", "y", "z", "w"][: entry.arity])
    args = signature_text(entry.args_model, entry.constraints)
    return f"{name}({inputs}{'; ' + args if args else ''})"


def _scheme(name: str, entry: Any) -> str:
    return f"{name}({signature_text(entry.args_model, entry.constraints)})"


def _models(pattern: str | None) -> list[str]:
    lines = []
    for name in list_models():
        if _matches(name, pattern):
            lines.append(f"{name:18s} {first_comment(CONF_DIR / 'model' / f'{name}.yaml')}")
    return lines


def _presets(pattern: str | None) -> list[str]:
    lines = []
    for name in list_inits():
        if not _matches(name, pattern):
            continue
        path = CONF_DIR / "init" / f"{name}.yaml"
        text = first_comment(path)
        try:  # the preset's models: list, when it is written for particular models
            from ..pipeline import to_init_spec

            models = to_init_spec(path).models
        except Exception:  # noqa: BLE001 - a listing never fails on one file
            models = None
        suffix = f" [only for: {', '.join(models)}]" if models else ""
        lines.append(f"{name:14s} {text}{suffix}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the listing; exit 2 for a plugin that cannot be imported."""
    load_plugins(args.plugin)
    pattern = args.pattern
    if args.kind == "models":
        lines = _models(pattern)
        lines.append("")
        lines.append("build one: modelfactory run model=NAME, or modelfactory.build('NAME')")
    elif args.kind == "layers":
        lines = _entries(LAYERS, pattern, _layer)
    elif args.kind == "ops":
        lines = _entries(OPS, pattern, _op)
    else:
        lines = ["init schemes (scheme: NAME in a rule):"]
        lines += ["  " + line for line in _entries(INITS, pattern, _scheme)]
        lines += ["", "presets (init=NAME; conf/init/NAME.yaml):"]
        lines += ["  " + line for line in _presets(pattern)]
    if args.kind in ("layers", "ops") and not lines:
        lines = [f"no {args.kind} match '{pattern}'"]
    for line in lines:
        print(printable(line))
    return 0
