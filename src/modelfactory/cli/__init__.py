"""``python -m modelfactory <command>`` (also the ``modelfactory`` console script).

Each command is a function ``(args) -> exit code`` registered in ``COMMANDS``
with its argument parser set-up; output goes to stdout, problems to stderr.
Exit codes: 0 success, 1 invalid input (a file, a model), 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import ModelFactoryError
from ..safety.terminal import terminal_text

__all__ = ["main", "COMMANDS"]


# name -> (help, module in this package with setup(parser) and run(args) -> exit code).
# A command's module is imported only when that command is named, so --help and
# each command import no more than they use (no torch for --help).
COMMANDS: dict[str, tuple[str, str]] = {
    "devices": ("list the available devices", "devices"),
    "summarize": ("write the summary and plots of a sweep", "summarize"),
    "validate": ("check model files (no Hydra)", "validate"),
    "schema": ("print the JSON Schema of model files", "schema"),
    "inspect": (
        "show a checkpoint's architecture, tensors and metadata (reads the header only)",
        "inspect",
    ),
}


def _command(name: str) -> Any:
    return importlib.import_module(f"{__name__}.{COMMANDS[name][1]}")


def _parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelfactory", description="modelfactory tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the named command's options are needed
            _command(name).setup(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(chosen if chosen in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: usage errors exit 2, --help exits 0
        return int(exit_.code or 0)
    try:
        return _command(args.command).run(args)
    except ModelFactoryError as err:
        print(f"error: {terminal_text(str(err))}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
