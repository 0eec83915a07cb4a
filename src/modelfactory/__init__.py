"""modelfactory: declarative, validated model building for PyTorch.

YAML (or a mapping) describes a network; :func:`build` turns it into a plain
``nn.Module``. Model files are data only: they can name registered layers, ops
and init schemes, never import or evaluate code.

The pipeline, one stage per package: ``spec`` (text -> ModelSpec),
``resolve`` (-> ResolvedSpec), ``checker`` (-> CheckedSpec), ``builder``
(-> nn.Module), ``io`` (checkpoints); ``app`` and ``cli`` are the front ends.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, ModelFactoryError

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public name -> the module that defines it. Imported on first use (PEP 562), so
# `import modelfactory` and the command line's --help do not import torch.
_LAZY = {
    "build": "pipeline",
    "load": "pipeline",
    "validate": "pipeline",
    "check": "pipeline",
    "save": "io.checkpoint",
    "save_tensors": "io.tensors",
    "load_tensors": "io.tensors",
    "save_state_dict": "io.ptfile",
    "load_state_dict": "io.ptfile",
    "load_weights": "io.weights",
    "ModelSpec": "spec.model",
    "ResolvedSpec": "resolve",
    "CheckedSpec": "checker.shapes",
    "register_layer": "registry",
    "register_op": "registry",
    "register_init": "registry",
    "try_gpu": "devices",
    "try_all_gpus": "devices",
    "summary": "tables",
    "limits": "checker",
    # sharded builds and DCP checkpoints import torch.distributed's FSDP and checkpoint packages
    "build_sharded": "builder.sharded",
    "save_dcp": "io.dcp",
    "load_dcp": "io.dcp",
    "dcp_to_safetensors": "io.dcp",
    "safetensors_to_dcp": "io.dcp",
}
_RENAMED = {"summary": "layer_summary"}


_SUBPACKAGES = {"app", "builder", "checker", "cli", "io", "registry", "safety", "spec"}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # `modelfactory.spec.to_spec` after a bare `import modelfactory`
        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelfactory' has no attribute {name!r}")
    importlib.import_module(f"{__name__}.registry")  # the built-in layers, ops and inits
    value = getattr(importlib.import_module(f"{__name__}.{module}"), _RENAMED.get(name, name))
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from .builder.sharded import build_sharded
    from .checker import limits
    from .checker.shapes import CheckedSpec
    from .devices import try_all_gpus, try_gpu
    from .io.checkpoint import save
    from .io.dcp import dcp_to_safetensors, load_dcp, safetensors_to_dcp, save_dcp
    from .io.ptfile import load_state_dict, save_state_dict
    from .io.tensors import load_tensors, save_tensors
    from .io.weights import load_weights
    from .pipeline import build, check, load, validate
    from .registry import register_init, register_layer, register_op
    from .resolve import ResolvedSpec
    from .spec import ModelSpec
    from .tables import layer_summary as summary

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
