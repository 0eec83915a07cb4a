"""modelfactory: declarative, validated model building for PyTorch.

YAML (or a mapping) describes a network; :func:`build` turns it into a plain
``nn.Module``. Model files are data only: they can name registered layers, ops
and init schemes, never import or evaluate code.
"""

from __future__ import annotations

import logging

from . import layers as _layers  # noqa: F401  (registers torch.nn and the project's layers)
from . import ops as _ops  # noqa: F401  (registers the built-in ops)
from .api import build, load, validate
from .check import check
from .checkpoint import save
from .devices import try_all_gpus, try_gpu
from .errors import CheckpointError, ModelFactoryError
from .ptfile import load_state_dict, save_state_dict
from .registry import register_init, register_layer, register_op
from .spec import ModelSpec
from .tables import layer_summary as summary
from .tensors import load_tensors, save_tensors
from .weights import load_weights

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
    "ModelFactoryError",
    "CheckpointError",
    "register_layer",
    "register_op",
    "register_init",
    "try_gpu",
    "try_all_gpus",
    "summary",
]
