"""JSON Schemas of library block files and init files, beside the model file schema (``schema``).

A block file is one node (what would be written under ``blocks: NAME:``), so
its schema is the model schema's ``Node``. An init file is a name and a list of
rules; each rule is specialised per registered scheme (``scheme`` an enum,
that scheme's own arguments, ``minimum`` on declared sizes), as layers are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..registry import INITS, LAYERS
from .schema import SCHEMA_DIALECT, _bare_name, _constrained, _entries, _summary, model_schema

__all__ = ["block_schema", "init_schema", "schema_for", "KINDS"]

KINDS = ("model", "block", "init")


def block_schema(*, block_dir: str | Path | None = None) -> dict[str, Any]:
    """The JSON Schema of a library block file (``conf/block/NAME.yaml``): one node."""
    defs = model_schema(block_dir=block_dir)["$defs"]
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "modelfactory library block file",
        "description": "one node: a layer, a list (Sequential), a repeat or a composite block",
        "$ref": "#/$defs/Node",
        "$defs": defs,
    }


def _rule_branches(defs: dict[str, Any]) -> list[dict[str, Any]]:
    layer_names = [name for name, _, _ in _entries(LAYERS, {})]
    type_name = _bare_name(layer_names, "layer")
    selectors = {
        "module": {"type": "string", "description": "glob over the owning module's dotted path"},
        "type": {
            "description": "the owning layer's type (or a block's), or a list of them",
            "anyOf": [type_name, {"type": "array", "items": type_name}],
        },
        "param": {"type": "string", "description": "glob over the parameter's own name"},
    }
    branches = []
    for name, entry, args in _entries(INITS, defs):
        branches.append(
            {
                "title": f"scheme {name}",
                "description": _summary(entry.target),
                "type": "object",
                "properties": {
                    **selectors,
                    "scheme": {"const": name},
                    **_constrained(args.get("properties", {}), entry.constraints),
                },
                "required": ["scheme", *args.get("required", [])],
                "additionalProperties": False,
            }
        )
    return branches


def init_schema() -> dict[str, Any]:
    """The JSON Schema of an init file (``conf/init/NAME.yaml``) for the schemes registered now."""
    defs: dict[str, Any] = {}
    rule = {"description": "selectors, a scheme and its arguments", "oneOf": _rule_branches(defs)}
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "modelfactory init file",
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "label for reports and sweeps"},
            "description": {"type": "string"},
            "rules": {
                "type": "array",
                "items": {"$ref": "#/$defs/Rule"},
                "description": "applied in order; the last match wins",
            },
            "cpu_generator": {
                "type": "boolean",
                "description": "draw on CPU so every device gets identical values",
            },
            "models": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the models this preset is written for; others are refused up front",
            },
        },
        "additionalProperties": False,
        "$defs": {**defs, "Rule": rule},
    }


def schema_for(
    kind: str, *, block_dir: str | Path | None = None, model_dir: str | Path | None = None
) -> dict[str, Any]:
    """The schema of ``kind`` (``model``, ``block`` or ``init``) files."""
    if kind == "block":
        return block_schema(block_dir=block_dir)
    if kind == "init":
        return init_schema()
    return model_schema(block_dir=block_dir, model_dir=model_dir)
