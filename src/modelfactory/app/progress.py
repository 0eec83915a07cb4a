"""A progress bar that appears only when the work turns out to be slow (app side only)."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["DelayedProgress"]


class DelayedProgress:
    """Callable ``(done, total)`` that shows a rich bar once ``delay`` seconds have passed.

    Fast builds print nothing; a slow init (big_mlp) shows a bar on stderr.
    """

    def __init__(self, description: str, *, delay: float = 1.0) -> None:
        self.description = description
        self.delay = delay
        self._start = time.perf_counter()
        self._bar: Progress | None = None
        self._task = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if time.perf_counter() - self._start < self.delay:
                return
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TimeElapsedColumn(),
                transient=False,
                console=_stderr_console(),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def __enter__(self) -> DelayedProgress:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()


def _stderr_console():
    from rich.console import Console

    # the terminal itself, not run.log: a bar's redraws are no record of the run
    return Console(file=getattr(sys.stderr, "terminal", sys.stderr))
