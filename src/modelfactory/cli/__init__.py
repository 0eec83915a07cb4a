"""``python -m modelfactory <command>`` (also the ``modelfactory`` console script).

Each command is a module of this package with ``setup(parser)`` and
``run(args) -> exit code``, listed in ``COMMANDS``; output goes to stdout,
problems to stderr. ``run`` hands the rest of the line to the Hydra app.
Exit codes: 0 success, 1 invalid input (a file, a model), 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    "ls": ("list zoo models, layers, ops or init schemes and presets (with their arguments)", "ls"),
    "devices": ("list the available devices", "devices"),
    "summarize": ("write the summary and plots of a sweep", "summarize"),
    "validate": ("check model files (no Hydra)", "validate"),
    "schema": ("print the JSON Schema of model, block or init files", "schema"),
    "inspect": (
        "show a checkpoint's architecture, tensors and metadata (reads the header only)",
        "inspect",
    ),
}
RUN_HELP = "build, print, run and checkpoint a model (the Hydra app of run.py; run --help)"


def version_text() -> str:
    """``modelfactory X (torch Y, Python Z)``."""
    import platform

    import torch

    from .. import __version__

    return f"modelfactory {__version__} (torch {torch.__version__}, Python {platform.python_version()})"


def _command(name: str) -> Any:
    return importlib.import_module(f"{__name__}.{COMMANDS[name][1]}")


def _parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelfactory", description="modelfactory tools")
    parser.add_argument("--version", action="store_true", help="print the versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help=RUN_HELP, add_help=False)  # parsed by Hydra, see main()
    for name, (help_text, _) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the named command's options are needed
            _command(name).setup(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["run"]:
        from ..app.main import main as run_app

        try:
            run_app(args_list[1:], prog="modelfactory run")
        except SystemExit as exit_:  # Hydra and the app exit with their status
            return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        return 0
    chosen = next((a for a in args_list if not a.startswith("-")), None)
    parser = _parser(chosen if chosen in COMMANDS else None)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:  # argparse: usage errors exit 2, --help exits 0
        return int(exit_.code or 0)
    if args.version:
        print(version_text())
        return 0
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(
            "modelfactory: error: give a command (modelfactory --help lists them)", file=sys.stderr
        )
        return 2
    try:
        return _command(args.command).run(args)
    except BrokenPipeError:  # `modelfactory ls layers | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ModelFactoryError as err:
        print(f"error: {terminal_text(str(err))}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
