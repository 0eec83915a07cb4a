"""Plugins: the user's own Python modules that register layers, ops and inits.

Importing a module runs its code, so it is a *trusted* act done only by the
person running the tool: a Python ``import``, the CLI's ``--plugin MODULE``
flag, or ``plugins=[...]`` on the ``run.py`` command line / in ``conf/``. A
model file can never load one: it is plain data and may only *name* what is
already registered (a ``plugins`` key in it is an unknown-key error).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable

from ..errors import PluginError

__all__ = ["PluginError", "load_plugins"]

_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def load_plugins(modules: Iterable[str]) -> list[str]:
    """Import each dotted module name (trusted input only); return the names imported."""
    loaded = []
    for name in modules:
        if not isinstance(name, str) or not _MODULE_NAME.match(name):
            raise PluginError(
                f"plugins: {name!r} is not a Python module name (e.g. mypkg.layers); "
                "plugins are imported by module name, never by file path"
            )
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise PluginError(
                f"plugins: cannot import plugin module '{name}': {err}. Is it installed, or on "
                "PYTHONPATH?"
            ) from err
        loaded.append(name)
    return loaded
