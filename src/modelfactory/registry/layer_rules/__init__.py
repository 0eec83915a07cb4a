"""Symbolic output-shape rules for torch.nn layers, by family; ``LAYER_RULES`` maps a class name to its rule."""

from __future__ import annotations

from . import elementwise, linear_conv, pooling_norm, recurrent, spatial  # noqa: F401  (each family registers its rules)
from .common import LAYER_RULES

__all__ = ["LAYER_RULES"]
