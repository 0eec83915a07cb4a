"""``python -m modelfactory``: see :mod:`modelfactory.cli`."""

import sys

from .cli import main

sys.exit(main())
