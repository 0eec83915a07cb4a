"""The Hydra side of sweeps: the per-job guard (failure isolation, resume) and the summary callback.

Only ``run.py`` and Hydra (through ``hydra.callbacks`` in ``conf/config.yaml``)
import this module; the summarising itself is Hydra-free, in :mod:`modelfactory.app.summary`.
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ..errors import ModelFactoryError
from ..safety.terminal import terminal_text
from .summary import METRICS, config_digest, failure_record, incomplete_reason, write_summary

__all__ = ["run_guarded", "SweepSummaryCallback"]

log = logging.getLogger(__name__)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _free_memory() -> None:
    # After an out-of-memory error the next job of this process needs the memory back.
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_guarded(cfg: DictConfig, *, conf_dir: Path | None = None) -> dict[str, Any] | None:
    """Run one job through :func:`run_job`, recording how it ended in its ``metrics.json``.

    With ``resume=true`` a job whose output directory already holds a complete
    result of the same config is skipped. A failure is written to
    ``metrics.json`` (status failed, the error). In a multirun it is then
    swallowed, so every other job still runs and ``on_multirun_end`` still
    fires (Hydra's basic launcher stops at the first raised failure); the
    summary callback makes the command exit non-zero. In a single run it is re-raised.
    """
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    num = OmegaConf.select(hydra_cfg, "job.num", default=None)
    label = f"job {num} ({' '.join(overrides)})" if num is not None else "run"
    digest = config_digest(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("resume", False):
        reason = incomplete_reason(output_dir, digest)
        if reason is None:
            print(f"resume: {label}: {output_dir} is complete; skipped")
            return json.loads((output_dir / METRICS).read_text())
        print(f"resume: {label}: running it ({reason})")
    # A job that dies without a word must not leave an earlier run's result behind.
    (output_dir / METRICS).unlink(missing_ok=True)

    from .job import run_job  # here: the summary callback alone needs no torch

    try:
        return run_job(cfg, conf_dir=conf_dir)
    except Exception as err:
        record = failure_record(
            err,
            model=hydra_cfg.runtime.choices.get("model"),
            device=str(cfg.get("device")),
            seed=cfg.get("seed"),
            overrides=overrides,
            config_sha256=digest,
        )
        _write_json(output_dir / METRICS, record)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            raise
        if isinstance(err, ModelFactoryError):  # bad input: the message says it all
            print(f"error: {terminal_text(f'{label}: {err}')}", file=sys.stderr)
        else:  # unexpected: keep the traceback in the job's log
            log.error("%s failed", label, exc_info=True)
    _free_memory()  # outside the except block, so the traceback's frames are gone
    return None


class SweepSummaryCallback(Callback):
    """After a multirun, write the sweep summary and exit non-zero if any job failed.

    Hydra ignores job results and ends a multirun with status 0, so this
    callback, which runs last, raises ``SystemExit(1)`` when a job failed (set
    ``fail_on_job_failure: false`` to keep 0). If the launcher itself aborts
    (a joblib worker killed by the OS), the summary is still written at exit.
    """

    def __init__(self, fail_on_job_failure: bool = True) -> None:
        self.fail_on_job_failure = fail_on_job_failure
        self._sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Remember the sweep directory, and arrange a summary even if the sweep aborts."""
        self._sweep_dir = Path(str(config.hydra.sweep.dir))
        atexit.register(self._summarize)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write summary.csv, summary.md and the plots; exit 1 if a job failed."""
        atexit.unregister(self._summarize)
        failed = self._summarize()
        if failed and self.fail_on_job_failure:
            raise SystemExit(1)

    def _summarize(self) -> int:
        """Write the summary; return the number of failed jobs."""
        if self._sweep_dir is None or not self._sweep_dir.is_dir():
            return 0
        try:
            summary = write_summary(self._sweep_dir)
        except ModelFactoryError as err:
            print(f"error: {terminal_text(str(err))}", file=sys.stderr)
            return 0
        print(summary.report(), file=sys.stderr if summary.failed else sys.stdout)
        return len(summary.failed)
