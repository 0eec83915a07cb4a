"""modelfactory: declarative, validated model building for PyTorch.

YAML (or a mapping) describes a network; :func:`build` turns it into a plain
``nn.Module``. Model files are data only: they can name registered layers, ops
and init schemes, never import or evaluate code.

The pipeline, one stage per package: ``spec`` (text -> ModelSpec),
``resolve`` (-> ResolvedSpec), ``checker`` (-> CheckedSpec), ``builder``
(-> nn.Module), ``io`` (checkpoints); ``app`` and ``cli`` are the front ends.
"""

from __future__ import annotations

import logging

from . import registry as _registry  # noqa: F401  (registers the built-in layers, ops, inits)
from .checker import limits
from .checker.shapes import CheckedSpec
from .devices import try_all_gpus, try_gpu
from .errors import CheckpointError, ModelFactoryError
from .io.checkpoint import save
from .io.ptfile import load_state_dict, save_state_dict
from .io.tensors import load_tensors, save_tensors
from .io.weights import load_weights
from .pipeline import build, check, load, validate
from .registry import register_init, register_layer, register_op
from .resolve import ResolvedSpec
from .spec import ModelSpec
from .tables import layer_summary as summary

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "build",
    "load",
    "save",
    "save_tensors",
    "load_tensors",
    "save_state_dict",
    "load_state_dict",
    "load_weights",
    "validate",
    "check",
    "ModelSpec",
    "ResolvedSpec",
    "CheckedSpec",
    "ModelFactoryError",
    "CheckpointError",
    "register_layer",
    "register_op",
    "register_init",
    "try_gpu",
    "try_all_gpus",
    "summary",
    "limits",
    "build_sharded",
    "save_dcp",
    "load_dcp",
    "dcp_to_safetensors",
    "safetensors_to_dcp",
]

# Sharded builds and DCP checkpoints import torch.distributed's FSDP and checkpoint
# packages; they load on first use, so a plain `import modelfactory` stays light.
_LAZY = {
    "build_sharded": "modelfactory.builder.sharded",
    "save_dcp": "modelfactory.io.dcp",
    "load_dcp": "modelfactory.io.dcp",
    "dcp_to_safetensors": "modelfactory.io.dcp",
    "safetensors_to_dcp": "modelfactory.io.dcp",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelfactory' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
