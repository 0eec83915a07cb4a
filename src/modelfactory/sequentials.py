"""Where named Sequential classes live by name, so pickle and ``copy.deepcopy`` can find them again.

``{sequential: [...], name: Conv2dNormActivation}`` prints as
``Conv2dNormActivation(...)``; its class is
``modelfactory.sequentials.Conv2dNormActivation``, an ``nn.Sequential``
subclass made on first use by
:func:`modelfactory.builder.composite.sequential_class`. Unpickling looks the
name up here, which makes (or returns) the same class. (Composite classes live
in :mod:`modelfactory.blocks`; the two namespaces are separate, so a list and a
composite may share a printed name.)
"""

from __future__ import annotations

import re

_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def __getattr__(name: str) -> type:
    if not _CLASS_NAME.match(name) or name.startswith("__"):
        raise AttributeError(name)
    from .builder.composite import sequential_class

    return sequential_class(name)
