"""The registries of layers, ops and init schemes, with the built-ins registered on import."""

from __future__ import annotations

from . import inits as _inits  # noqa: F401  (registers torch.nn.init schemes and my_init)
from . import layers as _layers  # noqa: F401  (registers torch.nn and the project's layers)
from . import ops as _ops  # noqa: F401  (registers the built-in ops)
from .table import (
    INITS,
    LAYERS,
    OPS,
    InitEntry,
    LayerEntry,
    OpEntry,
    Registry,
    register_init,
    register_layer,
    register_op,
)

__all__ = [
    "LAYERS",
    "OPS",
    "INITS",
    "LayerEntry",
    "OpEntry",
    "InitEntry",
    "Registry",
    "register_layer",
    "register_op",
    "register_init",
]
