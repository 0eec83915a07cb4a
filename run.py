"""Build, print, run and checkpoint a model: ``python run.py model=<name> device=<dev> seed=<n>``.

Outputs go to the Hydra run directory: ``model.safetensors``, ``architecture.yaml``
and ``metrics.json``. A bad config exits with status 1 and a message, no traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from modelfactory import ModelFactoryError
from modelfactory.app import run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: one job."""
    try:
        run_job(cfg, conf_dir=Path(__file__).resolve().parent / "conf")
    except ModelFactoryError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
