"""Where composite block classes live by name, so pickle and ``copy.deepcopy`` can find them again.

``print(model)`` shows a composite as ``NestMLP(...)``; its class is
``modelfactory.blocks.NestMLP``, made on first use by
:func:`modelfactory.builder.composite.composite_class`. Unpickling looks the
name up here, which makes (or returns) the same class.
"""

from __future__ import annotations

import re

_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def __getattr__(name: str) -> type:
    if not _CLASS_NAME.match(name) or name.startswith("__"):
        raise AttributeError(name)
    from .builder.composite import composite_class

    return composite_class(name)
