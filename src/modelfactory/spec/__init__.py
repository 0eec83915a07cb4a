"""The architecture language: YAML with positions, the pydantic models, validation and errors."""

from __future__ import annotations

from .init_rules import InitRule, InitSpec
from .model import ModelSpec
from .nodes import (
    BlockRef,
    CompositeNode,
    LayerNode,
    NamedSequential,
    Node,
    ParametricBlock,
    RepeatNode,
    SharedRef,
)
from .program import Step
from .tensors import ConstantSpec, InputSpec
from .validate import load_spec_file, plain_data, to_spec, validate_data

__all__ = [
    "ModelSpec",
    "InputSpec",
    "ConstantSpec",
    "InitRule",
    "InitSpec",
    "Node",
    "LayerNode",
    "BlockRef",
    "SharedRef",
    "RepeatNode",
    "ParametricBlock",
    "NamedSequential",
    "CompositeNode",
    "Step",
    "to_spec",
    "validate_data",
    "load_spec_file",
    "plain_data",
]
