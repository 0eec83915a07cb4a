"""The JSON Schema of model files for editors, generated from the registries.

pydantic's schema of :class:`~modelfactory.spec.ModelSpec` gives the structure
(input, blocks, shared, network, repeats, composites). Layer nodes and forward
steps are then specialised per registered name, so an editor with the schema
(``# yaml-language-server: $schema=...``) completes ``type:`` and each layer's
own arguments, and flags an unknown argument. Layers and ops the user has
registered (plugins imported before the schema is generated) are included.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

from pydantic.json_schema import PydanticJsonSchemaWarning

from ..registry import LAYERS, OPS, Registry
from ..registry.signatures import UnsupportedSignature
from .library import LIBRARY_GROUP, library_blocks
from .model import ModelSpec

__all__ = ["model_schema", "SCHEMA_DIALECT"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_WHEN = {
    "description": "inside a block with params: keep this only where the condition holds",
    "type": "string",
}
_STEP_IO = {
    "in": {
        "description": "input value names (default: the previous step's output)",
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    },
    "out": {
        "description": "name of this step's result (a list unpacks a tuple, nested lists a "
        "nested one; '_' drops a value)",
        "$ref": "#/$defs/OutPattern",
    },
    "when": _WHEN,
}
_OUT_PATTERN = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/$defs/OutPattern"}}]
}


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def _entries(registry: Registry[Any], defs: dict[str, Any]) -> list[tuple[str, Any, dict]]:
    """(name, entry, argument schema) for every entry whose arguments a config can express."""
    out = []
    for name in registry:
        entry = registry.get(name)
        try:
            with warnings.catch_warnings():  # defaults such as activation=F.relu are left out
                warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
                args = entry.args_model.model_json_schema()
        except UnsupportedSignature:
            continue  # needs a tensor or module argument: not usable from a file
        defs.update(args.pop("$defs", {}))
        out.append((name, entry, args))
    return out


# Inside a block with params, any argument (or an item of a list argument) may be
# ``{param: name}`` or ``{expr: "..."}``.
_PLACEHOLDER = {
    "anyOf": [
        {
            "type": "object",
            "properties": {"param": {"type": "string"}},
            "required": ["param"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"expr": {"type": "string", "maxLength": 256}},
            "required": ["expr"],
            "additionalProperties": False,
        },
    ]
}


def _with_placeholders(schema: Any) -> Any:
    """``schema`` where every array's items (at any depth) may also be placeholders."""
    if isinstance(schema, list):
        return [_with_placeholders(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _with_placeholders(value) for key, value in schema.items()}
    items = out.get("items")
    if isinstance(items, dict):
        out["items"] = {"anyOf": [items, _PLACEHOLDER]}
    if isinstance(out.get("prefixItems"), list):
        out["prefixItems"] = [{"anyOf": [i, _PLACEHOLDER]} for i in out["prefixItems"]]
    return out


def _or_placeholder(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {"anyOf": [_with_placeholders(schema), _PLACEHOLDER]}
        for key, schema in properties.items()
    }


def _layer_branches(defs: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    branches, bare = [], []
    for name, entry, args in _entries(LAYERS, defs):
        # sizes that shape inference fills in may be left out
        required = [k for k in args.get("required", []) if k not in entry.shape_rule]
        if not required:
            bare.append(name)
        branches.append(
            {
                "title": name,
                "description": _summary(entry.target),
                "type": "object",
                "properties": {
                    "type": {"const": name},
                    "when": _WHEN,
                    **_or_placeholder(args.get("properties", {})),
                },
                "required": ["type", *required],
                "additionalProperties": False,
            }
        )
    return branches, bare


def _step_branches(defs: dict[str, Any]) -> list[dict[str, Any]]:
    branches: list[dict[str, Any]] = [
        {"type": "string", "description": "a child to call, or an op without arguments"},
        {
            "title": "call",
            "type": "object",
            "properties": {
                "call": {"type": "string", "description": "the child to call"},
                **_STEP_IO,
                "kwargs": {
                    "description": "keyword arguments of the call ({value: name} passes a value)",
                    "type": "object",
                },
            },
            "required": ["call"],
            "additionalProperties": False,
        },
    ]
    for name, entry, args in _entries(OPS, defs):
        branches.append(
            {
                "title": f"op {name}",
                "description": _summary(entry.target),
                "type": "object",
                "properties": {
                    "op": {"const": name},
                    **_STEP_IO,
                    **_or_placeholder(args.get("properties", {})),
                },
                "required": ["op", *args.get("required", [])],
                "additionalProperties": False,
            }
        )
    return branches


def _defaults_schema(block_dir: str | Path | None) -> dict[str, Any]:
    names = sorted(library_blocks(block_dir)) if block_dir is not None else []
    value: dict[str, Any] = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}
    if names:
        value["enum"] = names
    return {
        "description": "library blocks used by this file (see docs/sharing.md)",
        "type": "array",
        "items": {
            "anyOf": [
                {"const": "_self_"},
                {
                    "type": "object",
                    "patternProperties": {
                        rf"^/{LIBRARY_GROUP}@blocks\.[A-Za-z_][A-Za-z0-9_]*$": value
                    },
                    "additionalProperties": False,
                    "minProperties": 1,
                    "maxProperties": 1,
                },
            ]
        },
    }


def model_schema(*, block_dir: str | Path | None = None) -> dict[str, Any]:
    """The JSON Schema of a model file for the layers and ops registered now.

    ``block_dir`` lists that directory's library blocks as the allowed values
    in a ``defaults`` list.
    """
    schema = ModelSpec.model_json_schema()
    defs: dict[str, Any] = schema["$defs"]
    layers, bare = _layer_branches(defs)
    defs["LayerNode"] = {"description": "a registered layer and its arguments", "oneOf": layers}
    defs["Step"] = {"description": "one forward step", "anyOf": _step_branches(defs)}
    defs["OutPattern"] = _OUT_PATTERN
    # an init rule's scheme arguments are written flat beside it ({scheme: normal, std: 0.02})
    rule = defs["InitRule"]
    rule["properties"].pop("args", None)
    rule["additionalProperties"] = True
    node = defs["Node"]
    union = node.pop("oneOf")
    defs.pop("_InvalidNode", None)
    rest = [b for b in union if b != {"type": "string"} and "_InvalidNode" not in str(b)]
    node["anyOf"] = [
        {
            "description": "a layer that takes no arguments, or a block name",
            "anyOf": [{"enum": bare}, {"type": "string"}],
        },
        *rest,
    ]
    schema["properties"]["defaults"] = _defaults_schema(block_dir)
    schema["title"] = "modelfactory model file"
    return {"$schema": SCHEMA_DIALECT, **schema}
