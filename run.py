"""Build, print, run and checkpoint a model: ``python run.py model=<name> device=<dev> seed=<n>``.

Outputs go to the Hydra run directory: ``model.safetensors``, ``architecture.yaml``
and ``metrics.json``. A bad config exits with status 1 and a message, no traceback.
In a multirun (``-m``) a failed job is recorded in its ``metrics.json``, the other
jobs still run, and the sweep exits 1 at the end (see ``modelfactory.app.sweep``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from modelfactory.errors import ModelFactoryError
from modelfactory.safety.terminal import terminal_text


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: one job (in a multirun, a failed job is recorded, not raised)."""
    # imported here, not at the top: --help, --cfg and shell completion never reach
    # this function, so they do not import torch
    from modelfactory.app.sweep import run_guarded

    try:
        run_guarded(cfg, conf_dir=Path(__file__).resolve().parent / "conf")
    except ModelFactoryError as err:
        print(f"error: {terminal_text(str(err))}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
