"""Build, print, run and checkpoint a model: ``python run.py model=<name> device=<dev> seed=<n>``.

The clone's entry point to the Hydra app in :mod:`modelfactory.app.main`; after
``pip install`` the same app is ``modelfactory run ...``, from any directory.
Outputs go to the Hydra run directory: ``model.safetensors``,
``architecture.yaml``, ``metrics.json``, ``init_report.json`` and ``run.log``.
A bad config exits with status 1 and a message, no traceback. In a multirun
(``-m``) a failed job is recorded in its ``metrics.json``, the other jobs
still run, and the sweep exits 1 at the end (see ``modelfactory.app.sweep``).
"""

import sys
from pathlib import Path

# A clone runs its own sources (and so its own conf/), installed or not.
_SRC = Path(__file__).resolve().parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from modelfactory.app.main import main  # noqa: E402

if __name__ == "__main__":
    main()
