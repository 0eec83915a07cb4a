"""A Hydra callback for tests: the job with seed=13 kills its own process, as the OOM killer would."""

from __future__ import annotations

import os
import signal
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class KillSeed13(Callback):
    """SIGKILL the job process of ``seed=13`` as it starts: no Python cleanup runs."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.seed == 13:
            os.kill(os.getpid(), signal.SIGKILL)
