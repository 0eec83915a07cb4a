"""``modelfactory summarize DIR``: (re)write a sweep's summary files and plots."""

from __future__ import annotations

import argparse

from ..app.summary import write_summary

__all__ = ["setup", "run"]


def setup(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``modelfactory summarize``."""
    parser.add_argument("sweep_dir", metavar="DIR", help="a sweep directory (hydra.sweep.dir)")


def run(args: argparse.Namespace) -> int:
    """``modelfactory summarize DIR``: (re)write the summary files of a sweep."""
    summary = write_summary(args.sweep_dir)
    print(summary.report())
    for path in summary.files:
        print(f"wrote {path}")
    return 0
