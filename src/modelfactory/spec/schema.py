"""The JSON Schemas of model files (and, in ``schema_files``, block and init files), from the registries.

pydantic's schema of :class:`~modelfactory.spec.ModelSpec` gives the structure
(input, blocks, shared, network, repeats, composites). Layer nodes and forward
steps are then specialised per registered name, so an editor with the schema
(``# yaml-language-server: $schema=...``) completes ``type:`` and each layer's
own arguments, and flags an unknown argument. Layers and ops the user has
registered (plugins imported before the schema is generated) are included.

The validator's constraints are carried where JSON Schema can say them: layer
types and ops are enums (``const`` per branch), size arguments declared
``positive`` / ``non_negative`` get ``minimum`` 1 / 0 on every integer they
hold, and a bare name that differs from a layer's (or a step from an op's)
only in case (``Relu``, ``relU``) is flagged. What JSON Schema cannot say --
that a bare name is one of *this file's* blocks or children, shapes, ties --
only ``modelfactory validate`` checks.
"""

from __future__ import annotations

import inspect
import re
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


_MINIMUM = {"positive": 1, "non_negative": 0}


def _with_minimum(schema: Any, minimum: int) -> Any:
    """``schema`` with ``minimum`` on every integer it admits (a size, or a tuple of sizes)."""
    if isinstance(schema, list):
        return [_with_minimum(item, minimum) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _with_minimum(v, minimum) for k, v in schema.items()}
    if schema.get("type") == "integer":
        out["minimum"] = minimum
    return out


def _constrained(properties: dict[str, Any], constraints: Any) -> dict[str, Any]:
    return {
        key: _with_minimum(value, _MINIMUM[constraints[key]])
        if constraints.get(key) in _MINIMUM
        else value
        for key, value in properties.items()
    }


def case_variants_pattern(names: list[str]) -> str:
    """A regex matching any spelling of ``names`` that differs only in letter case."""

    def one(name: str) -> str:
        return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in name)

    return "^(?:" + "|".join(one(n) for n in sorted(names)) + ")$"


def _bare_name(names: list[str], what: str) -> dict[str, Any]:
    """A string that is one of ``names`` exactly, or no case-variant of any of them."""
    return {
        "anyOf": [
            {"enum": sorted(names)},
            {
                "type": "string",
                "not": {"pattern": case_variants_pattern(names)},
                "description": f"a name of this file; a {what} name spelt with other letter "
                f"case (Relu for ReLU) is flagged",
            },
        ]
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
                    **_or_placeholder(_constrained(args.get("properties", {}), entry.constraints)),
                },
                "required": ["type", *required],
                "additionalProperties": False,
            }
        )
    return branches, bare


def _step_branches(defs: dict[str, Any]) -> list[dict[str, Any]]:
    branches: list[dict[str, Any]] = [
        {
            "description": "a child to call, or an op without arguments",
            **_bare_name(OPS.names(), "op"),
        },
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
                    **_or_placeholder(_constrained(args.get("properties", {}), entry.constraints)),
                },
                "required": ["op", *args.get("required", [])],
                "additionalProperties": False,
            }
        )
    return branches


def _defaults_schema(
    block_dir: str | Path | None, model_dir: str | Path | None = None
) -> dict[str, Any]:
    names = sorted(library_blocks(block_dir)) if block_dir is not None else []
    value: dict[str, Any] = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}
    if names:
        value["enum"] = names
    model: dict[str, Any] = {
        "type": "string",
        "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
        "description": "another model of this model/ directory, composed first (as Hydra does)",
    }
    if model_dir is not None:
        model["enum"] = sorted(library_blocks(model_dir))
    return {
        "description": "models and library blocks this file is composed from (docs/sharing.md)",
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
                model,
            ]
        },
    }


def model_schema(
    *, block_dir: str | Path | None = None, model_dir: str | Path | None = None
) -> dict[str, Any]:
    """The JSON Schema of a model file for the layers and ops registered now.

    ``block_dir`` lists that directory's library blocks, and ``model_dir`` its
    models, as the allowed values in a ``defaults`` list.
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
    layer_names = [name for name, _, _ in _entries(LAYERS, {})]
    names = _bare_name(layer_names, "layer")
    names["anyOf"][0]["enum"] = sorted(bare)  # bare: only layers that need no argument
    node["anyOf"] = [
        {"description": "a layer that takes no arguments, or a block name", **names},
        *rest,
    ]
    schema["properties"]["defaults"] = _defaults_schema(block_dir, model_dir)
    # a file composed from another model may leave out what that model gives
    required = schema.pop("required", [])
    composed = {
        "required": ["defaults"],
        "properties": {"defaults": {"contains": {"type": "string", "not": {"const": "_self_"}}}},
    }
    schema["if"], schema["else"] = composed, {"required": required}
    schema["title"] = "modelfactory model file"
    return {"$schema": SCHEMA_DIALECT, **schema}
