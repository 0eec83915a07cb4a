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
from .zoo import list_inits, list_models

logging.getLogger(__name__).addHandler(logging.NullHandler())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelfactory")
    except PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
        return "0+unknown"


__version__ = _version()

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
    "list_models",
    "list_inits",
    "__version__",
]
