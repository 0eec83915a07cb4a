"""``python -m modelfactory <command>`` (also the ``modelfactory`` console script).

Each command is a function ``(args) -> exit code`` registered in ``COMMANDS``
with its argument parser set-up; output goes to stdout, problems to stderr.
Exit codes: 0 success, 1 invalid input (a file, a model), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..errors import ModelFactoryError
from ..safety.terminal import terminal_text
from . import devices, inspect, schema, summarize, validate

__all__ = ["main", "COMMANDS"]


# name -> (help, parser set-up, handler); other modules add their commands here.
COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "devices": ("list the available devices", devices.setup, devices.run),
    "summarize": ("write the summary and plots of a sweep", summarize.setup, summarize.run),
    "validate": ("check model files (no Hydra)", validate.setup, validate.run),
    "schema": ("print the JSON Schema of model files", schema.setup, schema.run),
    "inspect": (
        "show a checkpoint's architecture, tensors and metadata (reads the header only)",
        inspect.setup,
        inspect.run,
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelfactory", description="modelfactory tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, setup, _) in COMMANDS.items():
        setup(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: usage errors exit 2, --help exits 0
        return int(exit_.code or 0)
    try:
        return COMMANDS[args.command][2](args)
    except ModelFactoryError as err:
        print(f"error: {terminal_text(str(err))}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
