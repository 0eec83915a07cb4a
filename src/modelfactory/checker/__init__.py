"""Stage 3: shapes and limits. A resolved spec becomes a :class:`CheckedSpec`, ready to build."""

from __future__ import annotations

from . import limits
from .shapes import CheckedSpec, check

__all__ = ["CheckedSpec", "check", "limits"]
